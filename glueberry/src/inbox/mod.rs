//! Where received messages wait for the application: byte budgets on what peers make the node
//! hold (`budget`), fair and prioritised queues (`queue`), and the waking of the tasks on both
//! sides. One short lock guards it all; wakers are woken after it is released.
//!
//! Stream readers charge what they read before they read it ([`Meter`]) and hand decoded
//! messages over with their charge; the application's receivers take them in the queues'
//! order and release the charge. A reader that cannot charge waits, which stops reading the
//! stream: the muxer's window then stops the sender.

pub(crate) mod budget;
pub(crate) mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use libp2p::PeerId;

use self::budget::{Blocked, Budgets};
pub(crate) use self::budget::{Kind, Limits};
pub(crate) use self::queue::LaneId;
use self::queue::{DEFAULT, Lanes};
use crate::message::{Closed, IncomingMessage, LaneRef, Messages, Priority};
use crate::shared::lock;
use crate::stats::InboxStats;

/// What one message costs beyond its bytes: its place in a queue.
pub(crate) const MESSAGE_OVERHEAD: usize = std::mem::size_of::<Entry>() + 64;

/// Read at most this much at a frame boundary, before the next frame's length is known.
pub(crate) const READAHEAD: usize = 16 * 1024;

/// A queued message and what to release when it is taken.
#[derive(Debug)]
struct Entry {
    msg: IncomingMessage,
    /// Bytes charged to the peer for it: its frame and the overhead.
    charge: usize,
}

impl queue::Item for Entry {
    type Peer = PeerId;
    fn peer(&self) -> &PeerId {
        &self.msg.peer
    }
    fn stream(&self) -> &str {
        &self.msg.stream
    }
}

#[derive(Debug, Default)]
struct Readers {
    /// Readers stopped by their own peer's budget.
    by_peer: HashMap<PeerId, Vec<Waker>>,
    /// Readers stopped by a shared limit.
    shared: Vec<Waker>,
}

struct State {
    budgets: Budgets<PeerId>,
    lanes: Lanes<Entry>,
    /// Receivers waiting, by lane.
    consumers: HashMap<LaneId, Vec<Waker>>,
    readers: Readers,
    /// The queues handed out per stream, so that a second `messages_for` shares the first's.
    handles: HashMap<Arc<str>, Weak<LaneRef>>,
    closed: bool,
    /// Times a reader had to wait for room.
    waits: u64,
    /// Messages dropped at shutdown because their peer was over its budget.
    dropped: u64,
}

/// The received-message side of one node.
pub(crate) struct Inbox {
    state: Mutex<State>,
    priorities: HashMap<String, Priority>,
}

