//! Streams: the protocols accepted inbound, outbound streams on the kept connection, and
//! what a new handshake stream means.

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use super::Driver;
use crate::behaviour::streams::{Inbound, OpenError};
use crate::peer::{DisconnectReason, Input, State};
use crate::shared::OpenStream;
use crate::stream;
use crate::wire::{self, HANDSHAKE};

impl Driver {
    /// Accepts inbound streams named `names` from `peer` (for its current session).
    pub(super) fn accept_from(&mut self, peer: PeerId, names: &[String]) {
        let protocols: Vec<_> = names.iter().map(|n| wire::protocol_id(n)).collect();
        for (protocol, name) in protocols.iter().zip(names) {
            self.accepting
                .entry(protocol.clone())
                .or_insert_with(|| name.clone());
        }
        self.swarm
            .behaviour_mut()
            .stream
            .accept_from(peer, protocols);
    }

    /// Accepts inbound streams named `name` from every peer from now on (the handshake).
    pub(super) fn accept(&mut self, name: &str) {
        let protocol = wire::protocol_id(name);
        if self.accepting.contains_key(&protocol) {
            return;
        }
        self.swarm.behaviour_mut().stream.accept(protocol.clone());
        self.accepting.insert(protocol, name.to_owned());
    }

    /// Opens an outbound stream on the connection kept for the peer (never dials).
    pub(super) fn on_open(&mut self, open: OpenStream) {
        match self.keeper(&open.peer) {
            Some(connection) => self.swarm.behaviour_mut().stream.open(
                open.peer,
                connection.id,
                open.protocol,
                open.reply,
            ),
            None => {
                let _ = open.reply.send(Err(OpenError::NotConnected));
            }
        }
    }

    /// An inbound stream, negotiated for an accepted protocol.
    pub(super) fn on_inbound(&mut self, inbound: Inbound) {
        let Inbound {
            peer,
            connection,
            protocol,
            stream: s,
        } = inbound;
        let Some(name) = self.accepting.get(&protocol).cloned() else {
            return;
        };
        if name == HANDSHAKE && !self.handshake_allowed(peer) {
            // Over `max_handshake_streams`: dropped, which resets it.
            drop(s);
            stream::count_refused(&self.shared, &peer);
            return;
        }
        tracing::trace!(%peer, %connection, stream = name, "inbound stream");
        let s = match stream::accept_inbound(&self.shared, peer, &name, s) {
            None => None,
            // Its connection is up but the peer has no session yet: open it.
            Some(s) if self.swarm.is_connected(&peer) => {
                let stats = self.shared.stats.peer(peer, tokio::time::Instant::now());
                self.shared.sessions.open(peer, &self.shared.token, stats);
                stream::accept_inbound(&self.shared, peer, &name, s)
            }
            Some(s) => Some(s),
        };
        if s.is_some() {
            tracing::debug!(%peer, stream = name, "inbound stream from a peer that is gone");
            stream::count_refused(&self.shared, &peer);
            return;
        }
        if name == HANDSHAKE {
            self.swarm.behaviour_mut().admission.progressed(&peer);
            self.on_handshake_stream(peer, connection);
        }
    }

    /// Whether `peer` may open one more handshake stream now (`max_handshake_streams`; every
    /// inbound stream was charged to `max_new_streams` by the transport already). A peer that
    /// stays over the limit loses score (churn costs the node more than a flood read slowly:
    /// `Medium`).
    fn handshake_allowed(&mut self, peer: PeerId) -> bool {
        let Some(limit) = &self.new_handshakes else {
            return true;
        };
        let Err(over) = limit.take_one(peer, std::time::Instant::now()) else {
            return true;
        };
        if over.penalty {
            tracing::info!(%peer, limit = "max_handshake_streams", "peer keeps opening streams over its limit: score lowered");
            self.on_verdict(peer, crate::scoring::Severity::Medium);
        }
        false
    }

    /// A new handshake stream, while Established, on a connection that came up after the
    /// peer was Established: the peer restarted (its old connection may linger until it times
    /// out). Keep only the newest connection and go through the handshake again. A handshake
    /// stream on an older connection (a late one of the first handshake, or on the duplicate
    /// of a simultaneous dial) changes nothing.
    pub(super) fn on_handshake_stream(&mut self, peer: PeerId, connection: ConnectionId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        // Decided on the connection alone: the older ones may already be gone (superseded
        // when this one came up).
        let Some(on) = p.conns.iter().find(|c| c.id == connection) else {
            return;
        };
        if p.machine.state() != State::Established || !on.after_established {
            return;
        }
        let was_retired = on.retired;
        let stale: Vec<ConnectionId> = p
            .conns
            .iter()
            .filter(|c| c.id != connection && !self.closing.contains_key(&c.id))
            .map(|c| c.id)
            .collect();
        if let Some(p) = self.peers.get_mut(&peer) {
            // The stale ones get no new streams while they close; this one is the keeper.
            for c in p.conns.iter_mut() {
                c.retired = c.id != connection;
            }
        }
        if was_retired {
            self.swarm
                .behaviour_mut()
                .stream
                .retire(peer, connection, false);
        }
        tracing::info!(%peer, stale = stale.len(), "peer handshakes again on a new connection");
        for id in stale {
            if self.swarm.close_connection(id) {
                self.closing.insert(
                    id,
                    DisconnectReason::Error("superseded by a new connection".into()),
                );
            }
        }
        let _ = self.apply(peer, Input::HandshakeStreamOpened);
    }
}
