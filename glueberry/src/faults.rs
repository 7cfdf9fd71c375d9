//! Faults of one peer (bad frames, frames not finished in time, streams dropped inside a
//! frame): how many are reported, and when a peer has sent so many that it is disconnected and
//! kept out for a cooldown. Plain state fed with `Instant`s.
//!
//! - Reports: the first fault of a peer is logged and reported (`Event::StreamFault`) at once;
//!   later ones at most once per `report_every`, each report carrying how many faults it
//!   stands for (`StreamFault::faults`). Every fault is still counted in the stream's
//!   statistics and metrics.
//! - Punishment: `max` faults within one `window` (counted from the first fault of the window)
//!   disconnect the peer and keep it out for the cooldown (`Input::Faulted`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::throttle::Throttle;

/// Windows kept before finished ones are forgotten.
const MAX_PEERS: usize = 4096;

/// The limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) report_every: Duration,
    pub(crate) window: Duration,
    /// `None`: never punished.
    pub(crate) max: Option<u32>,
}

/// What to do about one fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Report it now, standing for this many faults (it and those held back).
    pub(crate) report: Option<u64>,
    /// The peer reached `max`: disconnect it and keep it out (once per window).
    pub(crate) punish: bool,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    punished: bool,
}

/// Every faulting peer's record.
#[derive(Debug)]
pub(crate) struct Faults {
    limits: Limits,
    reports: Throttle<PeerId>,
    windows: HashMap<PeerId, Window>,
}

impl Faults {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            reports: Throttle::new(limits.report_every),
            windows: HashMap::new(),
        }
    }

    /// One fault of `peer` at `now`.
    pub(crate) fn record(&mut self, peer: PeerId, now: Instant) -> Verdict {
        let report = if self.limits.report_every.is_zero() {
            Some(1)
        } else {
            self.reports.record(peer, now)
        };
        let Some(max) = self.limits.max else {
            return Verdict {
                report,
                punish: false,
            };
        };
        if self.windows.len() > MAX_PEERS {
            let window = self.limits.window;
            self.windows
                .retain(|_, w| now.saturating_duration_since(w.start) < window);
        }
        let w = self.windows.entry(peer).or_insert(Window {
            start: now,
            count: 0,
            punished: false,
        });
        if now.saturating_duration_since(w.start) >= self.limits.window {
            *w = Window {
                start: now,
                count: 0,
                punished: false,
            };
        }
        w.count += 1;
        let punish = w.count >= max && !w.punished;
        w.punished |= punish;
        Verdict { report, punish }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faults(max: Option<u32>) -> Faults {
        Faults::new(Limits {
            report_every: Duration::from_secs(1),
            window: Duration::from_secs(10),
            max,
        })
    }

    #[test]
    fn a_burst_is_reported_once_a_second_with_its_count() {
        let mut f = faults(None);
        let (p, t0) = (PeerId::random(), Instant::now());
        assert_eq!(f.record(p, t0).report, Some(1));
        for i in 1..1000 {
            let at = t0 + Duration::from_micros(i * 100);
            assert_eq!(f.record(p, at).report, None);
        }
        // The next one after a second stands for the 999 held back and itself.
        assert_eq!(f.record(p, t0 + Duration::from_secs(1)).report, Some(1000));
        // Another peer is reported on its own.
        assert_eq!(f.record(PeerId::random(), t0).report, Some(1));
    }

    #[test]
    fn max_faults_in_a_window_punish_once() {
        let mut f = faults(Some(5));
        let (p, t0) = (PeerId::random(), Instant::now());
        let punished: Vec<bool> = (0..10)
            .map(|i| f.record(p, t0 + Duration::from_millis(i)).punish)
            .collect();
        assert_eq!(punished.iter().filter(|&&x| x).count(), 1);
        assert!(punished[4]);
        // Four faults in each of two windows: never.
        let q = PeerId::random();
        for w in 0..2 {
            for i in 0..4 {
                let at = t0 + Duration::from_secs(10 * w) + Duration::from_millis(i);
                assert!(!f.record(q, at).punish);
            }
        }
        // A new window may punish again.
        let later = t0 + Duration::from_secs(10);
        assert!((0..5).any(|i| f.record(p, later + Duration::from_millis(i)).punish));
    }

    #[test]
    fn zero_report_interval_reports_every_fault() {
        let mut f = Faults::new(Limits {
            report_every: Duration::ZERO,
            window: Duration::from_secs(10),
            max: None,
        });
        let (p, t0) = (PeerId::random(), Instant::now());
        for _ in 0..10 {
            assert_eq!(f.record(p, t0).report, Some(1));
        }
    }
}
