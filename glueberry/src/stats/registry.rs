//! The counters behind [`PeerStats`](super::PeerStats): one entry per peer, one set of atomic
//! counters per (peer, stream name).
//!
//! Hot-path updates (a message sent or received) touch only atomics of a [`StreamCounters`]
//! that the sender's route and the stream tasks already hold, plus metric handles resolved
//! once per (peer, stream). Connection-level fields are written by the driver under a short
//! lock. Time comes in as arguments (`now`), so pruning is tested with virtual time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use tokio::time::Instant;

use super::{Dropped, PeerStats, StreamStats};
use crate::peer::State;
use crate::shared::lock;
use crate::telemetry as m;

/// Every peer's statistics. Bounded: past `max_peers` entries, the longest-disconnected peer's
/// entry is evicted (and counted) to make room.
#[derive(Debug)]
pub(crate) struct Registry {
    peers: Mutex<HashMap<PeerId, Arc<PeerEntry>>>,
    max_peers: usize,
}

impl Registry {
    pub(crate) fn new(max_peers: usize) -> Self {
        Self {
            peers: Mutex::default(),
            max_peers: max_peers.max(1),
        }
    }

    /// The entry of `peer`, created if absent.
    pub(crate) fn peer(&self, peer: PeerId, now: Instant) -> Arc<PeerEntry> {
        let mut peers = lock(&self.peers);
        if let Some(e) = peers.get(&peer) {
            return e.clone();
        }
        if peers.len() >= self.max_peers {
            let oldest = peers
                .iter()
                .filter_map(|(p, e)| e.gone_since().map(|t| (t, *p)))
                .min();
            if let Some((_, evicted)) = oldest {
                peers.remove(&evicted);
                metrics::counter!(m::STATS_EVICTED).increment(1);
            }
        }
        let e = Arc::new(PeerEntry::new(peer, now));
        peers.insert(peer, e.clone());
        e
    }

    /// The entry of `peer`, if it has one.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<Arc<PeerEntry>> {
        lock(&self.peers).get(peer).cloned()
    }

    /// A snapshot of `peer`'s statistics.
    pub(crate) fn snapshot(&self, peer: &PeerId, now: Instant) -> Option<PeerStats> {
        self.get(peer).map(|e| e.snapshot(now))
    }

    /// Snapshots of every peer's statistics, ordered by `PeerId`.
    pub(crate) fn snapshot_all(&self, now: Instant) -> Vec<PeerStats> {
        let entries: Vec<Arc<PeerEntry>> = lock(&self.peers).values().cloned().collect();
        let mut all: Vec<PeerStats> = entries.iter().map(|e| e.snapshot(now)).collect();
        all.sort_by_key(|s| s.peer);
        all
    }

    /// Removes the entries of peers Disconnected for at least `max_age`; returns how many.
    pub(crate) fn prune(&self, now: Instant, max_age: Duration) -> usize {
        let mut peers = lock(&self.peers);
        let before = peers.len();
        peers.retain(|_, e| {
            e.gone_since()
                .is_none_or(|t| now.saturating_duration_since(t) < max_age)
        });
        before - peers.len()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.peers).len()
    }
}

/// What the driver records about a peer's connections.
#[derive(Debug)]
struct Link {
    state: State,
    outbound: Option<bool>,
    /// Since when the current connection is up (wall clock, and monotonic for durations).
    connected: Option<(SystemTime, Instant)>,
    /// Connected time of the connections that ended.
    past_connected: Duration,
    connection_count: u64,
    failed_attempts: u64,
    last_rtt: Option<Duration>,
    /// When the peer last went (or was first seen) Disconnected.
    idle_since: Instant,
    /// When the current handshake began (the peer went Connected).
    handshake_from: Option<Instant>,
}

/// How a handshake ended, as the driver sees state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handshake {
    /// Connected → Established, after this long.
    Succeeded(Duration),
    /// Connected → Cooldown: the handshake timed out.
    TimedOut,
    /// Connected → anything else: the connection was lost or closed first.
    Failed,
}

