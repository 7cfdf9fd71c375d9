//! What the driver does for a peer's machine: publish its changes, dial it, remember what it
//! announced.

use std::time::SystemTime;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId};

use super::Driver;
use crate::error::Error;
use crate::event::{ConnectionEvent, Event};
use crate::peer::{Change, DisconnectReason, Input, State};
use crate::stats::Handshake;
use crate::telemetry::{self as m, state_label};

/// Most learned addresses kept per peer.
const MAX_LEARNED: usize = 8;

impl Driver {
    pub(super) fn publish(&mut self, peer: PeerId, change: Change) {
        let state = change.state;
        // Handshaked peers are never refused by admission; strangers again once they leave.
        match state {
            State::Established => self.swarm.behaviour_mut().admission.trust(peer),
            State::Disconnected | State::Reconnecting | State::Cooldown
                if self.book.get(&peer).is_none() =>
            {
                self.swarm.behaviour_mut().admission.distrust(&peer);
            }
            _ => {}
        }
        // Handshaked peers get the larger receive budget (from `prepare_streams` on); others
        // the strangers' (docs/configuration.md, "Receive budgets").
        match state {
            State::Established => self
                .shared
                .inbox
                .set_kind(&peer, crate::inbox::Kind::Trusted),
            State::Connected => {}
            _ => self
                .shared
                .inbox
                .set_kind(&peer, crate::inbox::Kind::Stranger),
        }
        let outbound = self.refresh_view(peer);
        tracing::info!(%peer, %state, reason = ?change.reason, attempt = ?change.attempt, "peer state");
        metrics::counter!(m::EVENTS_EMITTED, "state" => state_label(state)).increment(1);
        if state == State::Connecting && change.attempt.is_some() {
            metrics::counter!(m::RECONNECT_ATTEMPTS).increment(1);
        }
        let timed_out = change.reason == Some(DisconnectReason::HandshakeTimeout);
        let now = tokio::time::Instant::now();
        let (previous, handshake) = self
            .shared
            .stats
            .peer(peer, now)
            .state_changed(state, outbound, timed_out, now);
        if previous != State::Disconnected {
            metrics::gauge!(m::PEERS, "state" => state_label(previous)).decrement(1.0);
        }
        if state != State::Disconnected {
            metrics::gauge!(m::PEERS, "state" => state_label(state)).increment(1.0);
        }
        if let Some(h) = handshake {
            tracing::debug!(%peer, result = h.label(), "handshake ended");
            metrics::counter!(m::HANDSHAKE_RESULTS, "result" => h.label()).increment(1);
            if let Handshake::Succeeded(took) = h {
                metrics::histogram!(m::HANDSHAKE_DURATION).record(took.as_secs_f64());
            }
        }
        if matches!(
            state,
            State::Disconnected | State::Reconnecting | State::Cooldown
        ) {
            // Whatever was waiting for this dial has its answer.
            let reason = change.reason.clone();
            self.fail_waiting(peer, || Error::Dial {
                peer,
                reason: reason
                    .as_ref()
                    .map_or_else(|| state.to_string(), |r| r.to_string()),
            });
        }
        if let Some(tx) = &self.shared.handshakes {
            let _ = tx.send((peer, state));
        }
        self.shared.emit(Event::Connection(ConnectionEvent {
            peer,
            state,
            reason: change.reason,
            attempt: change.attempt,
            delay: change.delay,
            at: SystemTime::now(),
        }));
    }

    pub(super) fn dial(&mut self, peer: PeerId) {
        let mut addrs = match self.book.get(&peer) {
            Some(e) => e.addrs.clone(),
            None => self.learned.get(&peer).cloned().unwrap_or_default(),
        };
        if let Some(first) = self.dial_once.remove(&peer) {
            addrs.retain(|a| a != &first);
            addrs.insert(0, first);
        }
        // A fresh source port: dialling from the listen port lets two nodes that dial each
        // other at once meet in one TCP simultaneous open, where both sides start Noise as
        // initiator and the handshake fails.
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial refused at once");
            self.dial_failed(peer);
            self.follow_ups
                .push_back((peer, Input::DialFailed(e.to_string())));
        }
    }

    /// Remembers addresses of a connected peer outside the address book.
    pub(super) fn learn(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        if self.book.get(&peer).is_some() || !self.peers.contains_key(&peer) {
            return;
        }
        let known = self.learned.entry(peer).or_default();
        for a in addrs {
            // Our dials carry the peer's id; keep the bare address.
            let a: Multiaddr = a
                .into_iter()
                .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                .collect();
            // The most recent first; the oldest goes when there are too many.
            known.retain(|k| k != &a);
            known.insert(0, a);
            known.truncate(MAX_LEARNED);
        }
    }

    /// A dial to `peer` failed (at once, or after trying its addresses).
    pub(super) fn dial_failed(&mut self, peer: PeerId) {
        metrics::counter!(m::CONNECTION_ATTEMPTS, "result" => "failure").increment(1);
        self.shared
            .stats
            .peer(peer, tokio::time::Instant::now())
            .dial_failed();
    }
}
