//! Rate quotas, sans-IO: a token bucket per (peer, stream name) for messages and bytes
//! (docs/scoring.md, "Quotas"). A reader takes what it delivered; while the bucket is in debt
//! it stops reading until the debt is repaid, so a peer over its quota is slowed to it through
//! the muxer's flow control, and nothing is dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;

/// A rate limit on what one peer may send on one stream name. Either limit may be left out.
/// A peer may send one second's worth at once (the burst), then at the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// Messages per second; `None` is unlimited.
    pub messages_per_sec: Option<u32>,
    /// Plaintext bytes per second; `None` is unlimited.
    pub bytes_per_sec: Option<u64>,
}

impl Quota {
    /// At most `n` messages per second.
    pub fn messages(n: u32) -> Self {
        Self {
            messages_per_sec: Some(n),
            ..Self::default()
        }
    }

    /// At most `n` plaintext bytes per second.
    pub fn bytes(n: u64) -> Self {
        Self {
            bytes_per_sec: Some(n),
            ..Self::default()
        }
    }

    /// This quota, and at most `n` messages per second.
    #[must_use]
    pub fn and_messages(mut self, n: u32) -> Self {
        self.messages_per_sec = Some(n);
        self
    }

    /// This quota, and at most `n` bytes per second.
    #[must_use]
    pub fn and_bytes(mut self, n: u64) -> Self {
        self.bytes_per_sec = Some(n);
        self
    }
}

/// How long a peer may stay over its quota, continuously, before it loses score for it
/// (a `Low` verdict, then one per such period while it keeps at it).
pub(crate) const PENALTY_AFTER: Duration = Duration::from_secs(10);

/// One token bucket per limit: levels in messages and bytes, full at one second's worth.
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Per second, and the most held (the burst), for messages and bytes; `None`: no limit.
    message_rate: Option<(f64, f64)>,
    byte_rate: Option<(f64, f64)>,
    messages: f64,
    bytes: f64,
    at: Instant,
    /// Since when the peer has been kept waiting without a break (each wait starting within
    /// [`GRACE`] of the end of the one before).
    over_since: Option<Instant>,
    /// When the last wait ends.
    over_until: Option<Instant>,
}

/// A peer that comes back over its quota within this of its last wait's end has not taken a
/// break: it is still "over" for [`PENALTY_AFTER`].
const GRACE: Duration = Duration::from_secs(1);

impl Bucket {
    pub(crate) fn new(quota: Quota, now: Instant) -> Self {
        let per_sec = |n: f64| (n, n);
        Self {
            message_rate: quota.messages_per_sec.map(|n| per_sec(f64::from(n))),
            byte_rate: quota.bytes_per_sec.map(|n| per_sec(n as f64)),
            messages: quota.messages_per_sec.map_or(0.0, f64::from),
            bytes: quota.bytes_per_sec.map_or(0.0, |b| b as f64),
            at: now,
            over_since: None,
            over_until: None,
        }
    }

    /// At most `n` (messages, streams, ...) per `period`, all `n` at once.
    pub(crate) fn per(n: u32, period: Duration, now: Instant) -> Self {
        let n = f64::from(n);
        Self {
            message_rate: Some((n / period.as_secs_f64().max(f64::MIN_POSITIVE), n)),
            byte_rate: None,
            messages: n,
            bytes: 0.0,
            at: now,
            over_since: None,
            over_until: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        if let Some((rate, burst)) = self.message_rate {
            self.messages = (self.messages + rate * dt).min(burst);
        }
        if let Some((rate, burst)) = self.byte_rate {
            self.bytes = (self.bytes + rate * dt).min(burst);
        }
    }

    /// `messages` messages of `bytes` bytes in all were read at `now`. The levels may go
    /// below zero: the reader then waits ([`ready_at`](Self::ready_at)).
    pub(crate) fn take(&mut self, messages: u32, bytes: u64, now: Instant) {
        self.refill(now);
        if self.message_rate.is_some() {
            self.messages -= f64::from(messages);
        }
        if self.byte_rate.is_some() {
            self.bytes -= bytes as f64;
        }
    }

    /// When the reader may read again: `None` now, or the time the debt is repaid.
    pub(crate) fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        let wait = |level: f64, rate: Option<(f64, f64)>| match rate {
            Some((rate, _)) if level < 0.0 => Duration::from_secs_f64(-level / rate),
            _ => Duration::ZERO,
        };
        let longest = wait(self.messages, self.message_rate).max(wait(self.bytes, self.byte_rate));
        if longest.is_zero() {
            return None;
        }
        let at = now + longest;
        self.over(now, at);
        Some(at)
    }