impl Handshake {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Handshake::Succeeded(_) => "success",
            Handshake::TimedOut => "timeout",
            Handshake::Failed => "failure",
        }
    }
}

/// One peer's statistics.
#[derive(Debug)]
pub(crate) struct PeerEntry {
    peer: PeerId,
    link: Mutex<Link>,
    streams: Mutex<BTreeMap<Arc<str>, Arc<StreamCounters>>>,
    refused_streams: AtomicU64,
}

impl PeerEntry {
    fn new(peer: PeerId, now: Instant) -> Self {
        Self {
            peer,
            link: Mutex::new(Link {
                state: State::Disconnected,
                outbound: None,
                connected: None,
                past_connected: Duration::ZERO,
                connection_count: 0,
                failed_attempts: 0,
                last_rtt: None,
                idle_since: now,
                handshake_from: None,
            }),
            streams: Mutex::default(),
            refused_streams: AtomicU64::new(0),
        }
    }

    /// Since when the peer is Disconnected with no connection, if it is.
    fn gone_since(&self) -> Option<Instant> {
        let l = lock(&self.link);
        (l.connected.is_none() && l.state == State::Disconnected).then_some(l.idle_since)
    }

    /// The counters of stream `name`, created if absent.
    pub(crate) fn stream(&self, name: &Arc<str>) -> Arc<StreamCounters> {
        lock(&self.streams)
            .entry(name.clone())
            .or_insert_with(|| Arc::new(StreamCounters::new(name.clone())))
            .clone()
    }

    /// The first connection to the peer came up.
    pub(crate) fn connection_up(&self, outbound: bool, now: Instant) {
        let mut l = lock(&self.link);
        if l.connected.is_none() {
            l.connected = Some((SystemTime::now(), now));
            l.connection_count += 1;
        }
        l.outbound.get_or_insert(outbound);
    }

    /// The last connection to the peer closed.
    pub(crate) fn connection_down(&self, now: Instant) {
        let mut l = lock(&self.link);
        if let Some((_, since)) = l.connected.take() {
            l.past_connected += now.saturating_duration_since(since);
        }
        l.outbound = None;
        l.idle_since = now;
    }

    /// A dial to the peer failed.
    pub(crate) fn dial_failed(&self) {
        lock(&self.link).failed_attempts += 1;
    }

    /// A ping measured `rtt`.
    /// The last ping round trip, if any.
    pub(crate) fn last_rtt(&self) -> Option<Duration> {
        lock(&self.link).last_rtt
    }

    pub(crate) fn rtt(&self, rtt: Duration) {
        lock(&self.link).last_rtt = Some(rtt);
    }

    /// `n` inbound streams were refused.
    pub(crate) fn streams_refused(&self, n: u64) {
        self.refused_streams.fetch_add(n, Relaxed);
    }

    /// The peer's state changed; returns the state it left, and how a handshake ended if
    /// this ended one.
    pub(crate) fn state_changed(
        &self,
        state: State,
        outbound: Option<bool>,
        handshake_timed_out: bool,
        now: Instant,
    ) -> (State, Option<Handshake>) {
        let mut l = lock(&self.link);
        let previous = std::mem::replace(&mut l.state, state);
        if outbound.is_some() {
            l.outbound = outbound;
        }
        if state == State::Disconnected {
            l.idle_since = now;
        }
        let handshake = match state {
            State::Connected => {
                l.handshake_from = Some(now);
                None
            }
            State::Established => l
                .handshake_from
                .take()
                .map(|from| Handshake::Succeeded(now.saturating_duration_since(from))),
            _ => l.handshake_from.take().map(|_| {
                if handshake_timed_out {
                    Handshake::TimedOut
                } else {
                    Handshake::Failed
                }
            }),
        };
        (previous, handshake)
    }

