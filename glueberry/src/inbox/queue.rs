//! The order in which received messages reach the application, sans-IO.
//!
//! Messages wait in *lanes*: the default lane, read through `Node::messages`, and one lane per
//! stream the application receives apart (`Node::messages_for`). Inside a lane each priority
//! class has one queue per peer, and:
//! - classes are served by weighted round robin (`WEIGHTS`: of 11 messages taken while every
//!   class has some, 8 are `High`, 2 `Normal`, 1 `Low`), so a vote waits behind at most a few
//!   blocks and blocks still move under a flood of votes;
//! - inside a class, peers are served round robin, one message each: a peer's backlog delays
//!   another peer's message by one message per peer waiting, never by the backlog; and a peer
//!   that had nothing waiting is served before the peers with backlogs (the sparse-flow rule of
//!   FQ-CoDel, RFC 8290 §4.2), taking turns with them: a validator's occasional vote waits
//!   behind one backlogged message and the other new peers' messages, not behind one message of
//!   every flooding peer, and peers that keep one message waiting get at most every other turn;
//! - the messages of one (peer, stream) keep their order.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;

use crate::message::Priority;

/// Messages taken from a class per round while others wait, by `Priority as usize`.
const WEIGHTS: [u32; 3] = [8, 2, 1];

/// What a queue needs to know of a message.
pub(crate) trait Item {
    type Peer: Hash + Eq + Clone + std::fmt::Debug;
    fn peer(&self) -> &Self::Peer;
    fn stream(&self) -> &str;
}

/// A lane's id: `DEFAULT` or one from [`Lanes::route`].
pub(crate) type LaneId = usize;

/// The default lane.
pub(crate) const DEFAULT: LaneId = 0;

#[derive(Debug)]
struct Class<M: Item> {
    queues: HashMap<M::Peer, VecDeque<M>>,
    /// Peers whose queue was empty until their last message came: served first.
    new: VecDeque<M::Peer>,
    /// Peers with a backlog, in the order they are served.
    old: VecDeque<M::Peer>,
    /// The last message came from a new peer: the backlogs' turn next.
    owe_old: bool,
}

impl<M: Item> Default for Class<M> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            new: VecDeque::new(),
            old: VecDeque::new(),
            owe_old: false,
        }
    }
}

impl<M: Item> Class<M> {
    fn push(&mut self, msg: M) {
        let q = self.queues.entry(msg.peer().clone()).or_default();
        if q.is_empty() {
            self.new.push_back(msg.peer().clone());
        }
        q.push_back(msg);
    }

    fn pop(&mut self) -> Option<M> {
        // New peers first, but the backlogs get every other turn: peers that keep one message
        // waiting cannot starve the others.
        let from_new = !self.new.is_empty() && (self.old.is_empty() || !self.owe_old);
        self.owe_old = from_new && !self.old.is_empty();
        let peer = if from_new {
            self.new.pop_front()
        } else {
            self.old.pop_front()
        }?;
        let q = self
            .queues
            .get_mut(&peer)
            .expect("a peer in a ring has a queue");
        let msg = q.pop_front().expect("a peer in a ring has messages");
        if q.is_empty() {
            self.queues.remove(&peer);
        } else {
            // One message per turn: what is left waits its turn among the backlogs.
            self.old.push_back(peer);
        }
        Some(msg)
    }

    fn is_empty(&self) -> bool {
        self.new.is_empty() && self.old.is_empty()
    }

    /// Peers with messages waiting.
    #[cfg(test)]
    fn peers(&self) -> usize {
        self.new.len() + self.old.len()
    }

    /// Takes out the messages of `stream`, each peer's in order.
    fn take_stream(&mut self, stream: &str) -> Vec<M> {
        let mut out = Vec::new();
        for q in self.queues.values_mut() {
            let (taken, kept): (VecDeque<M>, VecDeque<M>) =
                q.drain(..).partition(|m| m.stream() == stream);
            out.extend(taken);
            *q = kept;
        }
        self.queues.retain(|_, q| !q.is_empty());
        let queues = &self.queues;
        self.new.retain(|p| queues.contains_key(p));
        self.old.retain(|p| queues.contains_key(p));
        out
    }

    fn take_all(&mut self) -> Vec<M> {
        let mut out = Vec::new();
        while let Some(m) = self.pop() {
            out.push(m);
        }
        out
    }
}

