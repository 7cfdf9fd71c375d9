//! The reconnection schedule: exponential backoff with jitter, the first delay chosen by why
//! the peer was lost. Pure arithmetic, so it is tested with plain numbers.

use std::time::Duration;

use super::DisconnectReason;

/// How reconnection attempts are spaced and bounded.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// Delay before the first attempt after a failed dial, and the base of the doubling.
    pub base: Duration,
    /// Longest delay (before jitter).
    pub max: Duration,
    /// Attempts before giving up; `None` is unlimited.
    pub max_attempts: Option<u32>,
    /// Relative jitter: each delay is scaled by a factor in `[1 - jitter, 1 + jitter)`.
    pub jitter: f64,
}

impl Default for Backoff {
    /// Go Glueberry's schedule: 1 s, ×2, at most 5 min, ±10 %, 10 attempts.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_attempts: Some(10),
            jitter: 0.1,
        }
    }
}

impl Backoff {
    /// Whether attempt number `attempt` (0-based) may be made.
    pub fn allows(&self, attempt: u32) -> bool {
        self.max_attempts.is_none_or(|max| attempt < max)
    }

    /// The nominal delay before attempt `attempt` (0-based): `min(base · 2^attempt, max)`.
    pub fn nominal(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.min(31));
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The first delay after losing an established connection for `reason`: short after an
    /// idle timeout (the link is probably fine), longer after a reset (the peer may be
    /// restarting), in between after a clean close; never below `base`.
    pub fn first_delay(&self, reason: &DisconnectReason) -> Duration {
        let by_reason = match reason {
            DisconnectReason::IdleTimeout | DisconnectReason::Unresponsive => {
                Duration::from_secs(1)
            }
            DisconnectReason::Error(_) => Duration::from_secs(5),
            _ => Duration::from_secs(3),
        };
        by_reason.max(self.base).min(self.max)
    }

    /// `delay` with jitter applied; `unit` is a random number in `[-1, 1)`.
    pub fn jittered(&self, delay: Duration, unit: f64) -> Duration {
        let scale = 1.0 + self.jitter * unit.clamp(-1.0, 1.0);
        delay.mul_f64(scale.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_default_schedule() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..10).map(|n| b.nominal(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300]);
        assert!(b.allows(9));
        assert!(!b.allows(10));
        assert_eq!(b.nominal(1000), Duration::from_secs(300));
        let unlimited = Backoff {
            max_attempts: None,
            ..b.clone()
        };
        assert!(unlimited.allows(u32::MAX));
    }

    #[test]
    fn jitter_bounds() {
        let b = Backoff::default();
        let d = Duration::from_secs(10);
        assert_eq!(b.jittered(d, -1.0), Duration::from_secs(9));
        assert_eq!(b.jittered(d, 0.0), d);
        assert!(b.jittered(d, 0.999) < Duration::from_secs(11));
    }

    #[test]
    fn first_delay_by_reason() {
        let b = Backoff::default();
        assert_eq!(
            b.first_delay(&DisconnectReason::IdleTimeout),
            Duration::from_secs(1)
        );
        assert_eq!(
            b.first_delay(&DisconnectReason::Error("reset".into())),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.first_delay(&DisconnectReason::RemoteClosed),
            Duration::from_secs(3)
        );
        let slow = Backoff {
            base: Duration::from_secs(4),
            ..b
        };
        assert_eq!(
            slow.first_delay(&DisconnectReason::IdleTimeout),
            Duration::from_secs(4)
        );
    }
}