    fn snapshot(&self, now: Instant) -> PeerStats {
        let (state, outbound, connected_at, total_connected, connection_count, failed, rtt) = {
            let l = lock(&self.link);
            let current = l.connected.map_or(Duration::ZERO, |(_, since)| {
                now.saturating_duration_since(since)
            });
            (
                l.state,
                l.outbound.filter(|_| l.connected.is_some()),
                l.connected.map(|(at, _)| at),
                l.past_connected + current,
                l.connection_count,
                l.failed_attempts,
                l.last_rtt,
            )
        };
        let counters: Vec<Arc<StreamCounters>> = lock(&self.streams).values().cloned().collect();
        let mut stats = PeerStats {
            peer: self.peer,
            state,
            outbound,
            connected_at,
            total_connected,
            connection_count,
            failed_attempts: failed,
            last_rtt: rtt,
            messages_sent: 0,
            messages_written: 0,
            messages_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            last_message_at: None,
            dropped: Dropped::default(),
            refused_streams: self.refused_streams.load(Relaxed),
            streams: BTreeMap::new(),
        };
        for c in counters {
            let s = c.snapshot();
            stats.messages_sent += s.messages_sent;
            stats.messages_written += s.messages_written;
            stats.messages_received += s.messages_received;
            stats.bytes_sent += s.bytes_sent;
            stats.bytes_received += s.bytes_received;
            stats.dropped.add(&s.dropped);
            stats.last_message_at = stats
                .last_message_at
                .max(s.last_sent_at)
                .max(s.last_received_at);
            stats.streams.insert(s.name.clone(), s);
        }
        stats
    }
}

/// Metric handles of one (peer, stream), resolved once (the label is the stream name only).
#[derive(Debug)]
struct StreamMetrics {
    quota_waits: metrics::Counter,
    sent: metrics::Counter,
    written: metrics::Counter,
    bytes_sent: metrics::Counter,
    received: metrics::Counter,
    bytes_received: metrics::Counter,
    opened: metrics::Counter,
    closed: metrics::Counter,
    engaged: metrics::Counter,
    wait: metrics::Histogram,
    pending: metrics::Gauge,
}

impl StreamMetrics {
    fn new(name: &str) -> Self {
        let label = || [("stream", name.to_owned())];
        Self {
            quota_waits: metrics::counter!(m::QUOTA_WAITS, &label()),
            sent: metrics::counter!(m::MESSAGES_SENT, &label()),
            written: metrics::counter!(m::MESSAGES_WRITTEN, &label()),
            bytes_sent: metrics::counter!(m::BYTES_SENT, &label()),
            received: metrics::counter!(m::MESSAGES_RECEIVED, &label()),
            bytes_received: metrics::counter!(m::BYTES_RECEIVED, &label()),
            opened: metrics::counter!(m::STREAMS_OPENED, &label()),
            closed: metrics::counter!(m::STREAMS_CLOSED, &label()),
            engaged: metrics::counter!(m::BACKPRESSURE_ENGAGED, &label()),
            wait: metrics::histogram!(m::BACKPRESSURE_WAIT, &label()),
            pending: metrics::gauge!(m::PENDING_MESSAGES, &label()),
        }
    }
}

/// The counters of one (peer, stream name).
#[derive(Debug)]
pub(crate) struct StreamCounters {
    name: Arc<str>,
    sent: AtomicU64,
    bytes_sent: AtomicU64,
    received: AtomicU64,
    bytes_received: AtomicU64,
    /// Nanoseconds since the Unix epoch; 0 is never.
    last_sent: AtomicU64,
    last_received: AtomicU64,
    backpressure_waits: AtomicU64,
    quota_waits: AtomicU64,
    written: AtomicU64,
    stream_closed: AtomicU64,
    reset_after_write: AtomicU64,
    decryption_failed: AtomicU64,
    oversized: AtomicU64,
    malformed: AtomicU64,
    undelivered: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    metrics: StreamMetrics,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(1, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    })
}

