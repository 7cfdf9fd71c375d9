//! The forwarder task: fans every event out to every subscription, never waiting.
//!
//! Emitters (the driver, stream readers) hand events to it over a bounded queue without
//! waiting. For each event it updates its view of peer states, then offers the event to each
//! subscription whose filter it passes. A subscription whose queue is full is not waited for:
//! its missed events are counted and it gets one `Lagged(n)` before its next event.
//!
//! If the forwarder itself falls that far behind, the emitter does not wait either: the
//! events that find its queue full are counted, and the count rides on the next event that
//! gets in, so every subscription is told (`Lagged`) exactly where the gap is. It may
//! overstate a subscription's loss (the missed events might not have passed its filter),
//! never understate it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{Event, Filter, Subscription};
use crate::peer::State;
use crate::shared::lock;
use crate::telemetry as m;

/// What a subscription queue carries.
#[derive(Debug)]
pub(crate) enum Item {
    Event(Event),
    Lagged(u64),
}

struct Sub {
    filter: Filter,
    tx: mpsc::Sender<Item>,
    /// Events that passed the filter but found the queue full, not yet reported.
    missed: u64,
    /// Where a count still unreported at the end is left for the subscription to read.
    final_missed: Arc<AtomicU64>,
}

#[derive(Default)]
struct Registry {
    subs: Vec<Sub>,
    /// Peer states as of the last event forwarded (for snapshots).
    states: HashMap<PeerId, State>,
    closed: bool,
}

/// The emitting side and the subscription registry; shared by the node's tasks.
pub(crate) struct Hub {
    /// The forwarder's input: each event with the number of events dropped just before it.
    input: Mutex<Option<mpsc::Sender<(Event, u64)>>>,
    /// Events dropped since the last one that got in (written under the `input` lock).
    gap: Arc<AtomicU64>,
    registry: Arc<Mutex<Registry>>,
    capacity: usize,
}

impl Hub {
    /// A hub whose subscriptions hold `capacity` events each, and the forwarder to spawn.
    pub(crate) fn new(capacity: usize) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = mpsc::channel(capacity.max(64) * 8);
        let registry = Arc::new(Mutex::new(Registry::default()));
        let gap = Arc::new(AtomicU64::new(0));
        let hub = Self {
            input: Mutex::new(Some(tx)),
            gap: gap.clone(),
            registry: registry.clone(),
            capacity,
        };
        (hub, run(rx, gap, registry))
    }

    /// Hands `event` to the forwarder. Never waits: if the forwarder is that far behind, the
    /// event is dropped, counted, logged, and reported to every subscription as a gap.
    pub(crate) fn emit(&self, event: Event) {
        let guard = lock(&self.input);
        let Some(tx) = guard.as_ref() else { return };
        let gap = self.gap.swap(0, Ordering::AcqRel);
        if let Err(TrySendError::Full((e, gap))) = tx.try_send((event, gap)) {
            self.gap.fetch_add(gap + 1, Ordering::AcqRel);
            metrics::counter!(m::EVENTS_DROPPED).increment(1);
            tracing::warn!(event = ?e, "event forwarder saturated, event dropped");
        }
    }

    /// Registers a subscription; returns it with the states of the peers that pass `filter`,
    /// as of the point where the subscription starts (no event is lost or repeated between).
    pub(crate) fn subscribe(&self, filter: Filter) -> (Vec<(PeerId, State)>, Subscription) {
        let (tx, rx) = mpsc::channel(self.capacity);
        let mut reg = lock(&self.registry);
        let snapshot = reg
            .states
            .iter()
            .filter(|(p, s)| filter.matches_state(p, **s))
            .map(|(p, s)| (*p, *s))
            .collect();
        let final_missed = Arc::new(AtomicU64::new(0));
        if !reg.closed {
            reg.subs.push(Sub {
                filter,
                tx,
                missed: 0,
                final_missed: final_missed.clone(),
            });
        }
        (snapshot, Subscription { rx, final_missed })
    }

    /// Lets the forwarder finish: it forwards what it has, then ends every subscription.
    pub(crate) fn close(&self) {
        lock(&self.input).take();
    }
}

