//! Which connections have gone silent: a sans-IO table fed with connection and ping events
//! and `Instant`s (no clock, no I/O), which says when to look again and which connections are
//! dead then.
//!
//! The rule (docs/lifecycle.md, "Liveness"):
//! - **TCP** (yamux): a connection is dead when no ping has been answered for
//!   `ping_interval + ping_timeout`. libp2p-ping sends a ping `ping_interval` after the last
//!   answer and gives it `ping_timeout`, so a live peer answers within that time; the ping runs
//!   on a yamux stream of its own, with its own window, so stalled data streams (a consumer
//!   that stopped reading) cannot hold it back. The bound does not depend on how libp2p-ping
//!   reports failures (it keeps the first one to itself).
//! - **QUIC**: QUIC's own idle timeout (set to `ping_timeout`, with keep-alives every quarter
//!   of it) decides; its keep-alive frames are not subject to flow control, whereas a ping
//!   stream is: when a consumer stops reading, stalled streams can use up the connection's
//!   receive window and starve pings of a live connection. So pings over QUIC only measure
//!   round trips.
//! - A peer that does not speak ping over TCP is not watched (TCP and the peer decide).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;

/// The liveness table.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// How long a watched connection may go without a pong.
    dead_after: Duration,
    /// Watched connections and their deadline.
    deadline: HashMap<ConnectionId, Instant>,
    /// The same deadlines, in order.
    queue: BTreeSet<(Instant, ConnectionId)>,
}

impl Liveness {
    pub(crate) fn new(ping_interval: Duration, ping_timeout: Duration) -> Self {
        Self {
            dead_after: ping_interval.saturating_add(ping_timeout),
            deadline: HashMap::new(),
            queue: BTreeSet::new(),
        }
    }

    /// The longest a silent watched connection goes unnoticed.
    #[cfg(test)]
    pub(crate) fn dead_after(&self) -> Duration {
        self.dead_after
    }

    fn set(&mut self, id: ConnectionId, at: Instant) {
        if let Some(old) = self.deadline.insert(id, at) {
            self.queue.remove(&(old, id));
        }
        self.queue.insert((at, id));
    }

    /// A connection came up; `watched` is false where the transport keeps its own liveness
    /// (QUIC). A bound too far to represent (a configured `Duration::MAX`) watches nothing.
    pub(crate) fn on_established(&mut self, id: ConnectionId, watched: bool, now: Instant) {
        if watched && let Some(at) = now.checked_add(self.dead_after) {
            self.set(id, at);
        }
    }

    /// The peer answered a ping on `id`.
    pub(crate) fn on_pong(&mut self, id: ConnectionId, now: Instant) {
        if self.deadline.contains_key(&id) {
            match now.checked_add(self.dead_after) {
                Some(at) => self.set(id, at),
                None => self.on_closed(id),
            }
        }
    }

    /// The peer does not speak ping on `id`: stop watching it.
    pub(crate) fn on_unsupported(&mut self, id: ConnectionId) {
        self.on_closed(id);
    }

    /// Watches `id` again with the deadline `at`: a connection found dead whose close has not
    /// been confirmed yet.
    pub(crate) fn recheck(&mut self, id: ConnectionId, at: Instant) {
        self.set(id, at);
    }

    /// `id` closed.
    pub(crate) fn on_closed(&mut self, id: ConnectionId) {
        if let Some(at) = self.deadline.remove(&id) {
            self.queue.remove(&(at, id));
        }
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// The watched connections silent past their deadline at `now`; they are no longer
    /// watched.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<ConnectionId> {
        let mut dead = Vec::new();
        while let Some(&(at, id)) = self.queue.first()
            && at <= now
        {
            self.queue.pop_first();
            self.deadline.remove(&id);
            dead.push(id);
        }
        dead
    }

    /// Watched connections.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.deadline.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const I: Duration = Duration::from_secs(15);
    const T: Duration = Duration::from_secs(20);

    fn id(n: usize) -> ConnectionId {
        ConnectionId::new_unchecked(n)
    }

    #[test]
    fn a_connection_silent_for_interval_plus_timeout_is_dead_and_not_before() {
        let t0 = Instant::now();
        let mut l = Liveness::new(I, T);
        l.on_established(id(1), true, t0);
        assert_eq!(l.poll_timeout(), Some(t0 + I + T));
        assert!(
            l.handle_timeout(t0 + I + T - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(l.handle_timeout(t0 + I + T), vec![id(1)]);
        assert_eq!(l.poll_timeout(), None);
        // Reported once.
        assert!(l.handle_timeout(t0 + 10 * (I + T)).is_empty());
    }

    #[test]
    fn each_pong_pushes_the_deadline_back() {
        let t0 = Instant::now();
        let mut l = Liveness::new(I, T);
        l.on_established(id(1), true, t0);
        // Pongs every interval plus a slow round trip, for ten minutes.
        let mut now = t0;
        for _ in 0..20 {
            now += I + T - Duration::from_millis(1);
            assert!(l.handle_timeout(now).is_empty());
            l.on_pong(id(1), now);
        }
        assert_eq!(l.handle_timeout(now + I + T), vec![id(1)]);
    }

    #[test]
    fn quic_unsupported_and_closed_connections_are_not_watched() {
        let t0 = Instant::now();
        let mut l = Liveness::new(I, T);
        l.on_established(id(1), false, t0); // QUIC
        l.on_established(id(2), true, t0);
        l.on_established(id(3), true, t0);
        l.on_unsupported(id(2));
        l.on_closed(id(3));
        // A pong on an unwatched connection does not start watching it.
        l.on_pong(id(1), t0);
        assert_eq!(l.len(), 0);
        assert!(l.handle_timeout(t0 + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn a_bound_too_far_to_represent_watches_nothing_and_never_panics() {
        let t0 = Instant::now();
        let mut l = Liveness::new(Duration::MAX, Duration::MAX);
        l.on_established(id(1), true, t0);
        l.on_pong(id(1), t0);
        assert_eq!(l.poll_timeout(), None);
        assert!(l.handle_timeout(t0).is_empty());
    }

    proptest! {
        /// Against a model: a connection is reported dead exactly when it is watched and its
        /// last sign of life is `dead_after` old, and never twice.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..5, 0usize..4, 0u64..40_000), 1..200)) {
            let t0 = Instant::now();
            let mut l = Liveness::new(I, T);
            let mut model: HashMap<ConnectionId, Instant> = HashMap::new();
            let mut now = t0;
            for (op, c, dt) in ops {
                now += Duration::from_millis(dt);
                let c = id(c);
                match op {
                    0 => { l.on_established(c, true, now); model.insert(c, now + l.dead_after()); }
                    1 => { l.on_pong(c, now); if let Some(d) = model.get_mut(&c) { *d = now + l.dead_after(); } }
                    2 => { l.on_closed(c); model.remove(&c); }
                    3 => { l.on_unsupported(c); model.remove(&c); }
                    _ => {}
                }
                let mut dead = l.handle_timeout(now);
                dead.sort();
                let mut expected: Vec<_> = model.iter().filter(|(_, d)| **d <= now).map(|(c, _)| *c).collect();
                expected.sort();
                model.retain(|_, d| *d > now);
                prop_assert_eq!(dead, expected);
                prop_assert_eq!(l.poll_timeout(), model.values().min().copied());
            }
        }
    }
}
