//! Inbound connections in their security handshake, with room for `max` of them: when a new
//! one needs a place and all are taken, the oldest is evicted (its upgrade fails at once).
//!
//! libp2p's own pending-inbound limit refuses the new connection instead, so connections that
//! never speak (a flood of TCP connections that never start Noise, refilled as they time out)
//! keep every slot and lock every new peer out. With eviction, a flood only shortens the time
//! a connection has to finish its handshake: `max` arrivals after it. A connection takes a
//! place when the swarm first polls its upgrade, that is after every behaviour accepted it
//! (the per-IP limit refuses before it costs anyone a place); "oldest" is by arrival, whatever
//! the order in which the swarm first polls them.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use libp2p::Multiaddr;
use libp2p::core::transport::{DialOpts, ListenerId, Transport, TransportError, TransportEvent};

use crate::shared::lock;

/// What an evicted connection's upgrade fails with.
pub(crate) const EVICTED: &str =
    "evicted: the pending-inbound slots are full and it was the oldest";

#[derive(Debug, Default)]
struct Flag {
    /// The swarm accepted it (polled its upgrade): it holds a place.
    placed: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug)]
struct Queue {
    max: Option<usize>,
    /// Inbound connections in order of arrival, placed or not yet; dead entries (finished,
    /// failed or refused upgrades) are pruned.
    order: VecDeque<Weak<Flag>>,
}

/// The places, shared by the transport wrapper and whoever counts evictions.
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    queue: Arc<Mutex<Queue>>,
    evicted: Arc<AtomicU64>,
}

impl Slots {
    /// `None` leaves the number of pending inbound connections unbounded.
    pub(crate) fn new(max: Option<usize>) -> Self {
        Self {
            queue: Arc::new(Mutex::new(Queue {
                max,
                order: VecDeque::new(),
            })),
            evicted: Arc::default(),
        }
    }

    /// Connections evicted so far.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// A new inbound connection, in order of arrival (it holds no place yet).
    fn arrive(&self) -> Arc<Flag> {
        let flag = Arc::new(Flag::default());
        lock(&self.queue).order.push_back(Arc::downgrade(&flag));
        flag
    }

    /// `flag`'s connection takes a place; if that makes one too many, the oldest placed
    /// connection (by arrival; maybe this one) is evicted.
    fn place(&self, flag: &Flag) {
        flag.placed.store(true, Ordering::Release);
        let mut q = lock(&self.queue);
        q.order.retain(|w| w.strong_count() > 0);
        let Some(max) = q.max else {
            return;
        };
        let placed = |w: &Weak<Flag>| {
            w.upgrade()
                .is_some_and(|f| f.placed.load(Ordering::Acquire))
        };
        let mut n = q.order.iter().filter(|w| placed(w)).count();
        while n > max {
            let Some(i) = q.order.iter().position(placed) else {
                break;
            };
            if let Some(f) = q.order.remove(i).and_then(|w| w.upgrade()) {
                f.evicted.store(true, Ordering::Release);
                f.waker.wake();
                self.evicted.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(crate::telemetry::CONNECTIONS_EVICTED, "cause" => "pending")
                    .increment(1);
            }
            n -= 1;
        }
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        let mut q = lock(&self.queue);
        q.order.retain(|w| w.strong_count() > 0);
        q.order
            .iter()
            .filter(|w| {
                w.upgrade()
                    .is_some_and(|f| f.placed.load(Ordering::Acquire))
            })
            .count()
    }
}

/// A transport whose inbound upgrades hold a place in [`Slots`].
pub(crate) struct Evicting<T> {
    inner: T,
    slots: Slots,
}

impl<T> Evicting<T> {
    pub(crate) fn new(inner: T, slots: Slots) -> Self {
        Self { inner, slots }
    }
}

impl<T> Transport for Evicting<T>
where
    T: Transport<Error = io::Error> + Unpin,
    T::ListenerUpgrade: Unpin,
{
    type Output = T::Output;
    type Error = io::Error;
    type ListenerUpgrade = Upgrade<T::ListenerUpgrade>;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        self.inner.dial(addr, opts)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        let slots = self.slots.clone();
        Pin::new(&mut self.inner).poll(cx).map(|event| {
            event.map_upgrade(|inner| Upgrade {
                inner,
                flag: slots.arrive(),
                slots,
                placed: false,
            })
        })
    }
}

/// An inbound upgrade that fails at once when evicted.
pub(crate) struct Upgrade<F> {
    inner: F,
    slots: Slots,
    flag: Arc<Flag>,
    /// Whether it took its place (on the first poll).
    placed: bool,
}

impl<F, O> Future for Upgrade<F>
where
    F: Future<Output = io::Result<O>> + Unpin,
{
    type Output = io::Result<O>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.flag.waker.register(cx.waker());
        if !this.placed {
            this.placed = true;
            this.slots.place(&this.flag);
        }
        if this.flag.evicted.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                EVICTED,
            )));
        }
        Pin::new(&mut this.inner).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    fn upgrade(slots: &Slots) -> Upgrade<futures::future::Pending<io::Result<()>>> {
        Upgrade {
            inner: futures::future::pending(),
            flag: slots.arrive(),
            slots: slots.clone(),
            placed: false,
        }
    }

    #[test]
    fn the_oldest_is_evicted_when_a_new_one_needs_a_place() {
        let slots = Slots::new(Some(2));
        let (mut a, mut b, mut c) = (upgrade(&slots), upgrade(&slots), upgrade(&slots));
        // No place is taken before the first poll (a refused connection is never polled).
        assert_eq!(slots.live(), 0);
        assert!(a.poll_unpin(&mut noop()).is_pending());
        assert!(b.poll_unpin(&mut noop()).is_pending());
        assert!(c.poll_unpin(&mut noop()).is_pending());
        match a.poll_unpin(&mut noop()) {
            Poll::Ready(Err(e)) => assert_eq!(e.to_string(), EVICTED),
            other => panic!("{other:?}"),
        }
        assert!(b.poll_unpin(&mut noop()).is_pending());
        assert_eq!(slots.evicted(), 1);
        // A finished upgrade gives its place back: no eviction for the next one.
        drop(b);
        let mut d = upgrade(&slots);
        assert!(d.poll_unpin(&mut noop()).is_pending());
        assert!(c.poll_unpin(&mut noop()).is_pending());
        assert_eq!(slots.evicted(), 1);
        assert_eq!(slots.live(), 2);
    }

    #[test]
    fn the_oldest_by_arrival_goes_whatever_the_order_of_first_polls() {
        let slots = Slots::new(Some(1));
        let (mut old, mut new) = (upgrade(&slots), upgrade(&slots));
        // The newer one is polled first: it takes the place; the older one, polled next, is
        // the one evicted.
        assert!(new.poll_unpin(&mut noop()).is_pending());
        assert!(matches!(old.poll_unpin(&mut noop()), Poll::Ready(Err(_))));
        assert!(new.poll_unpin(&mut noop()).is_pending());
        assert_eq!(slots.evicted(), 1);
    }

    #[test]
    fn unbounded_never_evicts() {
        let slots = Slots::new(None);
        let mut all: Vec<_> = (0..1000).map(|_| upgrade(&slots)).collect();
        for u in &mut all {
            assert!(u.poll_unpin(&mut noop()).is_pending());
        }
        assert_eq!(slots.evicted(), 0);
    }

    fn noop() -> Context<'static> {
        Context::from_waker(futures::task::noop_waker_ref())
    }
}