    /// Takes one (a stream) if a whole one is there; if not, the peer is over its quota (for
    /// [`penalty_due`](Self::penalty_due)) until one is. For limits on counts, never in debt.
    pub(crate) fn try_take_one(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.message_rate.is_none() {
            return true;
        }
        if self.messages >= 1.0 {
            self.messages -= 1.0;
            return true;
        }
        let at = self.ready_at_one(now);
        self.over(now, at);
        false
    }

    /// Whether the bucket is full again and its peer not over: nothing to remember.
    pub(crate) fn is_idle(&mut self, now: Instant) -> bool {
        self.refill(now);
        let full =
            |level: f64, rate: Option<(f64, f64)>| rate.is_none_or(|(_, burst)| level >= burst);
        let resting = self.over_until.is_none_or(|until| now > until + GRACE);
        full(self.messages, self.message_rate) && full(self.bytes, self.byte_rate) && resting
    }

    /// When a whole one will be there again (now if it is).
    pub(crate) fn ready_at_one(&mut self, now: Instant) -> Instant {
        self.refill(now);
        match self.message_rate {
            Some((rate, _)) if self.messages < 1.0 => {
                now + Duration::from_secs_f64((1.0 - self.messages) / rate)
            }
            _ => now,
        }
    }

    /// The peer is over its quota at `now` until `at`: a new streak unless it comes within
    /// [`GRACE`] of the last one's end.
    fn over(&mut self, now: Instant, at: Instant) {
        if self.over_until.is_none_or(|until| now > until + GRACE) {
            self.over_since = Some(now);
        }
        self.over_until = Some(at);
    }

    /// Whether the peer has been over its quota for [`PENALTY_AFTER`] without a break; if so,
    /// the period starts again (one penalty per period).
    pub(crate) fn penalty_due(&mut self, now: Instant) -> bool {
        let on_time = self.over_until.is_some_and(|until| now <= until + GRACE);
        match self.over_since {
            Some(since) if on_time && now.saturating_duration_since(since) >= PENALTY_AFTER => {
                self.over_since = Some(now);
                true
            }
            _ => false,
        }
    }
}

/// A limit on counts ("at most `n` streams or pings per period") with one bucket per peer,
/// shared by all the peer's connections, and forgotten only once idle
/// ([`forget_idle`](Self::forget_idle)): a peer gets no fresh allowance by opening another
/// connection or by reconnecting while it is over.
#[derive(Debug)]
pub(crate) struct PerPeer {
    n: u32,
    period: Duration,
    buckets: Mutex<HashMap<PeerId, Bucket>>,
}

/// Why [`PerPeer::take_one`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Over {
    /// When one will be there again.
    pub(crate) ready_at: Instant,
    /// The peer has been over for [`PENALTY_AFTER`] without a break (one per period).
    pub(crate) penalty: bool,
}

impl PerPeer {
    /// At most `n` per `period` per peer, all `n` at once.
    pub(crate) fn new(n: u32, period: Duration) -> Self {
        Self {
            n,
            period,
            buckets: Mutex::default(),
        }
    }

    /// Takes one of `peer`'s allowance at `now`, or says when there will be one.
    pub(crate) fn take_one(&self, peer: PeerId, now: Instant) -> Result<(), Over> {
        let mut buckets = crate::shared::lock(&self.buckets);
        let bucket = buckets
            .entry(peer)
            .or_insert_with(|| Bucket::per(self.n, self.period, now));
        if bucket.try_take_one(now) {
            return Ok(());
        }
        Err(Over {
            ready_at: bucket.ready_at_one(now),
            penalty: bucket.penalty_due(now),
        })
    }