impl Inbox {
    pub(crate) fn new(limits: Limits, priorities: HashMap<String, Priority>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                budgets: Budgets::new(limits),
                lanes: Lanes::default(),
                consumers: HashMap::new(),
                readers: Readers::default(),
                handles: HashMap::new(),
                closed: false,
                waits: 0,
                dropped: 0,
            }),
            priorities,
        })
    }

    /// The class of `stream`'s messages: the handshake stream is always `High`.
    pub(crate) fn priority(&self, stream: &str) -> Priority {
        if stream == crate::wire::HANDSHAKE {
            return Priority::High;
        }
        self.priorities.get(stream).copied().unwrap_or_default()
    }

    /// The default queue.
    pub(crate) fn messages(self: &Arc<Self>) -> Messages {
        Messages::new(Arc::new(LaneRef {
            inbox: self.clone(),
            lane: DEFAULT,
            stream: None,
        }))
    }

    /// `stream`'s own queue (shared with earlier calls while one of them is alive).
    pub(crate) fn messages_for(self: &Arc<Self>, stream: &str) -> Messages {
        let mut wake = Vec::new();
        let lane = {
            let mut s = lock(&self.state);
            let name: Arc<str> = Arc::from(stream);
            if let Some(lane) = s.handles.get(stream).and_then(Weak::upgrade) {
                return Messages::new(lane);
            }
            let id = s.lanes.route(&name);
            let lane = Arc::new(LaneRef {
                inbox: self.clone(),
                lane: id,
                stream: Some(name.clone()),
            });
            s.handles.insert(name, Arc::downgrade(&lane));
            if s.lanes.len(id) > 0 {
                wake.extend(s.consumers.remove(&id).unwrap_or_default());
            }
            lane
        };
        wake.into_iter().for_each(Waker::wake);
        Messages::new(lane)
    }

    /// The last handle of `stream`'s queue is gone: the stream goes back to the default queue.
    pub(crate) fn lane_dropped(&self, stream: &str) {
        let wake = {
            let mut s = lock(&self.state);
            let alive = s.handles.get(stream).is_some_and(|w| w.strong_count() > 0);
            if alive {
                return;
            }
            s.handles.remove(stream);
            if let Some(id) = s.lanes.route_of(stream) {
                s.consumers.remove(&id);
            }
            s.lanes.unroute(stream);
            s.consumers.remove(&DEFAULT).unwrap_or_default()
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// The next message of `lane`; with `cx`, registers for a wake-up when there is none.
    pub(crate) fn pop(
        &self,
        lane: LaneId,
        cx: Option<&mut Context<'_>>,
    ) -> Poll<Result<IncomingMessage, Closed>> {
        let mut wake = Vec::new();
        let r = {
            let mut s = lock(&self.state);
            match s.lanes.pop(lane) {
                Some(e) => {
                    let peer = e.msg.peer;
                    s.release(&peer, e.charge, 1, &mut wake);
                    Poll::Ready(Ok(e.msg))
                }
                None if s.closed => Poll::Ready(Err(Closed)),
                None => {
                    if let Some(cx) = cx {
                        register(s.consumers.entry(lane).or_default(), cx.waker());
                    }
                    Poll::Pending
                }
            }
        };
        wake.into_iter().for_each(Waker::wake);
        r
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    pub(crate) fn len(&self, lane: LaneId) -> usize {
        lock(&self.state).lanes.len(lane)
    }

    /// Queues messages decoded by a reader of `peer`, each with its charge. Returns how many
    /// were dropped instead (the queues closed, or shutdown began and the peer is over its
    /// budget); their charge is released.
    pub(crate) fn push(
        &self,
        peer: &PeerId,
        class: Priority,
        msgs: impl IntoIterator<Item = (IncomingMessage, usize)>,
    ) -> usize {
        let mut wake = Vec::new();
        let mut dropped = 0;
        {
            let mut s = lock(&self.state);
            let mut lanes: Vec<LaneId> = Vec::new();
            for (msg, charge) in msgs {
                if s.closed || (s.budgets.is_unlimited() && s.budgets.over(peer)) {
                    s.release(peer, charge, 1, &mut wake);
                    s.dropped += 1;
                    dropped += 1;
                    continue;
                }
                let lane = s.lanes.push(class, Entry { msg, charge });
                if !lanes.contains(&lane) {
                    lanes.push(lane);
                }
            }
            for lane in lanes {
                wake.extend(s.consumers.remove(&lane).unwrap_or_default());
            }
        }
        wake.into_iter().for_each(Waker::wake);
        dropped
    }

    /// Shutdown: receivers get what is queued, then [`Closed`].
    pub(crate) fn close(&self) {
        let wake: Vec<Waker> = {
            let mut s = lock(&self.state);
            s.closed = true;
            s.consumers.drain().flat_map(|(_, w)| w).collect()
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// Shutdown began: readers no longer wait for room, so that every stream is read to its
    /// end (what is over a peer's budget is dropped, counted).
    pub(crate) fn unlimit(&self) {
        let wake = {
            let mut s = lock(&self.state);
            s.budgets.set_unlimited();
            s.readers.take_all()
        };
        wake.into_iter().for_each(Waker::wake);
    }

    /// `peer` finished the handshake (`Trusted`) or is no longer connected (`Stranger`).
    pub(crate) fn set_kind(&self, peer: &PeerId, kind: Kind) {
        let wake = {
            let mut s = lock(&self.state);
            s.budgets.set_kind(peer, kind);
            let mut wake = s.readers.by_peer.remove(peer).unwrap_or_default();
            wake.append(&mut s.readers.shared);
            wake
        };
        wake.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn stats(&self) -> InboxStats {
        let s = lock(&self.state);
        let m = s.budgets.marks();
        InboxStats {
            held_bytes: m.held,
            peak_bytes: m.peak,
            strangers_held_bytes: m.strangers_held,
            strangers_peak_bytes: m.strangers_peak,
            stranger_peak_bytes: m.stranger_peak,
            peer_peak_bytes: m.peer_peak,
            queued_messages: s.lanes.total_len(),
            read_waits: s.waits,
            dropped_at_shutdown: s.dropped,
        }
    }

    /// What `peer` holds now, in bytes.
    #[cfg(test)]
    pub(crate) fn held(&self, peer: &PeerId) -> usize {
        lock(&self.state).budgets.held(peer)
    }

    /// Runs a charge; when it does not fit, registers `cx` to be woken when it may.
    fn charge<T>(
        &self,
        peer: &PeerId,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Budgets<PeerId>) -> Result<T, Blocked>,
    ) -> Poll<T> {
        let mut s = lock(&self.state);
        match f(&mut s.budgets) {
            Ok(t) => Poll::Ready(t),
            Err(blocked) => {
                s.waits += 1;
                let list = match blocked {
                    Blocked::Peer => s.readers.by_peer.entry(*peer).or_default(),
                    Blocked::Shared => &mut s.readers.shared,
                };
                register(list, cx.waker());
                Poll::Pending
            }
        }
    }

    fn release(&self, peer: &PeerId, bytes: usize, messages: usize) {
        if bytes == 0 && messages == 0 {
            return;
        }
        let mut wake = Vec::new();
        lock(&self.state).release(peer, bytes, messages, &mut wake);
        wake.into_iter().for_each(Waker::wake);
    }
}

impl State {
    fn release(&mut self, peer: &PeerId, bytes: usize, messages: usize, wake: &mut Vec<Waker>) {
        self.budgets.release(peer, bytes, messages);
        if let Some(w) = self.readers.by_peer.remove(peer) {
            wake.extend(w);
        }
        wake.append(&mut self.readers.shared);
    }
}

impl Readers {
    fn take_all(&mut self) -> Vec<Waker> {
        let mut all: Vec<Waker> = self.by_peer.drain().flat_map(|(_, w)| w).collect();
        all.append(&mut self.shared);
        all
    }
}

fn register(list: &mut Vec<Waker>, waker: &Waker) {
    if !list.iter().any(|w| w.will_wake(waker)) {
        list.push(waker.clone());
    }
}

/// One stream reader's way to charge its peer.
#[derive(Clone)]
pub(crate) struct Meter {
    inbox: Arc<Inbox>,
    peer: PeerId,
    urgency: Urgency,
}

/// Whether a stream's reader may use the reserves kept from bulk streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Urgency {
    Always,
    Never,
    WhileStranger,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("peer", &self.peer)
            .field("urgency", &self.urgency)
            .finish()
    }
}

impl Meter {
    /// A meter for a reader of `peer`'s stream `stream`: `High` streams may use what is kept
    /// back from bulk ones; the handshake stream only while the peer is a stranger (a
    /// handshaked peer's handshake stream must not reach the reserves meant for votes).
    pub(crate) fn new(inbox: Arc<Inbox>, peer: PeerId, stream: &str) -> Self {
        let urgency = if stream == crate::wire::HANDSHAKE {
            Urgency::WhileStranger
        } else if inbox.priority(stream) == Priority::High {
            Urgency::Always
        } else {
            Urgency::Never
        };
        Self {
            inbox,
            peer,
            urgency,
        }
    }

    fn urgent(&self, b: &Budgets<PeerId>) -> bool {
        match self.urgency {
            Urgency::Always => true,
            Urgency::Never => false,
            Urgency::WhileStranger => b.kind(&self.peer) == Kind::Stranger,
        }
    }

    /// Charges exactly `n` bytes (the rest of a frame).
    pub(crate) fn poll_exact(&self, cx: &mut Context<'_>, n: usize) -> Poll<()> {
        let peer = self.peer;
        self.inbox.charge(&peer, cx, |b| {
            let urgent = self.urgent(b);
            b.charge_exact(&peer, n, urgent)
        })
    }

    /// Charges between 1 and `max` bytes.
    pub(crate) fn poll_up_to(&self, cx: &mut Context<'_>, max: usize) -> Poll<usize> {
        let peer = self.peer;
        self.inbox.charge(&peer, cx, |b| {
            let urgent = self.urgent(b);
            b.charge_up_to(&peer, max, urgent)
        })
    }

    /// Charges between 1 and `max` messages' overhead.
    pub(crate) fn poll_messages(&self, cx: &mut Context<'_>, max: usize) -> Poll<usize> {
        let peer = self.peer;
        self.inbox.charge(&peer, cx, |b| {
            let urgent = self.urgent(b);
            b.charge_messages(&peer, max, MESSAGE_OVERHEAD, urgent)
        })
    }

    /// Gives back what was charged and not handed over.
    pub(crate) fn release(&self, bytes: usize, messages: usize) {
        self.inbox.release(&self.peer, bytes, messages);
    }
}

#[cfg(test)]
mod tests;
