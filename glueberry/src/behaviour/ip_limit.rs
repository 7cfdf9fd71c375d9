//! A limit on inbound connections per remote IP address, pending (in their security
//! handshake) and established together, checked before the security handshake (libp2p's
//! `connection_limits` counts per peer, not per address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};

/// Refuses an inbound connection from an IP that already has `max` inbound connections,
/// pending or established. `None` disables the check.
pub(crate) struct Behaviour {
    max: Option<usize>,
    counts: HashMap<IpAddr, usize>,
    /// Inbound connections counted while still in their handshake.
    pending: HashMap<ConnectionId, IpAddr>,
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
#[error("{ip} already has {max} inbound connections")]
pub(crate) struct Exceeded {
    ip: IpAddr,
    max: usize,
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl Behaviour {
    pub(crate) fn new(max: Option<usize>) -> Self {
        Self {
            max,
            counts: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    fn release(&mut self, ip: IpAddr) {
        if let Some(n) = self.counts.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let (Some(max), Some(ip)) = (self.max, ip_of(remote)) else {
            return Ok(());
        };
        let n = self.counts.entry(ip).or_default();
        if *n >= max {
            metrics::counter!(crate::telemetry::CONNECTIONS_REFUSED, "limit" => "per_ip")
                .increment(1);
            return Err(ConnectionDenied::new(Exceeded { ip, max }));
        }
        *n += 1;
        self.pending.insert(id, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            // Counted since it was pending; it stays counted until it closes.
            FromSwarm::ConnectionEstablished(ConnectionEstablished { connection_id, .. }) => {
                self.pending.remove(&connection_id);
            }
            FromSwarm::ConnectionClosed(ConnectionClosed {
                endpoint: ConnectedPoint::Listener { send_back_addr, .. },
                ..
            }) if self.max.is_some() => {
                if let Some(ip) = ip_of(send_back_addr) {
                    self.release(ip);
                }
            }
            // A pending connection failed or was refused by another behaviour.
            FromSwarm::ListenFailure(failure) => {
                if let Some(ip) = self.pending.remove(&failure.connection_id) {
                    self.release(ip);
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use libp2p::swarm::{ListenError, ListenFailure};

    use super::*;

    fn addr(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4000").parse().unwrap()
    }

    fn fail(b: &mut Behaviour, id: ConnectionId, remote: &Multiaddr) {
        let error = ListenError::Aborted;
        b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
            local_addr: remote,
            send_back_addr: remote,
            error: &error,
            connection_id: id,
            peer_id: None,
        }));
    }

    #[test]
    fn pending_connections_count_and_failures_give_their_place_back() {
        let mut b = Behaviour::new(Some(2));
        let (one, other) = (addr("10.0.0.1"), addr("10.0.0.2"));
        let (c1, c2, c3) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
            ConnectionId::new_unchecked(3),
        );
        let local = addr("127.0.0.1");
        assert!(
            b.handle_pending_inbound_connection(c1, &local, &one)
                .is_ok()
        );
        assert!(
            b.handle_pending_inbound_connection(c2, &local, &one)
                .is_ok()
        );
        // Two in their handshake from one IP: a third is refused before its handshake.
        assert!(
            b.handle_pending_inbound_connection(c3, &local, &one)
                .is_err()
        );
        assert!(
            b.handle_pending_inbound_connection(c3, &local, &other)
                .is_ok()
        );
        // A refused connection never held a place: failing it changes nothing.
        fail(&mut b, ConnectionId::new_unchecked(9), &one);
        assert!(
            b.handle_pending_inbound_connection(c3, &local, &one)
                .is_err()
        );
        // One that fails its handshake gives its place back.
        fail(&mut b, c1, &one);
        assert!(
            b.handle_pending_inbound_connection(ConnectionId::new_unchecked(4), &local, &one)
                .is_ok()
        );
        assert_eq!(b.counts[&ip_of(&one).unwrap()], 2);
        assert!(b.pending.len() == 3);
    }
}
