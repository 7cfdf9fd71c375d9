//! Every inbound stream charged to its peer as the muxer hands it to the swarm, before protocol
//! negotiation (`max_new_streams`, docs/scoring.md "Quotas"): a stream whose negotiation fails
//! (an unknown protocol, a name not prepared for the peer, a reset half way) costs the peer as
//! much as any other, although the swarm never reports it. The streams over the limit are
//! dropped at once (which resets them) and counted; a peer that keeps at it for 10 s without a
//! break gets a `Medium` verdict for every 10 s (through the driver's mailbox).
//!
//! The limit is per peer, over all its connections: the buckets are shared by every
//! connection's [`Muxer`], and forgotten once idle ([`Meter::forget_idle`]) so that a peer
//! which reconnects while over it does not get a fresh allowance.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};

use crate::quota::Bucket;
use crate::scoring::mailbox::Mailbox;
use crate::telemetry as m;

/// The peers' inbound-stream allowances.
#[derive(Debug)]
pub(crate) struct Meter {
    /// Streams per second per peer, all at once; `None`: no limit.
    per_sec: Option<u32>,
    buckets: Mutex<HashMap<PeerId, Bucket>>,
    mail: Arc<Mailbox>,
}

/// Refused streams dropped in one `poll_inbound` at most before the task yields.
const MAX_DROPS_PER_POLL: usize = 64;

impl Meter {
    pub(crate) fn new(per_sec: Option<u32>, mail: Arc<Mailbox>) -> Arc<Self> {
        Arc::new(Self {
            per_sec,
            buckets: Mutex::default(),
            mail,
        })
    }

    /// Whether `peer` may open one more inbound stream at `now`; a refusal is counted and
    /// posted to the driver (with a verdict when one is due).
    pub(crate) fn admit(&self, peer: PeerId, now: Instant) -> bool {
        let Some(n) = self.per_sec else {
            return true;
        };
        let penalty = {
            let mut buckets = crate::shared::lock(&self.buckets);
            let bucket = buckets
                .entry(peer)
                .or_insert_with(|| Bucket::per(n, Duration::from_secs(1), now));
            if bucket.try_take_one(now) {
                return true;
            }
            bucket.penalty_due(now)
        };
        metrics::counter!(m::INBOUND_STREAMS_REFUSED).increment(1);
        if penalty {
            tracing::info!(%peer, limit = "max_new_streams", "peer keeps opening streams over its limit: score lowered");
        }
        self.mail.post(peer, |t| {
            t.refused_streams += 1;
            if penalty {
                t.medium = t.medium.saturating_add(1);
            }
        });
        false
    }

    /// Forgets the allowances of peers back within them and not over (on the driver's flush
    /// tick).
    pub(crate) fn forget_idle(&self, now: Instant) {
        crate::shared::lock(&self.buckets).retain(|_, b| !b.is_idle(now));
    }
}

/// A connection's muxer whose inbound streams are charged to the peer.
pub(crate) struct Muxer {
    inner: StreamMuxerBox,
    peer: PeerId,
    meter: Arc<Meter>,
}

impl Muxer {
    pub(crate) fn wrap(meter: &Arc<Meter>, peer: PeerId, inner: StreamMuxerBox) -> Self {
        Self {
            inner,
            peer,
            meter: meter.clone(),
        }
    }
}

impl StreamMuxer for Muxer {
    type Substream = SubstreamBox;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        for _ in 0..MAX_DROPS_PER_POLL {
            let stream = match Pin::new(&mut self.inner).poll_inbound(cx) {
                Poll::Ready(Ok(stream)) => stream,
                other => return other,
            };
            if self.meter.admit(self.peer, Instant::now()) {
                return Poll::Ready(Ok(stream));
            }
            drop(stream);
        }
        // A flood: let the connection's other work run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        Pin::new(&mut self.inner).poll_outbound(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_over_the_limit_are_refused_counted_and_a_peer_that_keeps_at_it_is_reported() {
        let mail = Arc::new(Mailbox::default());
        let meter = Meter::new(Some(10), mail.clone());
        let (peer, other) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        // The burst, then refusals; another peer has its own allowance.
        assert_eq!((0..10).filter(|_| meter.admit(peer, t0)).count(), 10);
        assert!(!meter.admit(peer, t0));
        assert!(meter.admit(other, t0));
        // 12 s at 100 streams a second, ten times the limit.
        let mut admitted = 0;
        for i in 1..=1200u64 {
            if meter.admit(peer, t0 + Duration::from_millis(10 * i)) {
                admitted += 1;
            }
        }
        assert!((115..=121).contains(&admitted), "{admitted}");
        let got = mail.take();
        assert_eq!(got[&peer].refused_streams, 1 + 1200 - admitted);
        assert_eq!(got[&peer].medium, 1, "one verdict per 10 s over");
        assert!(!got.contains_key(&other));
        // Idle again (a full bucket, no streak): forgotten; the peer over it is kept.
        meter.forget_idle(t0 + Duration::from_millis(12_500));
        assert_eq!(crate::shared::lock(&meter.buckets).len(), 1);
        meter.forget_idle(t0 + Duration::from_secs(60));
        assert!(crate::shared::lock(&meter.buckets).is_empty());
    }

    #[test]
    fn no_limit_admits_everything() {
        let meter = Meter::new(None, Arc::default());
        let peer = PeerId::random();
        assert!((0..10_000).all(|_| meter.admit(peer, Instant::now())));
    }
}
