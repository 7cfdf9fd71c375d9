//! Peer scores and timed bans (docs/scoring.md): verdicts lower a peer's score; at the
//! thresholds the peer is disconnected, or banned until a time kept in the address book.

use std::time::{Duration, SystemTime};

use tokio_util::time::DelayQueue;

use libp2p::PeerId;
use time::OffsetDateTime;

use super::Driver;
use crate::admission;
use crate::event::AdmissionCause;
use crate::peer::{Input, State};
use crate::scoring::{Outcome, Severity};

impl Driver {
    /// A verdict on `peer`, from the library or the application: lowers its score and acts on
    /// the thresholds. Returns the score after it (zero once banned: the ban is the penalty).
    pub(super) fn on_verdict(&mut self, peer: PeerId, severity: Severity) -> f64 {
        let now = std::time::Instant::now();
        match self.scores.report(peer, severity, now) {
            Outcome::Lowered(score) => {
                tracing::debug!(%peer, ?severity, score, "peer score lowered");
                score
            }
            Outcome::Disconnect(score) => {
                tracing::info!(%peer, ?severity, score, "peer score at the disconnect threshold");
                let limit = self.shared.config.scoring.disconnect_below;
                self.keep_out(peer, format!("score {score:.0} at or below {limit:.0}"));
                score
            }
            Outcome::Ban { score, .. } => {
                let until = OffsetDateTime::now_utc() + self.shared.config.scoring.ban_duration;
                tracing::warn!(%peer, ?severity, score, %until, "peer score at the ban threshold: banned");
                self.ban(peer, until);
                0.0
            }
        }
    }

    /// Takes what stream readers and connections found against peers: refused streams are
    /// counted, a peer past `max_faults` is disconnected for `fault_cooldown`, verdicts lower
    /// scores.
    pub(super) fn on_mail(&mut self) {
        for (peer, tally) in self.shared.mail.take() {
            if tally.refused_streams > 0
                && let Some(e) = self.shared.stats.get(&peer)
            {
                e.streams_refused(tally.refused_streams);
            }
            if tally.faulted {
                self.on_faulty(peer);
            }
            for _ in 0..tally.medium {
                self.on_verdict(peer, Severity::Medium);
            }
            for _ in 0..tally.low {
                self.on_verdict(peer, Severity::Low);
            }
        }
    }

    /// Bans `peer` until `until`: its connections close and it is refused both ways, also
    /// after a restart (the ban is in the address book) until it expires.
    pub(super) fn ban(&mut self, peer: PeerId, until: OffsetDateTime) {
        self.ban_until(peer, until, false);
    }

    /// [`ban`](Self::ban); `restoring` a ban read from the book at start (saved once after).
    fn ban_until(&mut self, peer: PeerId, until: OffsetDateTime, restoring: bool) {
        // (A hand-edited book may say later: a year at most.)
        let until = until.min(OffsetDateTime::now_utc() + crate::scoring::MAX_BAN);
        let again = self.ban_keys.contains_key(&peer);
        self.book.ban(peer, until);
        let until = self.book.bans()[&peer];
        if restoring {
            self.book_dirty = true;
        } else {
            self.save_book();
        }
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.apply(peer, Input::Banned(SystemTime::from(until)));
        let left = Duration::try_from(until - OffsetDateTime::now_utc())
            .unwrap_or(Duration::ZERO)
            .min(crate::scoring::MAX_BAN);
        let at = tokio::time::Instant::now() + left;
        match self.ban_keys.get(&peer) {
            Some(key) => self.bans.reset_at(key, at),
            None => {
                if self.bans.is_empty() {
                    self.bans = DelayQueue::new();
                }
                let key = self.bans.insert_at(peer, at);
                self.ban_keys.insert(peer, key);
            }
        }
        if again {
            return; // a longer ban of a banned peer: counted once
        }
        metrics::counter!(crate::telemetry::PEERS_BANNED).increment(1);
        self.on_admission(admission::Report {
            cause: AdmissionCause::Banned,
            connection: None,
            peer: Some(peer),
            remote: None,
        });
    }

    /// `peer`'s ban ended: it may connect again; a book peer (not blacklisted) is dialled.
    pub(super) fn unban(&mut self, peer: PeerId) {
        self.ban_keys.remove(&peer);
        if !self.book.unban(&peer) {
            return;
        }
        self.save_book();
        let (in_book, blacklisted) = self
            .book
            .get(&peer)
            .map_or((false, false), |e| (true, e.blacklisted));
        if blacklisted {
            return; // blacklisted for good meanwhile
        }
        tracing::info!(%peer, "ban over");
        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        let _ = self.apply(peer, Input::Unblacklisted);
        if in_book && self.started && self.state(&peer) == State::Disconnected {
            let _ = self.apply(peer, Input::DialRequested);
        }
    }

    /// Enforces the bans the book holds (at start): those over are forgotten.
    pub(super) fn load_bans(&mut self) {
        let now = OffsetDateTime::now_utc();
        let bans: Vec<(PeerId, OffsetDateTime)> =
            self.book.bans().iter().map(|(p, u)| (*p, *u)).collect();
        for (peer, until) in bans {
            if until <= now {
                self.book.unban(&peer);
                self.book_dirty = true;
            } else {
                // (A hand-edited end past a year from now is cut to it: in the book too.)
                self.book.unban(&peer);
                self.peer(peer);
                self.ban_until(peer, until, true);
            }
        }
    }

    /// When `peer`'s ban ends, if it is banned.
    pub(super) fn banned_until(&self, peer: &PeerId) -> Option<SystemTime> {
        self.book.bans().get(peer).map(|u| SystemTime::from(*u))
    }
}
