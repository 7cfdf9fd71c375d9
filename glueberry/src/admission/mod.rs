//! Admission: which connections the node lets in (docs/admission.md).
//!
//! The rules live in [`table::Table`] (plain state, unit- and property-tested); this module is
//! the libp2p side: a `NetworkBehaviour` that asks the table at each stage of a connection,
//! closes the strangers it evicts, and reports every refusal and eviction to the driver. The
//! pending stage's eviction is in the transport (`transport::pending`), since libp2p gives a
//! behaviour no way to end a connection still in its security handshake.

pub(crate) mod table;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::PeerId;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::{Endpoint, Multiaddr, transport::PortUse};
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, DialFailure, FromSwarm,
    ListenFailure, NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};

pub(crate) use table::Limits;

use crate::event::AdmissionCause as Cause;

/// A refusal or eviction, for the driver to count, log and report.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) cause: Cause,
    pub(crate) peer: Option<PeerId>,
    pub(crate) remote: Option<Multiaddr>,
    /// The connection closed, for an eviction.
    pub(crate) connection: Option<ConnectionId>,
}

/// Why a connection was refused (what the swarm reports for it).
#[derive(Debug, thiserror::Error)]
#[error("connection refused: {0}")]
pub(crate) struct Refused(Cause);

pub(crate) fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The admission behaviour.
pub(crate) struct Behaviour {
    table: table::Table,
    out: VecDeque<ToSwarm<Report, std::convert::Infallible>>,
}

impl Behaviour {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            table: table::Table::new(limits),
            out: VecDeque::new(),
        }
    }

    /// `peer` is in the book or finished the application handshake: never refused.
    pub(crate) fn trust(&mut self, peer: PeerId) {
        self.table.trust(peer);
    }

    /// `peer` opened the handshake stream.
    pub(crate) fn progressed(&mut self, peer: &PeerId) {
        self.table.progressed(peer);
    }

    /// `peer` is neither in the book nor handshaked any more.
    pub(crate) fn distrust(&mut self, peer: &PeerId) {
        self.table.distrust(peer);
    }

    fn report(&mut self, cause: Cause, peer: Option<PeerId>, remote: &Multiaddr) {
        self.out.push_back(ToSwarm::GenerateEvent(Report {
            cause,
            peer,
            remote: Some(remote.clone()),
            connection: None,
        }));
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Report;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.table
            .pending_inbound(id, ip_of(remote))
            .map_err(|cause| {
                self.report(cause, None, remote);
                ConnectionDenied::new(Refused(cause))
            })
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        match self.table.established(id, peer, true) {
            Ok(table::Admit::Yes) => Ok(dummy::ConnectionHandler),
            Ok(table::Admit::Evicting(old_peer, old)) => {
                self.out.push_back(ToSwarm::CloseConnection {
                    peer_id: old_peer,
                    connection: CloseConnection::One(old),
                });
                self.out.push_back(ToSwarm::GenerateEvent(Report {
                    cause: Cause::StrangerEvicted,
                    peer: Some(old_peer),
                    remote: None,
                    connection: Some(old),
                }));
                Ok(dummy::ConnectionHandler)
            }
            Err(cause) => {
                self.report(cause, Some(peer), remote);
                Err(ConnectionDenied::new(Refused(cause)))
            }
        }
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Our own dials are always let in.
        let _ = self.table.established(id, peer, false);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.table.closed(connection_id);
            }
            // Failed in its handshake, or refused by another behaviour.
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::DialFailure(DialFailure { connection_id, .. }) => {
                self.table.failed(connection_id);
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
        match self.out.pop_front() {
            Some(e) => Poll::Ready(e),
            None => Poll::Pending,
        }
    }
}