fn time(nanos: u64) -> Option<SystemTime> {
    (nanos != 0).then(|| UNIX_EPOCH + Duration::from_nanos(nanos))
}

impl StreamCounters {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            metrics: StreamMetrics::new(&name),
            name,
            sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            last_sent: AtomicU64::new(0),
            last_received: AtomicU64::new(0),
            backpressure_waits: AtomicU64::new(0),
            quota_waits: AtomicU64::new(0),
            written: AtomicU64::new(0),
            stream_closed: AtomicU64::new(0),
            reset_after_write: AtomicU64::new(0),
            decryption_failed: AtomicU64::new(0),
            oversized: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    /// A message of `len` bytes was queued.
    pub(crate) fn sent(&self, len: usize) {
        self.sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(len as u64, Relaxed);
        self.last_sent.store(nanos(SystemTime::now()), Relaxed);
        self.metrics.sent.increment(1);
        self.metrics.bytes_sent.increment(len as u64);
    }

    /// A message of `len` bytes, received at `at`, was delivered to the queue.
    pub(crate) fn received(&self, len: usize, at: SystemTime) {
        self.received.fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(len as u64, Relaxed);
        self.last_received.store(nanos(at), Relaxed);
        self.metrics.received.increment(1);
        self.metrics.bytes_received.increment(len as u64);
    }

    /// A send waited `waited` at the flow-control gate.
    pub(crate) fn backpressure_wait(&self, waited: Duration) {
        self.backpressure_waits.fetch_add(1, Relaxed);
        self.metrics.wait.record(waited.as_secs_f64());
        metrics::counter!(m::BACKPRESSURE_WAITS).increment(1);
    }

    /// A message took a place in the send queue; `engaged` if it filled the queue to its high
    /// watermark (the gate closed behind it).
    pub(crate) fn placed(&self, engaged: bool) {
        if engaged {
            self.metrics.engaged.increment(1);
        }
        self.pending(1);
    }

    /// `n` messages entered (positive) or left (negative) the send queue.
    pub(crate) fn pending(&self, n: i64) {
        if n >= 0 {
            self.metrics.pending.increment(n as f64);
        } else {
            self.metrics.pending.decrement(-n as f64);
        }
    }

    /// `n` queued messages were lost with their stream, never written.
    pub(crate) fn lost(&self, n: u64) {
        if n > 0 {
            self.stream_closed.fetch_add(n, Relaxed);
            metrics::counter!(m::MESSAGES_DROPPED, "cause" => "stream_closed").increment(n);
        }
    }

    /// Reading paused for the stream's rate quota.
    pub(crate) fn quota_wait(&self) {
        self.quota_waits.fetch_add(1, Relaxed);
        self.metrics.quota_waits.increment(1);
    }

    /// `n` messages were written to the transport for the first time.
    pub(crate) fn written(&self, n: u64) {
        if n > 0 {
            self.written.fetch_add(n, Relaxed);
            self.metrics.written.increment(n);
        }
    }

    /// `n` messages written on a stream the peer then reset could not be written again.
    pub(crate) fn reset_after_write(&self, n: u64) {
        if n > 0 {
            self.reset_after_write.fetch_add(n, Relaxed);
            metrics::counter!(m::MESSAGES_DROPPED, "cause" => "reset_after_write").increment(n);
        }
    }

