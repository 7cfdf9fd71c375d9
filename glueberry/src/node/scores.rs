//! Peer scores: the application's verdicts, and reading a score (docs/scoring.md).

use super::*;
use crate::scoring::Severity;

impl Node {
    /// Reports a misbehaviour of `peer` of the given severity: its score goes down by the
    /// severity's penalty (`scoring::Config::penalties`; [`Severity::Fatal`] bans at once).
    /// At `disconnect_below` the peer is disconnected and kept out for `rejection_cooldown`; at
    /// `ban_below` it is banned for `ban_duration`, in both directions and across restarts.
    /// The library reports its own verdicts the same way: a peer put in cooldown for its
    /// faults (`High`), a rejection (`Medium`), a failed handshake (`Low`), 10 s over a stream's
    /// rate quota (`Low`) or over `max_new_streams` / `max_handshake_streams` (`Medium`).
    ///
    /// Returns the peer's score after the report (negative; zero once banned, the ban being
    /// the penalty). Scores decay towards zero with `half_life`.
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] only.
    pub async fn report(&self, peer: PeerId, severity: Severity) -> Result<f64> {
        self.request(|reply| Command::Report {
            peer,
            severity,
            reply,
        })
        .await
    }

    /// `peer`'s score now: zero for a peer with no verdict against it (or whose verdicts have
    /// decayed), negative otherwise (docs/scoring.md).
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] only.
    pub async fn peer_score(&self, peer: PeerId) -> Result<f64> {
        self.request(|reply| Command::Score { peer, reply }).await
    }
}