    /// Forgets the peers back within their allowance and not over.
    pub(crate) fn forget_idle(&self, now: Instant) {
        crate::shared::lock(&self.buckets).retain(|_, b| !b.is_idle(now));
    }

    /// How many peers have a bucket.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        crate::shared::lock(&self.buckets).len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Quota::messages(100), t0);
        b.take(100, 0, t0);
        assert_eq!(b.ready_at(t0), None, "the burst");
        b.take(50, 0, t0);
        assert_eq!(b.ready_at(t0), Some(t0 + Duration::from_millis(500)));
        assert_eq!(b.ready_at(t0 + Duration::from_millis(500)), None);
    }

    #[test]
    fn a_churner_refused_again_and_again_is_over_without_a_break() {
        // As `max_new_streams` uses it: one stream a tick, refused whenever the bucket is in
        // debt; the streams let through in between do not end the streak.
        let t0 = Instant::now();
        let mut b = Bucket::new(Quota::messages(32), t0);
        let mut penalties = 0;
        for ms in 0..30_000u64 {
            let now = t0 + Duration::from_millis(ms);
            if !b.try_take_one(now) {
                penalties += usize::from(b.penalty_due(now));
            }
        }
        assert_eq!(
            penalties, 2,
            "one per 10 s over, the first 10 s after the burst"
        );
    }

    #[test]
    fn a_quota_per_minute() {
        let t0 = Instant::now();
        let mut b = Bucket::per(30, Duration::from_secs(60), t0);
        for _ in 0..30 {
            assert!(b.try_take_one(t0));
        }
        assert!(!b.try_take_one(t0), "exactly 30");
        assert!(!b.try_take_one(t0 + Duration::from_millis(1900)));
        assert!(
            b.try_take_one(t0 + Duration::from_secs(2)),
            "one more every 2 s"
        );
    }

    #[test]
    fn bytes_and_messages_both_bind() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Quota::messages(1000).and_bytes(1000), t0);
        b.take(1, 3000, t0);
        assert_eq!(b.ready_at(t0), Some(t0 + Duration::from_secs(2)));
        let mut unlimited = Bucket::new(Quota::default(), t0);
        unlimited.take(1_000_000, u64::MAX / 2, t0);
        assert_eq!(unlimited.ready_at(t0), None);
    }

    #[test]
    fn staying_over_the_quota_costs_a_penalty_per_period() {
        let t0 = Instant::now();
        let mut b = Bucket::new(Quota::messages(10), t0);
        let mut now = t0;
        let mut penalties = 0;
        while now < t0 + Duration::from_secs(30) {
            b.take(20, 0, now);
            now = b.ready_at(now).unwrap_or(now);
            penalties += usize::from(b.penalty_due(now));
        }
        // ~30 s over the quota: about one penalty per 10 s.
        let over = now - t0;
        assert!((2..=3).contains(&penalties), "{penalties} in {over:?}");
        // Back under the quota: the period starts over.
        assert_eq!(b.ready_at(now + Duration::from_secs(5)), None);
        assert!(!b.penalty_due(now + Duration::from_secs(30)));
    }

    proptest! {
        /// A reader that always waits when told reads at most one second's worth plus the
        /// rate times the time elapsed (the quota holds, whatever the sizes and times).
        #[test]
        fn the_rate_holds(
            rate in 1u32..10_000,
            reads in proptest::collection::vec((1u32..500, 0u64..50), 1..200),
        ) {
            let t0 = Instant::now();
            let mut b = Bucket::new(Quota::messages(rate), t0);
            let mut now = t0;
            let mut total = 0u64;
            for (n, dt) in reads {
                now += Duration::from_millis(dt);
                if let Some(at) = b.ready_at(now) {
                    now = at;
                }
                // Read before this batch: within burst + rate·t.
                let allowed = f64::from(rate) * (1.0 + (now - t0).as_secs_f64());
                // (Within a message: the times are rounded to nanoseconds.)
                prop_assert!(total as f64 <= allowed + 1.0, "{} > {}", total, allowed);
                b.take(n, 0, now);
                total += u64::from(n);
            }
        }
    }
}
