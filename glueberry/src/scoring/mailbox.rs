//! What the tasks outside the driver find against a peer (stream readers, each connection's
//! stream meter and ping service), on its way to the driver, which alone keeps scores.
//!
//! Posts are added up per peer, so none is lost however many come (a bounded channel would
//! drop them when full, an unbounded one would grow with them): memory is one small entry per
//! peer reported since the driver last looked, and the driver is woken once for many.

use std::collections::HashMap;
use std::sync::Mutex;

use libp2p::PeerId;
use tokio::sync::Notify;

use super::Severity;

/// What was found against one peer since the driver last took the mail.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tally {
    /// It reached `max_faults`: the driver disconnects it for `fault_cooldown` (and gives a
    /// `High` verdict).
    pub(crate) faulted: bool,
    /// `Low` verdicts (a rate quota or `max_pings` exceeded for 10 s).
    pub(crate) low: u32,
    /// `Medium` verdicts (`max_new_streams` exceeded for 10 s).
    pub(crate) medium: u32,
    /// Inbound streams refused before their negotiation (`max_new_streams`).
    pub(crate) refused_streams: u64,
}

/// The mailbox: posted to by any task, taken by the driver.
#[derive(Debug, Default)]
pub(crate) struct Mailbox {
    pending: Mutex<HashMap<PeerId, Tally>>,
    posted: Notify,
}

impl Mailbox {
    /// Adds to `peer`'s tally and wakes the driver. Never waits (a short lock).
    pub(crate) fn post(&self, peer: PeerId, add: impl FnOnce(&mut Tally)) {
        add(crate::shared::lock(&self.pending).entry(peer).or_default());
        self.posted.notify_one();
    }

    /// A `Low` or `Medium` verdict on `peer` (the others are not posted: faults go through
    /// [`Tally::faulted`]).
    pub(crate) fn verdict(&self, peer: PeerId, severity: Severity) {
        self.post(peer, |t| match severity {
            Severity::Low => t.low = t.low.saturating_add(1),
            _ => t.medium = t.medium.saturating_add(1),
        });
    }

    /// Resolves once something was posted since the last [`take`](Self::take) (at once if
    /// it was posted before this was called: a post is never missed).
    pub(crate) async fn posted(&self) {
        self.posted.notified().await;
    }

    /// Everything posted so far, emptying the mailbox.
    pub(crate) fn take(&self) -> HashMap<PeerId, Tally> {
        std::mem::take(&mut *crate::shared::lock(&self.pending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn posts_add_up_per_peer_and_a_post_before_the_wait_is_not_missed() {
        let mail = Mailbox::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        for _ in 0..1000 {
            mail.verdict(a, Severity::Low);
        }
        mail.verdict(a, Severity::Medium);
        mail.post(b, |t| t.refused_streams += 3);
        mail.post(b, |t| t.faulted = true);
        // Posted before anyone waited: resolves at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), mail.posted())
            .await
            .unwrap();
        let got = mail.take();
        assert_eq!(got.len(), 2);
        assert_eq!((got[&a].low, got[&a].medium), (1000, 1));
        assert_eq!(
            got[&b],
            Tally {
                faulted: true,
                refused_streams: 3,
                ..Tally::default()
            }
        );
        assert!(mail.take().is_empty());
    }
}
