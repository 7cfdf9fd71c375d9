//! libp2p's ping, with the answering side our own and paced (`max_pings`, docs/scoring.md
//! "Quotas"): a peer's pings are answered at most `max_pings` times a second over all its
//! connections (one allowance per peer, forgotten only once idle, so a new connection gets no
//! fresh one). Past that, the
//! answer waits, so reading stops and the muxer's flow control pushes back on the flooder; a
//! peer that stays over the rate for 10 s without a break gets a `Low` verdict for every
//! 10 s (through the driver's mailbox). libp2p's handler keeps the rest: the node's own
//! pings, their round-trip times and failures, which are never held up by a flood.
//!
//! The answer is libp2p's (`/ipfs/ping/1.0.0`: 32 bytes echoed, again and again on one
//! stream); a peer's newer ping stream replaces the older one, as in libp2p.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, FutureExt as _};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{ConnectionEvent, FullyNegotiatedInbound};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, StreamProtocol, SubstreamProtocol, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, ping};

use crate::quota::PerPeer;
use crate::scoring::Severity;
use crate::scoring::mailbox::Mailbox;
use crate::telemetry as m;

/// The ping behaviour, a peer's inbound pings answered at most `per_sec` times a second
/// (`None`: libp2p's own handler answers them, unpaced).
pub(crate) struct Paced {
    inner: ping::Behaviour,
    /// The peers' allowances.
    pings: Option<Arc<PerPeer>>,
    mail: Arc<Mailbox>,
}

impl Paced {
    pub(crate) fn new(inner: ping::Behaviour, per_sec: Option<u32>, mail: Arc<Mailbox>) -> Self {
        Self {
            inner,
            pings: per_sec.map(|n| Arc::new(PerPeer::new(n, std::time::Duration::from_secs(1)))),
            mail,
        }
    }

    /// Forgets the allowances of peers back within them and not over (on the driver's flush
    /// tick), on the pace's clock.
    pub(crate) fn forget_idle(&self) {
        if let Some(pings) = &self.pings {
            pings.forget_idle(now());
        }
    }

    fn handler<H>(&self, inner: H, peer: PeerId) -> PacedHandler<H> {
        PacedHandler {
            inner,
            pace: self.pings.as_ref().map(|pings| {
                Arc::new(Pace {
                    peer,
                    mail: self.mail.clone(),
                    pings: pings.clone(),
                })
            }),
            answering: None,
        }
    }
}

impl NetworkBehaviour for Paced {
    type ConnectionHandler = PacedHandler<THandler<ping::Behaviour>>;
    type ToSwarm = ping::Event;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_inbound_connection(id, peer, local, remote)?;
        Ok(self.handler(inner, peer))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addrs: &[Multiaddr],
        endpoint: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(id, peer, addrs, endpoint)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        endpoint: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self
            .inner
            .handle_established_outbound_connection(id, peer, addr, endpoint, port_use)?;
        Ok(self.handler(inner, peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

/// The clock of the pace: tokio's, so that tests can pause it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// One connection's way to its peer's allowance of pings.
struct Pace {
    peer: PeerId,
    mail: Arc<Mailbox>,
    pings: Arc<PerPeer>,
}

impl Pace {
    /// Takes one ping's allowance, or says when there will be one (and reports a peer that
    /// has been over the rate for too long).
    fn take(&self, now: Instant) -> Option<Instant> {
        let over = self.pings.take_one(self.peer, now).err()?;
        if over.penalty {
            tracing::info!(peer = %self.peer, limit = "max_pings", "peer keeps pinging over the rate: score lowered");
            self.mail.verdict(self.peer, Severity::Low);
        }
        Some(over.ready_at)
    }
}

/// Answers the pings of one stream, each once `pace` allows it, until the stream ends.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    pace: Arc<Pace>,
) -> io::Result<()> {
    let mut payload = [0u8; 32];
    loop {
        stream.read_exact(&mut payload).await?;
        if let Some(mut at) = pace.take(now()) {
            metrics::counter!(m::PINGS_PACED).increment(1);
            loop {
                tokio::time::sleep_until(at.into()).await;
                match pace.take(now()) {
                    None => break,
                    Some(later) => at = later,
                }
            }
        }
        stream.write_all(&payload).await?;
        stream.flush().await?;
    }
}

/// libp2p's ping handler, its inbound pings answered by [`answer`] when paced.
pub(crate) struct PacedHandler<H> {
    inner: H,
    /// `None`: not paced (libp2p's handler answers).
    pace: Option<Arc<Pace>>,
    /// The newest inbound ping stream being answered.
    answering: Option<BoxFuture<'static, io::Result<()>>>,
}

impl<H> ConnectionHandler for PacedHandler<H>
where
    H: ConnectionHandler<InboundProtocol = ReadyUpgrade<StreamProtocol>>,
{
    type FromBehaviour = H::FromBehaviour;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.inner.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        if let Some(answering) = &mut self.answering
            && let Poll::Ready(end) = answering.poll_unpin(cx)
        {
            tracing::debug!(?end, "inbound ping stream ended");
            self.answering = None;
        }
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.inner.on_behaviour_event(event);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        match (event, &self.pace) {
            (
                ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                    protocol: mut stream,
                    ..
                }),
                Some(pace),
            ) => {
                // As libp2p's handler: pings alone do not keep a connection alive.
                stream.ignore_for_keep_alive();
                self.answering = Some(answer(stream, pace.clone()).boxed());
            }
            (event, _) => self.inner.on_connection_event(event),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flooders on the other end of in-memory streams, on virtual time: answered at the rate
    /// (one second's worth at once) over all the peer's connections, and reported once per
    /// 10 s over it.
    #[tokio::test(start_paused = true)]
    async fn a_ping_flood_is_answered_at_the_rate_and_the_flooder_reported() {
        use tokio_util::compat::TokioAsyncReadCompatExt as _;
        let mail = Arc::new(Mailbox::default());
        let peer = PeerId::random();
        let pings = Arc::new(PerPeer::new(20, std::time::Duration::from_secs(1)));
        // Two connections of one peer share its allowance.
        let mut flooders = Vec::new();
        for _ in 0..2 {
            let pace = Arc::new(Pace {
                peer,
                mail: mail.clone(),
                pings: pings.clone(),
            });
            let (ours, theirs) = tokio::io::duplex(1024);
            tokio::spawn(answer(ours.compat(), pace));
            flooders.push(tokio::spawn(async move {
                let mut flooder = theirs.compat();
                let start = tokio::time::Instant::now();
                let (mut answered, mut buf) = (0u32, [0u8; 32]);
                while start.elapsed() < std::time::Duration::from_secs(21) {
                    flooder.write_all(&[answered as u8; 32]).await.unwrap();
                    flooder.read_exact(&mut buf).await.unwrap();
                    assert_eq!(buf, [answered as u8; 32]);
                    answered += 1;
                }
                answered
            }));
        }
        let mut answered = 0;
        for f in flooders {
            answered += f.await.unwrap();
        }
        // 20 at once, then 20 a second for 21 s, for both connections together.
        assert!((438..=442).contains(&answered), "{answered}");
        let got = mail.take();
        assert_eq!(got[&peer].low, 2, "one verdict per 10 s over: {got:?}");
    }
}
