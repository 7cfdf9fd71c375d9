//! Peer scores, sans-IO: misbehaviour lowers a peer's score, the score decays back towards
//! zero, and thresholds say when to disconnect the peer and when to ban it for a time
//! (docs/scoring.md). Fed verdicts and `Instant`s; tested with virtual time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

pub(crate) mod mailbox;

/// How bad a peer's misbehaviour is ([`Node::report`](crate::Node::report)); each lowers its
/// score by the [`scoring::Config`](Config) penalty of that severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// A nuisance: a late or useless message. Many make a difference.
    Low,
    /// A real fault: an invalid message, a failed handshake, an undecryptable frame.
    Medium,
    /// A serious fault: a message that proves a broken or hostile peer.
    High,
    /// Ban at once, whatever the score (an equivocating validator, say).
    Fatal,
}

/// The scoring model: penalties, decay and thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// What each severity takes off the score: `[Low, Medium, High]`. Defaults 1, 10, 40.
    pub penalties: [f64; 3],
    /// Half-life of a score's decay towards zero. Default 10 min.
    pub half_life: Duration,
    /// At or below this score the peer is disconnected (and kept out for
    /// `rejection_cooldown`). Default -50.
    pub disconnect_below: f64,
    /// At or below this score the peer is banned for `ban_duration`. Default -100.
    pub ban_below: f64,
    /// How long a ban lasts. Default 1 h.
    pub ban_duration: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            penalties: [1.0, 10.0, 40.0],
            half_life: Duration::from_secs(600),
            disconnect_below: -50.0,
            ban_below: -100.0,
            ban_duration: Duration::from_secs(3600),
        }
    }
}

/// The longest ban (`Config::ban_duration`, and bans read from a book file): a year. Longer
/// is a blacklisting (`Node::blacklist_peer`).
pub const MAX_BAN: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a verdict leads to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Outcome {
    /// The score went down; nothing else.
    Lowered(f64),
    /// The score is at or below `disconnect_below`.
    Disconnect(f64),
    /// The score is at or below `ban_below`, or the verdict was fatal: ban until `until`. The
    /// score is reset to zero (the ban is the punishment).
    Ban { score: f64, until: Instant },
}

#[derive(Debug, Clone, Copy)]
struct Score {
    value: f64,
    at: Instant,
}

/// The scores of every peer that has one. An entry goes once its score has decayed to almost
/// zero, so memory follows the peers that misbehaved lately.
#[derive(Debug)]
pub(crate) struct Scores {
    config: Config,
    scores: HashMap<PeerId, Score>,
}

/// Scores closer to zero than this are forgotten.
const FORGET: f64 = 0.01;

impl Scores {
    pub(crate) fn new(config: Config) -> Self {
        Self {
            config,
            scores: HashMap::new(),
        }
    }

    fn decayed(&self, s: Score, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(s.at).as_secs_f64();
        let half = self.config.half_life.as_secs_f64().max(f64::MIN_POSITIVE);
        s.value * 0.5f64.powf(dt / half)
    }

    /// `peer`'s score at `now` (zero for a peer with none).
    pub(crate) fn score(&self, peer: &PeerId, now: Instant) -> f64 {
        self.scores.get(peer).map_or(0.0, |s| self.decayed(*s, now))
    }

    /// Lowers `peer`'s score for a misbehaviour of `severity` at `now`.
    pub(crate) fn report(&mut self, peer: PeerId, severity: Severity, now: Instant) -> Outcome {
        let before = self.score(&peer, now);
        let penalty = match severity {
            Severity::Low => self.config.penalties[0],
            Severity::Medium => self.config.penalties[1],
            Severity::High => self.config.penalties[2],
            Severity::Fatal => f64::INFINITY,
        };
        let value = before - penalty.max(0.0);
        if value <= self.config.ban_below {
            self.scores.remove(&peer);
            let score = if value.is_finite() {
                value
            } else {
                self.config.ban_below
            };
            return Outcome::Ban {
                score,
                until: now + self.config.ban_duration,
            };
        }
        self.scores.insert(peer, Score { value, at: now });
        if value <= self.config.disconnect_below {
            Outcome::Disconnect(value)
        } else {
            Outcome::Lowered(value)
        }
    }

    /// Forgets the scores that decayed to almost zero by `now`; returns how many remain.
    pub(crate) fn forget_old(&mut self, now: Instant) -> usize {
        let half = self.config.half_life.as_secs_f64().max(f64::MIN_POSITIVE);
        self.scores.retain(|_, s| {
            let dt = now.saturating_duration_since(s.at).as_secs_f64();
            (s.value * 0.5f64.powf(dt / half)).abs() >= FORGET
        });
        self.scores.len()
    }
}

#[cfg(test)]
mod tests;