async fn run(
    mut input: mpsc::Receiver<(Event, u64)>,
    gap: Arc<AtomicU64>,
    registry: Arc<Mutex<Registry>>,
) {
    let mut retry = LAG_RETRY;
    // Whether a subscription still owes a `Lagged` (as of the last pass under the lock).
    let mut owed = false;
    loop {
        // While a subscription still owes a `Lagged`, wake now and then to deliver it once it
        // has room, so that a gap at the end of a burst is reported without waiting for the
        // next event. The wait doubles (up to a second) while nobody makes room.
        let next = if owed || gap.load(Ordering::Acquire) > 0 {
            tokio::select! {
                next = input.recv() => Some(next),
                _ = tokio::time::sleep(retry) => None,
            }
        } else {
            Some(input.recv().await)
        };
        let (event, dropped) = match next {
            None => {
                let mut reg = lock(&registry);
                // Events the emitters dropped after the last one that got in.
                let dropped = gap.swap(0, Ordering::AcqRel);
                if dropped > 0 {
                    missed_by_all(&mut reg, dropped);
                }
                reg.subs.retain_mut(flush_lag);
                owed = reg.subs.iter().any(|s| s.missed > 0);
                retry = if owed {
                    (retry * 2).min(LAG_RETRY_MAX)
                } else {
                    LAG_RETRY
                };
                continue;
            }
            Some(None) => break,
            Some(Some(item)) => item,
        };
        retry = LAG_RETRY;
        let mut reg = lock(&registry);
        if dropped > 0 {
            missed_by_all(&mut reg, dropped);
        }
        if let Event::Connection(e) = &event {
            if e.state == State::Disconnected {
                reg.states.remove(&e.peer);
            } else {
                reg.states.insert(e.peer, e.state);
            }
        }
        reg.subs.retain_mut(|sub| offer(sub, &event));
        owed = reg.subs.iter().any(|s| s.missed > 0);
    }
    let mut reg = lock(&registry);
    // Events dropped after the last one that got in.
    let dropped = gap.swap(0, Ordering::AcqRel);
    if dropped > 0 {
        missed_by_all(&mut reg, dropped);
    }
    reg.closed = true;
    for sub in reg.subs.drain(..) {
        sub.final_missed.store(sub.missed, Ordering::Release);
    }
}

/// How soon a `Lagged` still owed to a full subscription is first retried.
const LAG_RETRY: std::time::Duration = std::time::Duration::from_millis(10);
/// The longest wait between such retries.
const LAG_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// Delivers the `Lagged` a subscription is owed, if it has room now; false if it is gone.
fn flush_lag(sub: &mut Sub) -> bool {
    if sub.missed == 0 {
        return !sub.tx.is_closed();
    }
    match sub.tx.try_send(Item::Lagged(sub.missed)) {
        Ok(()) => {
            sub.missed = 0;
            true
        }
        Err(TrySendError::Full(_)) => true,
        Err(TrySendError::Closed(_)) => false,
    }
}

/// `n` events never reached the forwarder: every subscription may have missed them.
fn missed_by_all(reg: &mut Registry, n: u64) {
    for sub in &mut reg.subs {
        sub.missed += n;
        metrics::counter!(m::SUBSCRIBER_LAGGED).increment(n);
    }
}

