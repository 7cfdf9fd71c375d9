//! Every inbound stream charged to its peer as soon as the connection's muxer accepts it, before
//! protocol negotiation (`max_new_streams`, docs/scoring.md "Quotas"): a stream whose
//! negotiation fails (an unknown protocol, a name not prepared for the peer, a reset half way)
//! costs the peer as much as any other, although the swarm never reports it. The streams over
//! the limit are dropped at once (their opener's open fails) and counted; a peer that keeps at it for
//! 10 s without a break gets a `Medium` verdict for every 10 s (through the driver's mailbox).
//!
//! The swarm takes inbound streams only while fewer than 128 are being negotiated; a peer could
//! keep those places taken with streams that never negotiate and have the rest wait uncharged.
//! So this wrapper takes every stream the muxer accepts (in `poll`, which the swarm calls on
//! every turn), charges it, and keeps the admitted ones for the swarm, at most
//! [`MAX_WAITING`] (one second's worth at the default limit: an honest peer never has streams
//! wait, since its negotiations finish); past that they are dropped and counted as refused too.
//!
//! The limit is per peer, over all its connections ([`PerPeer`]).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};

use crate::quota::PerPeer;
use crate::scoring::mailbox::Mailbox;
use crate::telemetry as m;

/// The peers' inbound-stream allowances.
#[derive(Debug)]
pub(crate) struct Meter {
    /// `None`: no limit.
    limit: Option<PerPeer>,
    mail: Arc<Mailbox>,
}

/// Admitted streams waiting for the swarm, per connection, at most (each may hold up to its
/// muxer's initial window of unread data).
pub(crate) const MAX_WAITING: usize = 32;

/// Streams taken from the muxer in one call at most; then the task wakes itself and returns.
const MAX_PER_POLL: usize = 64;

impl Meter {
    /// At most `per_sec` inbound streams a second per peer (one second's worth at once).
    pub(crate) fn new(per_sec: Option<u32>, mail: Arc<Mailbox>) -> Arc<Self> {
        Arc::new(Self {
            limit: per_sec.map(|n| PerPeer::new(n, Duration::from_secs(1))),
            mail,
        })
    }

    /// Whether `peer` may open one more inbound stream at `now`; a refusal is counted and
    /// posted to the driver (with a verdict when one is due).
    pub(crate) fn admit(&self, peer: PeerId, now: Instant) -> bool {
        let Some(limit) = &self.limit else {
            return true;
        };
        let Err(over) = limit.take_one(peer, now) else {
            return true;
        };
        if over.penalty {
            tracing::info!(%peer, limit = "max_new_streams", "peer keeps opening streams over its limit: score lowered");
        }
        self.refused(peer, over.penalty);
        false
    }

    /// An inbound stream of `peer` was dropped: counted, and posted to the driver.
    fn refused(&self, peer: PeerId, penalty: bool) {
        metrics::counter!(m::INBOUND_STREAMS_REFUSED).increment(1);
        self.mail.post(peer, |t| {
            t.refused_streams += 1;
            if penalty {
                t.medium = t.medium.saturating_add(1);
            }
        });
    }

    /// Forgets the allowances of peers back within them and not over (on the driver's flush
    /// tick).
    pub(crate) fn forget_idle(&self, now: Instant) {
        if let Some(limit) = &self.limit {
            limit.forget_idle(now);
        }
    }
}

/// A connection's muxer whose inbound streams are charged to the peer as they are accepted.
pub(crate) struct Muxer {
    inner: StreamMuxerBox,
    peer: PeerId,
    meter: Arc<Meter>,
    /// Admitted, waiting for the swarm to take them.
    admitted: VecDeque<SubstreamBox>,
    /// `poll` has taken everything the muxer had (its waker is registered) since the last
    /// `poll_inbound`: that one need not ask the muxer again.
    drained: bool,
}

impl Muxer {
    pub(crate) fn wrap(meter: &Arc<Meter>, peer: PeerId, inner: StreamMuxerBox) -> Self {
        Self {
            inner,
            peer,
            meter: meter.clone(),
            admitted: VecDeque::new(),
            drained: false,
        }
    }

