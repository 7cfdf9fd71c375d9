//! Each connection's muxer wrapped so that the driver can end the connection at once.
//!
//! libp2p closes a connection gracefully: it flushes the muxer and waits for that to finish.
//! Over a path that went silent (a blackholed route, a frozen peer) the flush never finishes,
//! so the swarm would never report the connection closed, the peer would stay Established and
//! a reconnection could not start. A connection the driver finds dead is therefore *severed*:
//! its muxer fails at once with an error, the swarm drops it, and `ConnectionClosed` follows
//! straight away.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use libp2p::PeerId;
use libp2p::core::muxing::{StreamMuxer, StreamMuxerBox, StreamMuxerEvent, SubstreamBox};
use libp2p::core::{ConnectedPoint, Multiaddr};

/// What a severed connection's muxer fails with.
pub(crate) const SEVERED: &str = "connection severed: the peer stopped answering";

/// One connection's kill switch.
#[derive(Debug, Default)]
pub(crate) struct Switch {
    severed: AtomicBool,
    /// Its muxer is being closed (a connection the swarm refused or is closing): never handed
    /// to a new connection.
    closing: AtomicBool,
    waker: AtomicWaker,
}

impl Switch {
    /// Makes the connection's muxer fail at once (idempotent).
    pub(crate) fn sever(&self) {
        self.severed.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn is_severed(&self) -> bool {
        self.severed.load(Ordering::Acquire)
    }
}

/// Which connection a switch belongs to, as far as the transport can tell: the peer, and for
/// inbound connections the local and remote addresses (unique per connection). Outbound
/// connections of one peer are told apart by order (the driver dials a peer once at a time).
type Key = (PeerId, Option<(Multiaddr, Multiaddr)>);

/// Switches of connections whose muxer is up, until the driver takes them at
/// `ConnectionEstablished`. Entries of connections that never got that far (refused by a
/// behaviour) are weak and pruned.
#[derive(Clone, Default)]
pub(crate) struct Switches(Arc<Mutex<HashMap<Key, Vec<Weak<Switch>>>>>);

impl Switches {
    fn key(peer: PeerId, endpoint: &ConnectedPoint) -> Key {
        match endpoint {
            ConnectedPoint::Dialer { .. } => (peer, None),
            ConnectedPoint::Listener {
                local_addr,
                send_back_addr,
            } => (peer, Some((local_addr.clone(), send_back_addr.clone()))),
        }
    }

    fn register(&self, peer: PeerId, endpoint: &ConnectedPoint) -> Arc<Switch> {
        let switch = Arc::new(Switch::default());
        let mut map = crate::shared::lock(&self.0);
        map.retain(|_, v| {
            v.retain(|w| w.strong_count() > 0);
            !v.is_empty()
        });
        map.entry(Self::key(peer, endpoint))
            .or_default()
            .push(Arc::downgrade(&switch));
        switch
    }

    /// The switch of a connection that just came up (the oldest registered for its key).
    pub(crate) fn take(&self, peer: PeerId, endpoint: &ConnectedPoint) -> Option<Arc<Switch>> {
        let key = Self::key(peer, endpoint);
        let mut map = crate::shared::lock(&self.0);
        let list = map.get_mut(&key)?;
        let mut found = None;
        while !list.is_empty() {
            if let Some(s) = list.remove(0).upgrade()
                && !s.closing.load(Ordering::Acquire)
            {
                found = Some(s);
                break;
            }
        }
        if list.is_empty() {
            map.remove(&key);
        }
        found
    }
}

/// A muxer that fails at once when its switch is thrown.
pub(crate) struct Muxer {
    inner: StreamMuxerBox,
    switch: Arc<Switch>,
}

impl Muxer {
    pub(crate) fn wrap(
        switches: &Switches,
        peer: PeerId,
        endpoint: &ConnectedPoint,
        inner: StreamMuxerBox,
    ) -> Self {
        Self {
            inner,
            switch: switches.register(peer, endpoint),
        }
    }

    fn severed() -> io::Error {
        io::Error::new(io::ErrorKind::TimedOut, SEVERED)
    }
}

impl StreamMuxer for Muxer {
    type Substream = SubstreamBox;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        if self.switch.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll_inbound(cx)
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        if self.switch.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll_outbound(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.switch.closing.store(true, Ordering::Release);
        // A graceful close stuck on a silent path ends when the switch is thrown.
        self.switch.waker.register(cx.waker());
        if self.switch.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        self.switch.waker.register(cx.waker());
        if self.switch.is_severed() {
            return Poll::Ready(Err(Self::severed()));
        }
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(port: u16) -> ConnectedPoint {
        ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            send_back_addr: format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap(),
        }
    }

    #[test]
    fn switches_are_matched_by_peer_and_remote_address_and_pruned_when_dropped() {
        let s = Switches::default();
        let peer = PeerId::random();
        let a = s.register(peer, &listener(1000));
        let b = s.register(peer, &listener(1001));
        let dropped = s.register(PeerId::random(), &listener(1002));
        drop(dropped);
        assert!(Arc::ptr_eq(&s.take(peer, &listener(1001)).unwrap(), &b));
        assert!(s.take(peer, &listener(1001)).is_none());
        assert!(Arc::ptr_eq(&s.take(peer, &listener(1000)).unwrap(), &a));
        // The dropped one was pruned on the next registration.
        let _c = s.register(peer, &listener(1003));
        assert_eq!(crate::shared::lock(&s.0).len(), 1);
    }

    #[test]
    fn a_closing_muxer_s_switch_is_never_handed_out() {
        let s = Switches::default();
        let peer = PeerId::random();
        let dialer = ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            role_override: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::New,
        };
        // A refused connection's muxer, being closed by the swarm, then the real one.
        let dying = s.register(peer, &dialer);
        dying.closing.store(true, Ordering::Release);
        let live = s.register(peer, &dialer);
        assert!(Arc::ptr_eq(&s.take(peer, &dialer).unwrap(), &live));
    }

    #[test]
    fn a_severed_switch_stays_severed() {
        let s = Switch::default();
        assert!(!s.is_severed());
        s.sever();
        s.sever();
        assert!(s.is_severed());
    }
}
