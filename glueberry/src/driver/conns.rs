//! One peer's connections: which one new streams go on, duplicates of simultaneous dials, and
//! the connections a new one supersedes.

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use super::{Conn, Driver};
use crate::admission;
use crate::event::AdmissionCause;
use crate::peer::{DisconnectReason, State};
use crate::shared::{PeerView, lock};
use crate::telemetry as m;

impl Driver {
    /// The connection new streams go on: the one dialled by the smaller `PeerId` (both sides
    /// pick the same one when both dialled at once), else the newest not retired.
    pub(super) fn keeper(&self, peer: &PeerId) -> Option<Conn> {
        let p = self.peers.get(peer)?;
        let we_are_smaller = *self.swarm.local_peer_id() < *peer;
        // Connections being closed (superseded, severed) carry no new streams.
        let open = || {
            p.conns
                .iter()
                .rev()
                .filter(|c| !self.closing.contains_key(&c.id))
        };
        let live = || open().filter(|c| !c.retired);
        live()
            .find(|c| c.outbound == we_are_smaller)
            .or_else(|| live().next())
            .or_else(|| open().next())
            .or_else(|| p.conns.last())
            .cloned()
    }

    /// Refreshes what `connection_state`, `is_outbound` and `connection_count` read.
    /// Returns the direction of the kept connection, as the view now says.
    pub(super) fn refresh_view(&mut self, peer: PeerId) -> Option<bool> {
        let Some(p) = self.peers.get(&peer) else {
            lock(&self.shared.states).remove(&peer);
            return None;
        };
        let state = p.machine.state();
        let connections = p.conns.len();
        let outbound = match state {
            State::Connected | State::Established => self
                .keeper(&peer)
                .map(|c| c.outbound)
                .or(p.machine.is_outbound()),
            _ => None,
        };
        lock(&self.shared.states).insert(
            peer,
            PeerView {
                state,
                outbound,
                connections,
            },
        );
        outbound
    }

    /// Both sides dialled at once: keep the connection dialled by the smaller `PeerId`, retire
    /// the others. Writers are dropped so that new streams go on the kept connection; the old
    /// streams drain and close from both ends, then the retired connection idles out. Nothing
    /// sent on it is lost.
    pub(super) fn settle_duplicates(&mut self, peer: PeerId) {
        let Some(keep) = self.keeper(&peer) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut retired = Vec::new();
        for c in p.conns.iter_mut().filter(|c| c.id != keep.id && !c.retired) {
            c.retired = true;
            retired.push(c.id);
        }
        if retired.is_empty() {
            return;
        }
        tracing::debug!(%peer, kept = %keep.id, ?retired, "duplicate connections: keeping one");
        metrics::counter!(m::DUPLICATE_CONNECTIONS).increment(retired.len() as u64);
        for id in retired {
            self.swarm.behaviour_mut().stream.retire(peer, id, true);
        }
        self.shared.sessions.drop_writers(&peer);
    }

    /// A peer with more than `max_connections_per_peer` connections: close its oldest (a
    /// retired duplicate first), never `new`. A peer that restarted connects again while its
    /// old connection lingers; refusing the new one would keep it out until the old one dies.
    pub(super) fn supersede_oldest(&mut self, peer: PeerId, new: ConnectionId) {
        let Some(max) = self.shared.config.max_connections_per_peer else {
            return;
        };
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let excess = p
            .conns
            .iter()
            .filter(|c| !self.closing.contains_key(&c.id))
            .count()
            .saturating_sub(max);
        let mut victims: Vec<ConnectionId> = p
            .conns
            .iter()
            .filter(|c| c.id != new && c.retired && !self.closing.contains_key(&c.id))
            .chain(
                p.conns
                    .iter()
                    .filter(|c| c.id != new && !c.retired && !self.closing.contains_key(&c.id)),
            )
            .map(|c| c.id)
            .collect();
        victims.truncate(excess);
        for id in victims {
            tracing::debug!(%peer, connection = %id, "closing the peer's oldest connection for its new one");
            if self.swarm.close_connection(id) {
                self.closing.insert(
                    id,
                    DisconnectReason::Error("superseded by a new connection".into()),
                );
            }
            self.on_admission(admission::Report {
                cause: AdmissionCause::Superseded,
                peer: Some(peer),
                remote: None,
            });
        }
    }
}
