//! At most one report per key per period: a flood of refusals (admission, by cause) or of bad
//! frames (by peer) becomes one log line and one event a second, each carrying how many it
//! stands for. Plain state fed with `Instant`s; keys idle for a period are forgotten once
//! there are many.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Keys kept before idle ones are forgotten.
const MAX_KEYS: usize = 4096;

/// Periods after which a key's held-back count is forgotten too.
const FORGET_AFTER: u32 = 60;

/// The throttle, keyed by cause (or peer).
#[derive(Debug)]
pub(crate) struct Throttle<K> {
    period: Duration,
    /// When each cause was last let through.
    last: HashMap<K, Instant>,
    /// Occurrences held back since then.
    held: HashMap<K, u64>,
}

impl<K: Copy + Eq + Hash> Throttle<K> {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            last: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// One occurrence of `key`: `Some(n)` when it is to be reported now, standing for `n`
    /// occurrences (this one and those held back); `None` when it is held back.
    pub(crate) fn record(&mut self, key: K, now: Instant) -> Option<u64> {
        if self.last.len() > MAX_KEYS {
            self.forget_idle(now);
        }
        *self.held.entry(key).or_default() += 1;
        let due = self
            .last
            .get(&key)
            .is_none_or(|t| now.saturating_duration_since(*t) >= self.period);
        if !due {
            return None;
        }
        self.last.insert(key, now);
        self.held.remove(&key)
    }

    /// Forgets keys reported more than a period ago with nothing held back, and keys not
    /// reported for `FORGET_AFTER` periods with what they held (counted elsewhere: a key that
    /// went quiet must not stay for ever).
    fn forget_idle(&mut self, now: Instant) {
        let (period, held) = (self.period, &mut self.held);
        let stale = period.saturating_mul(FORGET_AFTER);
        self.last.retain(|k, t| {
            let idle = now.saturating_duration_since(*t);
            if idle >= stale {
                held.remove(k);
                return false;
            }
            held.contains_key(k) || idle < period
        });
    }

    /// Occurrences held back whose period has passed, to report now.
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<(K, u64)> {
        let due: Vec<K> = self
            .held
            .keys()
            .filter(|k| {
                self.last
                    .get(k)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= self.period)
            })
            .copied()
            .collect();
        due.into_iter()
            .filter_map(|k| {
                self.last.insert(k, now);
                self.held.remove(&k).map(|n| (k, n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_report_per_period_carrying_every_occurrence() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut t = Throttle::new(s);
        assert_eq!(t.record('a', t0), Some(1));
        let mut held = 0;
        for i in 1..1000u32 {
            if t.record('a', t0 + s * i / 2000).is_none() {
                held += 1;
            }
        }
        assert_eq!(held, 999);
        // Another cause is not held back by the first.
        assert_eq!(t.record('b', t0), Some(1));
        assert!(t.flush(t0 + s / 2).is_empty());
        assert_eq!(t.flush(t0 + s), vec![('a', 999)]);
        assert!(t.flush(t0 + 3 * s).is_empty());
        // The next one after a flush waits for its period again.
        assert_eq!(t.record('a', t0 + s + s / 2), None);
        assert_eq!(t.record('a', t0 + 2 * s), Some(2));
    }
}