#[derive(Debug)]
struct Lane<M: Item> {
    classes: [Class<M>; 3],
    /// What each class may still take this round.
    credit: [u32; 3],
    len: usize,
}

impl<M: Item> Default for Lane<M> {
    fn default() -> Self {
        Self {
            classes: Default::default(),
            credit: WEIGHTS,
            len: 0,
        }
    }
}

impl<M: Item> Lane<M> {
    fn push(&mut self, class: Priority, msg: M) {
        self.classes[class as usize].push(msg);
        self.len += 1;
    }

    fn pop(&mut self) -> Option<M> {
        if self.len == 0 {
            return None;
        }
        let waiting = |c: usize, lane: &Self| !lane.classes[c].is_empty();
        let pick = (0..3).find(|&c| waiting(c, self) && self.credit[c] > 0);
        let c = match pick {
            Some(c) => c,
            None => {
                // Every class with messages spent its credit: a new round.
                self.credit = WEIGHTS;
                (0..3).find(|&c| waiting(c, self))?
            }
        };
        self.credit[c] -= 1;
        self.len -= 1;
        self.classes[c].pop()
    }
}

/// Every lane and which streams go where.
#[derive(Debug)]
pub(crate) struct Lanes<M: Item> {
    lanes: HashMap<LaneId, Lane<M>>,
    routes: HashMap<Arc<str>, LaneId>,
    next: LaneId,
}

impl<M: Item> Default for Lanes<M> {
    fn default() -> Self {
        Self {
            lanes: HashMap::from([(DEFAULT, Lane::default())]),
            routes: HashMap::new(),
            next: DEFAULT + 1,
        }
    }
}

impl<M: Item> Lanes<M> {
    /// The lane that messages of `stream` go to.
    pub(crate) fn lane_of(&self, stream: &str) -> LaneId {
        self.routes.get(stream).copied().unwrap_or(DEFAULT)
    }

    /// The lane of `stream`, if it has its own.
    pub(crate) fn route_of(&self, stream: &str) -> Option<LaneId> {
        self.routes.get(stream).copied()
    }

    /// Queues `msg` in its stream's lane; returns the lane.
    pub(crate) fn push(&mut self, class: Priority, msg: M) -> LaneId {
        let lane = self.lane_of(msg.stream());
        self.lanes
            .get_mut(&lane)
            .expect("a routed lane exists")
            .push(class, msg);
        lane
    }

    /// The next message of `lane`, by the rules above.
    pub(crate) fn pop(&mut self, lane: LaneId) -> Option<M> {
        self.lanes.get_mut(&lane)?.pop()
    }

    /// Messages waiting in `lane`.
    pub(crate) fn len(&self, lane: LaneId) -> usize {
        self.lanes.get(&lane).map_or(0, |l| l.len)
    }

    /// Messages waiting in every lane.
    pub(crate) fn total_len(&self) -> usize {
        self.lanes.values().map(|l| l.len).sum()
    }

    /// Gives `stream` a lane of its own (the existing one if it has one); the messages of the
    /// stream already waiting in the default lane move there, in order.
    pub(crate) fn route(&mut self, stream: &Arc<str>) -> LaneId {
        if let Some(&lane) = self.routes.get(stream) {
            return lane;
        }
        let id = self.next;
        self.next += 1;
        let mut lane = Lane::default();
        let default = self.lanes.get_mut(&DEFAULT).expect("the default lane");
        for (c, class) in default.classes.iter_mut().enumerate() {
            for m in class.take_stream(stream) {
                default.len -= 1;
                lane.push(Priority::from_index(c), m);
            }
        }
        self.lanes.insert(id, lane);
        self.routes.insert(stream.clone(), id);
        id
    }

    /// Sends `stream` back to the default lane, with the messages waiting in its own.
    pub(crate) fn unroute(&mut self, stream: &str) {
        let Some(id) = self.routes.remove(stream) else {
            return;
        };
        let Some(mut lane) = self.lanes.remove(&id) else {
            return;
        };
        let default = self.lanes.get_mut(&DEFAULT).expect("the default lane");
        for (c, class) in lane.classes.iter_mut().enumerate() {
            for m in class.take_all() {
                default.push(Priority::from_index(c), m);
            }
        }
    }
}

#[cfg(test)]
mod tests;
