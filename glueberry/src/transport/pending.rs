//! Inbound connections in their security handshake, with room for `max` of them: when a new
//! one needs a place and all are taken, the oldest is evicted (its upgrade fails at once).
//!
//! libp2p's own pending-inbound limit refuses the new connection instead, so connections that
//! never speak (a flood of TCP connections that never start Noise, refilled as they time out)
//! keep every slot and lock every new peer out. With eviction, a flood only shortens the time
//! a connection has to finish its handshake: `max` arrivals after it. A connection takes a
//! place when the swarm first polls its upgrade, that is after every behaviour accepted it
//! (the per-IP limit refuses before it costs anyone a place).

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
    evicted: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug)]
struct Queue {
    max: Option<usize>,
    /// Places in order of arrival; dead entries (finished or failed upgrades) are pruned.
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

    /// Gives a new connection a place, evicting the oldest if none is free.
    fn admit(&self) -> Arc<Flag> {
        let flag = Arc::new(Flag::default());
        let mut q = lock(&self.queue);
        q.order.retain(|w| w.strong_count() > 0);
        if let Some(max) = q.max {
            while q.order.len() >= max {
                let Some(oldest) = q.order.pop_front() else {
                    break;
                };
                if let Some(f) = oldest.upgrade() {
                    f.evicted.store(true, Ordering::Release);
                    f.waker.wake();
                    self.evicted.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!(crate::telemetry::CONNECTIONS_EVICTED, "cause" => "pending")
                        .increment(1);
                }
            }
        }
        q.order.push_back(Arc::downgrade(&flag));
        flag
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        let mut q = lock(&self.queue);
        q.order.retain(|w| w.strong_count() > 0);
        q.order.len()
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
                slots,
                place: None,
            })
        })
    }
}

/// An inbound upgrade that fails at once when evicted.
pub(crate) struct Upgrade<F> {
    inner: F,
    slots: Slots,
    /// Taken on the first poll.
    place: Option<Arc<Flag>>,
}

impl<F, O> Future for Upgrade<F>
where
    F: Future<Output = io::Result<O>> + Unpin,
{
    type Output = io::Result<O>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let place = this.place.get_or_insert_with(|| this.slots.admit());
        place.waker.register(cx.waker());
        if place.evicted.load(Ordering::Acquire) {
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
            slots: slots.clone(),
            place: None,
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
