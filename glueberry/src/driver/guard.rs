//! Liveness and admission, wired: severing the connections liveness finds dead, and
//! counting, logging and reporting what admission refuses or evicts. The rules themselves are
//! sans-IO in `crate::liveness` and `crate::admission`.

use std::time::{Instant, SystemTime};

use libp2p::{Multiaddr, PeerId};

use super::Driver;
use crate::admission;
use crate::event::{AdmissionCause, AdmissionEvent, Event};
use crate::peer::{DisconnectReason, Input, State};
use crate::telemetry as m;

impl Driver {
    /// Connections whose peer stopped answering: sever them (a graceful close would wait
    /// forever on a silent path); `ConnectionClosed` follows at once with this reason. They stay
    /// watched until it does: if it has not come by the next deadline (`ping_timeout` later),
    /// every connection of the peer is severed.
    pub(super) fn on_liveness_timeout(&mut self) {
        let now = Instant::now();
        let dead = self.liveness.handle_timeout(now);
        for id in dead {
            let Some((peer, switch)) = self.peers.iter().find_map(|(peer, p)| {
                p.conns
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| (*peer, c.switch.clone()))
            }) else {
                continue;
            };
            let again = self.closing.get(&id) == Some(&DisconnectReason::Unresponsive);
            if let Some(at) = now.checked_add(self.shared.config.ping_timeout) {
                self.liveness.recheck(id, at);
            }
            if again {
                tracing::warn!(%peer, connection = %id, "a severed connection did not close: severing every connection of the peer");
                let switches: Vec<_> = self.peers[&peer]
                    .conns
                    .iter()
                    .filter_map(|c| c.switch.clone())
                    .collect();
                for s in switches {
                    s.sever();
                }
                continue;
            }
            tracing::info!(%peer, connection = %id, "peer stopped answering pings: severing the connection");
            metrics::counter!(m::CONNECTIONS_SEVERED).increment(1);
            self.closing.insert(id, DisconnectReason::Unresponsive);
            match switch {
                Some(switch) => switch.sever(),
                None => {
                    self.swarm.close_connection(id);
                }
            }
        }
    }

    /// Counts a refusal or eviction, and logs and reports it (at most once per cause per
    /// second; the rest are carried by the next report).
    pub(super) fn on_admission(&mut self, report: admission::Report) {
        let cause = report.cause;
        *crate::shared::lock(&self.shared.admission).get_mut(cause) += 1;
        if let Some(id) = report.connection {
            self.closing.entry(id).or_insert_with(|| {
                DisconnectReason::Error("evicted: too many strangers, and it was the oldest".into())
            });
        }
        match cause {
            AdmissionCause::PendingEvicted => {} // counted where it happens (transport)
            AdmissionCause::StrangerEvicted => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "stranger").increment(1);
            }
            AdmissionCause::Superseded => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "superseded").increment(1);
            }
            AdmissionCause::Faults => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "faults").increment(1);
            }
            AdmissionCause::Rejected => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "rejected").increment(1);
            }
            AdmissionCause::Banned => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "banned").increment(1);
            }
            _ => {
                metrics::counter!(m::CONNECTIONS_REFUSED, "limit" => cause.label()).increment(1);
            }
        }
        if let Some(count) = self.throttle.record(cause, Instant::now()) {
            self.emit_admission(cause, count, report.peer, report.remote);
        }
    }

    pub(super) fn flush_admission_reports(&mut self) {
        for (cause, count) in self.throttle.flush(Instant::now()) {
            self.emit_admission(cause, count, None, None);
        }
    }

    pub(super) fn emit_admission(
        &self,
        cause: AdmissionCause,
        count: u64,
        peer: Option<PeerId>,
        remote: Option<Multiaddr>,
    ) {
        match cause {
            AdmissionCause::Superseded => {
                tracing::info!(%cause, count, ?peer, "admission: superseded connections closed");
            }
            AdmissionCause::Faults => {
                tracing::warn!(%cause, count, ?peer, "admission: a peer kept sending bad frames: disconnected for fault_cooldown");
            }
            AdmissionCause::Rejected => {
                tracing::info!(%cause, count, ?peer, "admission: peers rejected by the application: kept out for rejection_cooldown");
            }
            _ => {
                tracing::warn!(%cause, count, ?peer, ?remote, "admission: connections refused or evicted")
            }
        }
        self.shared.emit(Event::Admission(AdmissionEvent {
            cause,
            count,
            peer,
            remote,
            at: SystemTime::now(),
        }));
    }

    /// A peer reached `max_faults` (a stream reader said so): it is disconnected and kept out
    /// for `fault_cooldown`; counted and reported as an admission.
    pub(super) fn on_faulty(&mut self, peer: PeerId) {
        // A peer already gone gets a machine for its cooldown (it keeps it out).
        self.peer(peer);
        let _ = self.apply(peer, Input::Faulted);
        self.on_admission(admission::Report {
            cause: AdmissionCause::Faults,
            connection: None,
            peer: Some(peer),
            remote: None,
        });
        // Then the score (a ban outlasts the cooldown; a disconnect finds it cooling down).
        self.on_verdict(peer, crate::scoring::Severity::High);
    }

    /// The application rejected a peer: it is disconnected and kept out for
    /// `rejection_cooldown`; counted and reported as an admission.
    pub(super) fn on_rejected(&mut self, peer: PeerId, reason: String) {
        self.keep_out(peer, reason);
        self.on_verdict(peer, crate::scoring::Severity::Medium);
    }

    /// Disconnects `peer` and keeps it out for `rejection_cooldown`; counted as a rejection.
    pub(super) fn keep_out(&mut self, peer: PeerId, reason: String) {
        let machine = &self.peer(peer).machine;
        if machine.state() == State::Cooldown || machine.is_blacklisted() {
            return; // kept out already: that cooldown (or the blacklist) stands
        }
        let _ = self.apply(peer, Input::Rejected(reason));
        self.on_admission(admission::Report {
            cause: AdmissionCause::Rejected,
            connection: None,
            peer: Some(peer),
            remote: None,
        });
    }
}