    /// Counts `msgs`, lost: never written (`stream_closed`), or written on a stream the peer
    /// reset (`reset_after_write`).
    pub(crate) fn lost_outgoing<'a>(
        &self,
        msgs: impl IntoIterator<Item = &'a crate::stream::Outgoing>,
    ) {
        let (mut fresh, mut written) = (0, 0);
        for m in msgs {
            if m.written {
                written += 1;
            } else {
                fresh += 1;
            }
        }
        self.lost(fresh);
        self.reset_after_write(written);
    }

    /// An inbound body did not decrypt.
    pub(crate) fn decryption_failed(&self) {
        self.decryption_failed.fetch_add(1, Relaxed);
        metrics::counter!(m::DECRYPTION_ERRORS).increment(1);
        metrics::counter!(m::MESSAGES_DROPPED, "cause" => "decryption_failed").increment(1);
    }

    /// An inbound message was over `max_message_size`.
    pub(crate) fn oversized(&self) {
        self.oversized.fetch_add(1, Relaxed);
        metrics::counter!(m::MESSAGES_DROPPED, "cause" => "oversized").increment(1);
    }

    /// An inbound frame broke the framing.
    pub(crate) fn malformed(&self) {
        self.malformed.fetch_add(1, Relaxed);
        metrics::counter!(m::MESSAGES_DROPPED, "cause" => "malformed").increment(1);
    }

    /// A received message could not be handed to the queue.
    pub(crate) fn undelivered(&self) {
        self.undelivered.fetch_add(1, Relaxed);
        metrics::counter!(m::MESSAGES_DROPPED, "cause" => "undelivered").increment(1);
    }

    /// A stream of this name started.
    pub(crate) fn stream_opened(&self) {
        self.opened.fetch_add(1, Relaxed);
        self.metrics.opened.increment(1);
    }

    /// A stream of this name ended.
    pub(crate) fn stream_closed(&self) {
        self.closed.fetch_add(1, Relaxed);
        self.metrics.closed.increment(1);
    }

    pub(crate) fn snapshot(&self) -> StreamStats {
        StreamStats {
            name: self.name.to_string(),
            messages_sent: self.sent.load(Relaxed),
            messages_received: self.received.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            bytes_received: self.bytes_received.load(Relaxed),
            last_sent_at: time(self.last_sent.load(Relaxed)),
            last_received_at: time(self.last_received.load(Relaxed)),
            backpressure_waits: self.backpressure_waits.load(Relaxed),
            quota_waits: self.quota_waits.load(Relaxed),
            messages_written: self.written.load(Relaxed),
            dropped: Dropped {
                stream_closed: self.stream_closed.load(Relaxed),
                reset_after_write: self.reset_after_write.load(Relaxed),
                decryption_failed: self.decryption_failed.load(Relaxed),
                oversized: self.oversized.load(Relaxed),
                malformed: self.malformed.load(Relaxed),
                undelivered: self.undelivered.load(Relaxed),
            },
            streams_opened: self.opened.load(Relaxed),
            streams_closed: self.closed.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[tokio::test(start_paused = true)]
    async fn connected_time_adds_up_over_connections() {
        let r = Registry::new(16);
        let p = peer();
        let t0 = Instant::now();
        let e = r.peer(p, t0);
        e.connection_up(true, t0);
        e.connection_down(t0 + Duration::from_secs(10));
        e.connection_up(false, t0 + Duration::from_secs(20));
        let s = r.snapshot(&p, t0 + Duration::from_secs(25)).unwrap();
        assert_eq!(s.connection_count, 2);
        assert_eq!(s.total_connected, Duration::from_secs(15));
        assert!(s.connected_at.is_some());
        assert_eq!(s.outbound, Some(false));
        e.connection_down(t0 + Duration::from_secs(30));
        let s = r.snapshot(&p, t0 + Duration::from_secs(99)).unwrap();
        assert_eq!(s.total_connected, Duration::from_secs(20));
        assert_eq!(s.connected_at, None);
        assert_eq!(s.outbound, None);
    }

    #[tokio::test(start_paused = true)]
    async fn handshake_outcomes_follow_state_changes() {
        let r = Registry::new(16);
        let t0 = Instant::now();
        let e = r.peer(peer(), t0);
        let s = Duration::from_secs;
        let hs = |state, timed_out, at| e.state_changed(state, None, timed_out, at).1;
        assert_eq!(
            e.state_changed(State::Connecting, None, false, t0),
            (State::Disconnected, None)
        );
        assert_eq!(hs(State::Connected, false, t0), None);
        assert_eq!(
            e.state_changed(State::Established, None, false, t0 + s(2)),
            (State::Connected, Some(Handshake::Succeeded(s(2))))
        );
        // Leaving Established is no handshake outcome.
        assert_eq!(hs(State::Disconnected, false, t0 + s(3)), None);
        hs(State::Connected, false, t0 + s(4));
        assert_eq!(
            hs(State::Cooldown, true, t0 + s(34)),
            Some(Handshake::TimedOut)
        );
        hs(State::Connected, false, t0 + s(40));
        assert_eq!(
            hs(State::Reconnecting, false, t0 + s(41)),
            Some(Handshake::Failed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn prune_removes_only_peers_gone_long_enough() {
        let r = Registry::new(16);
        let t0 = Instant::now();
        let max_age = Duration::from_secs(100);
        let (gone, recent, connected, reconnecting) = (peer(), peer(), peer(), peer());
        r.peer(gone, t0)
            .state_changed(State::Disconnected, None, false, t0);
        r.peer(recent, t0).state_changed(
            State::Disconnected,
            None,
            false,
            t0 + Duration::from_secs(50),
        );
        let c = r.peer(connected, t0);
        c.connection_up(true, t0);
        c.state_changed(State::Established, None, false, t0);
        r.peer(reconnecting, t0)
            .state_changed(State::Reconnecting, None, false, t0);
        assert_eq!(r.prune(t0 + Duration::from_secs(99), max_age), 0);
        assert_eq!(r.prune(t0 + Duration::from_secs(100), max_age), 1);
        assert!(r.get(&gone).is_none());
        assert_eq!(r.prune(t0 + Duration::from_secs(10_000), max_age), 1);
        assert!(r.get(&recent).is_none());
        assert!(r.get(&connected).is_some());
        assert!(r.get(&reconnecting).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_registry_evicts_the_longest_gone_peer() {
        let r = Registry::new(2);
        let t0 = Instant::now();
        let (old, newer, connected) = (peer(), peer(), peer());
        r.peer(old, t0);
        r.peer(newer, t0 + Duration::from_secs(1));
        r.peer(newer, t0).state_changed(
            State::Disconnected,
            None,
            false,
            t0 + Duration::from_secs(1),
        );
        r.peer(connected, t0 + Duration::from_secs(2));
        assert_eq!(r.len(), 2);
        assert!(r.get(&old).is_none(), "the longest gone is evicted");
        assert!(r.get(&newer).is_some());
    }

    #[test]
    fn stream_counters_sum_into_the_peer() {
        let r = Registry::new(4);
        let t0 = Instant::now();
        let p = peer();
        let e = r.peer(p, t0);
        let a = e.stream(&Arc::from("a"));
        let b = e.stream(&Arc::from("b"));
        a.sent(10);
        a.sent(5);
        b.received(7, SystemTime::now());
        b.decryption_failed();
        a.lost(3);
        e.streams_refused(1);
        let s = r.snapshot(&p, t0).unwrap();
        assert_eq!((s.messages_sent, s.bytes_sent), (2, 15));
        assert_eq!((s.messages_received, s.bytes_received), (1, 7));
        assert_eq!(s.dropped.decryption_failed, 1);
        assert_eq!(s.dropped.stream_closed, 3);
        assert_eq!(s.refused_streams, 1);
        assert_eq!(s.streams["a"].messages_sent, 2);
        assert!(s.streams["a"].last_sent_at.is_some());
        assert_eq!(s.streams["b"].last_sent_at, None);
        assert!(s.last_message_at.is_some());
        // The same name gives the same counters.
        assert!(Arc::ptr_eq(&a, &e.stream(&Arc::from("a"))));
    }
}
