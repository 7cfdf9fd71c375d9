//! A behaviour whose connection handlers are polled at most so many times a second per
//! connection: wrapped around libp2p's ping, it answers a peer's pings at most at that rate
//! (each poll answers at most one), so a ping flood costs the node that rate, and the muxer's
//! flow control pushes back on the flooder (docs/scoring.md, "Quotas"). The node's own pings
//! (every `ping_interval`) are far below it.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::ConnectionEvent;
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use crate::quota::Bucket;
use crate::telemetry as m;

/// `B`, its handlers polled at most `per_sec` times a second each (`None`: no limit).
pub(crate) struct Paced<B> {
    inner: B,
    per_sec: Option<u32>,
}

impl<B> Paced<B> {
    pub(crate) fn new(inner: B, per_sec: Option<u32>) -> Self {
        Self { inner, per_sec }
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Paced<B> {
    type ConnectionHandler = PacedHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

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
        Ok(PacedHandler::new(inner, self.per_sec))
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
        Ok(PacedHandler::new(inner, self.per_sec))
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

/// A handler polled at most at its bucket's rate.
pub(crate) struct PacedHandler<H> {
    inner: H,
    bucket: Option<Bucket>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<H> PacedHandler<H> {
    fn new(inner: H, per_sec: Option<u32>) -> Self {
        let bucket = per_sec.map(|n| Bucket::new(crate::quota::Quota::messages(n), Instant::now()));
        Self {
            inner,
            bucket,
            sleep: None,
        }
    }
}

impl<H: ConnectionHandler> ConnectionHandler for PacedHandler<H> {
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
        if let Some(sleep) = &mut self.sleep {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        if let Some(bucket) = &mut self.bucket {
            let now = Instant::now();
            if !bucket.try_take_one(now) {
                metrics::counter!(m::PINGS_PACED).increment(1);
                let at = bucket.ready_at_one(now);
                let mut sleep = Box::pin(tokio::time::sleep_until(at.into()));
                // Registers the waker: polled again when a poll is due.
                let _ = sleep.as_mut().poll(cx);
                self.sleep = Some(sleep);
                return Poll::Pending;
            }
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
        self.inner.on_connection_event(event);
    }
}