/// Offers `event` to one subscription; false if it is gone.
fn offer(sub: &mut Sub, event: &Event) -> bool {
    if !sub.filter.matches(event) {
        return !sub.tx.is_closed();
    }
    if sub.missed > 0 {
        match sub.tx.try_send(Item::Lagged(sub.missed)) {
            Ok(()) => sub.missed = 0,
            Err(TrySendError::Full(_)) => {
                sub.missed += 1;
                metrics::counter!(m::SUBSCRIBER_LAGGED).increment(1);
                return true;
            }
            Err(TrySendError::Closed(_)) => return false,
        }
    }
    match sub.tx.try_send(Item::Event(event.clone())) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            sub.missed += 1;
            metrics::counter!(m::SUBSCRIBER_LAGGED).increment(1);
            true
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::event::{ConnectionEvent, RecvError};

    fn event(peer: PeerId, state: State) -> Event {
        Event::Connection(ConnectionEvent {
            peer,
            state,
            reason: None,
            attempt: None,
            delay: None,
            at: SystemTime::UNIX_EPOCH,
        })
    }

    /// Emits like `Hub::emit`, but waits for room so that the test controls every event.
    async fn emit_all(hub: &Hub, events: impl Iterator<Item = Event>) {
        let tx = lock(&hub.input).clone().unwrap();
        for e in events {
            tx.send((e, 0)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_stalled_subscriber_delays_nobody_and_sees_its_lag() {
        let (hub, forwarder) = Hub::new(100);
        let forwarder = tokio::spawn(forwarder);
        let (_, mut idle) = hub.subscribe(Filter::all());
        let (_, mut reader) = hub.subscribe(Filter::all());
        let peers: Vec<PeerId> = (0..10_000).map(|_| PeerId::random()).collect();
        // The reader keeps up (it reads each batch as it comes); the idle one never reads.
        let mut got = Vec::new();
        for batch in peers.chunks(50) {
            emit_all(&hub, batch.iter().map(|p| event(*p, State::Connected))).await;
            for _ in batch {
                got.push(reader.recv().await.unwrap().peer().unwrap());
            }
        }
        assert!(got == peers, "the reader got every event, in order");
        hub.close();
        forwarder.await.unwrap();
        // The idle one has its first 100, then the count of what it missed, then the end.
        for p in &peers[..100] {
            assert_eq!(idle.recv().await.unwrap().peer(), Some(*p));
        }
        assert_eq!(idle.recv().await, Err(RecvError::Lagged(9_900)));
        assert_eq!(idle.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn lag_is_reported_where_the_gap_is() {
        let (hub, forwarder) = Hub::new(2);
        let forwarder = tokio::spawn(forwarder);
        let (_, mut sub) = hub.subscribe(Filter::all());
        let p: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        emit_all(&hub, p[..4].iter().map(|p| event(*p, State::Connected))).await;
        // Let the forwarder take them: 2 queued, 2 missed.
        while hub.registry.lock().unwrap().subs[0].missed < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(sub.recv().await.unwrap().peer(), Some(p[0]));
        assert_eq!(sub.recv().await.unwrap().peer(), Some(p[1]));
        emit_all(&hub, p[4..].iter().map(|p| event(*p, State::Connected))).await;
        hub.close();
        forwarder.await.unwrap();
        assert_eq!(sub.recv().await, Err(RecvError::Lagged(2)));
        assert_eq!(sub.recv().await.unwrap().peer(), Some(p[4]));
        // p[5] found the queue full again behind Lagged and p[4]; the count survives the end.
        assert_eq!(sub.recv().await, Err(RecvError::Lagged(1)));
        assert_eq!(sub.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn events_the_forwarder_could_not_take_are_reported_to_every_subscription() {
        let (hub, forwarder) = Hub::new(64);
        let (x, y) = (PeerId::random(), PeerId::random());
        let (_, mut only_x) = hub.subscribe(Filter::all().peers([x]));
        // The forwarder is not running yet: its input (8 × 64) fills, then 3 events are dropped.
        let room = lock(&hub.input).as_ref().unwrap().max_capacity();
        for _ in 0..room + 3 {
            hub.emit(event(y, State::Connected));
        }
        let forwarder = tokio::spawn(forwarder);
        while {
            let input = lock(&hub.input);
            let tx = input.as_ref().unwrap();
            tx.capacity() < tx.max_capacity()
        } {
            tokio::task::yield_now().await;
        }
        // The next event that gets in carries the gap: the subscription hears of it first.
        hub.emit(event(x, State::Connected));
        hub.emit(event(x, State::Established));
        hub.close();
        forwarder.await.unwrap();
        assert_eq!(only_x.recv().await, Err(RecvError::Lagged(3)));
        assert_eq!(only_x.recv().await.unwrap(), event(x, State::Connected));
        assert_eq!(only_x.recv().await.unwrap(), event(x, State::Established));
        assert_eq!(only_x.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn a_gap_at_the_end_is_reported_at_the_end() {
        let (hub, forwarder) = Hub::new(64);
        let (_, mut sub) = hub.subscribe(Filter::all().peers([PeerId::random()]));
        let room = lock(&hub.input).as_ref().unwrap().max_capacity();
        for _ in 0..room + 5 {
            hub.emit(event(PeerId::random(), State::Connected));
        }
        hub.close();
        forwarder.await;
        assert_eq!(sub.recv().await, Err(RecvError::Lagged(5)));
        assert_eq!(sub.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn events_dropped_at_the_end_of_a_burst_are_reported_without_another_event() {
        let (hub, forwarder) = Hub::new(64);
        let (_, mut sub) = hub.subscribe(Filter::all().peers([PeerId::random()]));
        let room = lock(&hub.input).as_ref().unwrap().max_capacity();
        for _ in 0..room + 5 {
            hub.emit(event(PeerId::random(), State::Connected));
        }
        let forwarder = tokio::spawn(forwarder);
        // Nothing else is emitted, and the hub stays open.
        assert_eq!(sub.recv().await, Err(RecvError::Lagged(5)));
        hub.close();
        forwarder.await.unwrap();
        assert_eq!(sub.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lag_at_the_end_of_a_burst_is_reported_once_there_is_room() {
        let (hub, forwarder) = Hub::new(2);
        let forwarder = tokio::spawn(forwarder);
        let (_, mut sub) = hub.subscribe(Filter::all());
        let p: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        emit_all(&hub, p.iter().map(|p| event(*p, State::Connected))).await;
        assert_eq!(sub.recv().await.unwrap().peer(), Some(p[0]));
        assert_eq!(sub.recv().await.unwrap().peer(), Some(p[1]));
        // No event follows the 3 missed: the forwarder delivers their count by itself.
        assert_eq!(sub.recv().await, Err(RecvError::Lagged(3)));
        hub.close();
        forwarder.await.unwrap();
        assert_eq!(sub.recv().await, Err(RecvError::Closed));
    }

    #[tokio::test]
    async fn filters_and_snapshots() {
        let (hub, forwarder) = Hub::new(16);
        let forwarder = tokio::spawn(forwarder);
        let (a, b) = (PeerId::random(), PeerId::random());
        emit_all(
            &hub,
            [event(a, State::Connected), event(b, State::Established)].into_iter(),
        )
        .await;
        // Wait until the forwarder has seen both (the snapshot is taken under its lock).
        while hub.registry.lock().unwrap().states.len() < 2 {
            tokio::task::yield_now().await;
        }
        let (snap, mut only_a) = hub.subscribe(Filter::all().peers([a]));
        assert_eq!(snap, vec![(a, State::Connected)]);
        let (_, mut established) = hub.subscribe(Filter::all().states([State::Established]));
        let (snap, mut b_established) =
            hub.subscribe(Filter::all().peers([b]).states([State::Established]));
        assert_eq!(snap, vec![(b, State::Established)]);
        let (_, dropped) = hub.subscribe(Filter::all());
        drop(dropped);
        emit_all(
            &hub,
            [event(b, State::Disconnected), event(a, State::Established)].into_iter(),
        )
        .await;
        hub.close();
        forwarder.await.unwrap();
        assert_eq!(only_a.recv().await.unwrap(), event(a, State::Established));
        assert_eq!(only_a.recv().await, Err(RecvError::Closed));
        assert_eq!(
            established.recv().await.unwrap(),
            event(a, State::Established)
        );
        assert_eq!(established.recv().await, Err(RecvError::Closed));
        // Both conditions: b's Disconnected and a's Established pass neither.
        assert_eq!(b_established.recv().await, Err(RecvError::Closed));
        // After the end, new subscriptions are closed at once.
        let (_, mut late) = hub.subscribe(Filter::all());
        assert_eq!(late.recv().await, Err(RecvError::Closed));
    }
}