    /// Takes what the muxer has accepted, charging each stream; keeps the admitted ones.
    /// `Ok(true)` when the muxer has nothing more (its waker is registered), `Ok(false)` after
    /// [`MAX_PER_POLL`] (the task is woken again), `Err` when the muxer failed.
    fn accept(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        for _ in 0..MAX_PER_POLL {
            let stream = match Pin::new(&mut self.inner).poll_inbound(cx) {
                Poll::Ready(Ok(stream)) => stream,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(true),
            };
            if !self.meter.admit(self.peer, Instant::now()) {
                continue; // dropped: reset
            }
            if self.admitted.len() >= MAX_WAITING {
                tracing::debug!(peer = %self.peer, "dropping an inbound stream: too many waiting");
                self.meter.refused(self.peer, false);
                continue;
            }
            self.admitted.push_back(stream);
        }
        // A flood: let the connection's other work run, then come back.
        cx.waker().wake_by_ref();
        Ok(false)
    }
}

impl StreamMuxer for Muxer {
    type Substream = SubstreamBox;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = &mut *self;
        if this.admitted.is_empty() && !this.drained {
            this.accept(cx)?;
        }
        this.drained = false;
        match this.admitted.pop_front() {
            Some(stream) => Poll::Ready(Ok(stream)),
            None => Poll::Pending,
        }
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

    /// Called by the swarm on every turn, also while it takes no inbound stream: accepts and
    /// charges them here.
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = &mut *self;
        let event = Pin::new(&mut this.inner).poll(cx)?;
        this.drained = this.accept(cx)?;
        event.map(Ok)
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
        let limit = meter.limit.as_ref().unwrap();
        meter.forget_idle(t0 + Duration::from_millis(12_500));
        assert_eq!(limit.len(), 1);
        meter.forget_idle(t0 + Duration::from_secs(60));
        assert_eq!(limit.len(), 0);
    }

    #[test]
    fn no_limit_admits_everything() {
        let meter = Meter::new(None, Arc::default());
        let peer = PeerId::random();
        assert!((0..10_000).all(|_| meter.admit(peer, Instant::now())));
    }

    /// A muxer whose peer opens `n` streams at once (and accepts nothing else).
    struct Opened(usize);

    impl StreamMuxer for Opened {
        type Substream = SubstreamBox;
        type Error = io::Error;

        fn poll_inbound(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<Self::Substream, Self::Error>> {
            if self.0 == 0 {
                return Poll::Pending;
            }
            self.0 -= 1;
            Poll::Ready(Ok(SubstreamBox::new(futures::io::Cursor::new(Vec::new()))))
        }

        fn poll_outbound(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<Self::Substream, Self::Error>> {
            Poll::Pending
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
            Poll::Pending
        }
    }

    /// A peer allowed `per_sec` streams opens 1,000 at once, while the swarm polls the muxer
    /// only (as it does with 128 negotiations under way).
    fn flooded(per_sec: u32) -> (Muxer, Arc<Mailbox>, PeerId) {
        let mail = Arc::new(Mailbox::default());
        let meter = Meter::new(Some(per_sec), mail.clone());
        let peer = PeerId::random();
        let mut muxer = Muxer::wrap(&meter, peer, StreamMuxerBox::new(Opened(1000)));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100 {
            assert!(Pin::new(&mut muxer).poll(&mut cx).is_pending());
        }
        (muxer, mail, peer)
    }

    /// While the swarm takes no inbound stream (its negotiation places full), the streams the
    /// muxer accepts are charged all the same, in `poll`: none waits uncharged.
    #[test]
    fn streams_are_charged_while_the_swarm_takes_none() {
        let (mut muxer, mail, peer) = flooded(32);
        // The burst (and what a slow machine refilled meanwhile), waiting for the swarm.
        let admitted = muxer.admitted.len();
        assert!((32..=34).contains(&admitted), "{admitted}");
        assert_eq!(mail.take()[&peer].refused_streams, 1000 - admitted as u64);
        // Then it takes them.
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..admitted {
            assert!(Pin::new(&mut muxer).poll_inbound(&mut cx).is_ready());
        }
        assert!(Pin::new(&mut muxer).poll_inbound(&mut cx).is_pending());
    }

    /// Past `MAX_WAITING` admitted streams waiting for the swarm, the next ones are dropped
    /// and counted as refused (charged all the same).
    #[test]
    fn no_more_than_max_waiting_streams_wait() {
        let (muxer, mail, peer) = flooded(100);
        assert_eq!(muxer.admitted.len(), MAX_WAITING);
        assert_eq!(
            mail.take()[&peer].refused_streams,
            1000 - MAX_WAITING as u64
        );
    }
}
