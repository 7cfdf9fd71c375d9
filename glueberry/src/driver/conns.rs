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

    /// A peer with more than `max_connections_per_peer` connections. A connection that came up
    /// while the peer was Established means it restarted (or dials again) while its old
    /// connection lingers: the new one is kept and the oldest closed at once (a retired
    /// duplicate first), since refusing the new one would keep the peer out until the old one
    /// dies. Connections of a simultaneous dial (the peer not Established yet) are left to
    /// `settle_duplicates`, which retires all but one and lets them drain: closing one at once
    /// could lose what the peer already sent on it. So a simultaneous dial may hold one
    /// connection above the limit while its duplicate drains; past that, the oldest retired
    /// ones are closed.
    pub(super) fn supersede_oldest(&mut self, peer: PeerId, new: ConnectionId) {
        let Some(max) = self.shared.config.max_connections_per_peer else {
            return;
        };
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let restart = p.conns.iter().any(|c| c.id == new && c.after_established);
        let max = if restart { max } else { max + 1 };
        // Never the connection both sides keep.
        let keep = if restart {
            None
        } else {
            self.keeper(&peer).map(|c| c.id)
        };
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let spared = |id: ConnectionId| id == new || Some(id) == keep;
        let excess = p
            .conns
            .iter()
            .filter(|c| !self.closing.contains_key(&c.id))
            .count()
            .saturating_sub(max);
        let mut victims: Vec<ConnectionId> = p
            .conns
            .iter()
            .filter(|c| !spared(c.id) && c.retired && !self.closing.contains_key(&c.id))
            .chain(
                p.conns
                    .iter()
                    .filter(|c| !spared(c.id) && !c.retired && !self.closing.contains_key(&c.id)),
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
                connection: None,
            });
        }
    }
}
