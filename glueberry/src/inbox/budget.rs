//! Byte budgets: how much peers may make the node hold, sans-IO.
//!
//! What a peer makes the node hold is charged to it before it is read: the rest of a frame
//! whose header has arrived (reserved in one piece, so a partial frame never waits on the
//! budget half-read), a little read-ahead at frame boundaries, and a fixed overhead per
//! message. The charge is released when the message is taken by the application (or dropped,
//! counted). Nothing is ever charged past a limit: a charge that does not fit waits.
//!
//! The limits, checked together on every charge:
//! - the peer's own: `stranger` until it finished the handshake, `peer` after;
//! - all strangers together: `strangers`;
//! - the node's `total`, of which a quarter is kept back for *urgent* streams (the handshake
//!   stream and streams given [`Priority::High`](crate::Priority)) and for peers holding less
//!   than a `floor` (one maximum message and a read-ahead): a few peers with deep backlogs
//!   cannot lock a quiet peer out;
//! - per peer, a quarter of its budget is likewise kept back for its urgent streams, so a bulk
//!   stream the application reads slowly never stops a vote from being read;
//! - a count of messages per peer (`messages`), since small messages cost more than their
//!   bytes;
//! - a read-ahead, which may start new frames, may not use the last `finish` bytes of any of
//!   these limits: they are kept for charging the rest of frames already started. Frames left
//!   half done can then never hold a budget whole, and a started frame can always be finished
//!   (or reset at its deadline), so readers never wait on each other in a circle.

use std::collections::HashMap;
use std::hash::Hash;

/// The limits, all in bytes but `messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A peer that finished the handshake.
    pub(crate) peer: usize,
    /// A peer that has not (yet) finished the handshake.
    pub(crate) stranger: usize,
    /// All strangers together.
    pub(crate) strangers: usize,
    /// Every peer together.
    pub(crate) total: usize,
    /// What a peer may always use of the total's reserve (one maximum message and a
    /// read-ahead).
    pub(crate) floor: usize,
    /// Messages queued per peer, counted apart from their bytes.
    pub(crate) messages: usize,
    /// What a read-ahead leaves of each limit for finishing started frames: the largest frame
    /// a stranger (the handshake stream's) and a handshaked peer may send, with a read-ahead
    /// and a message's overhead.
    pub(crate) finish_stranger: usize,
    pub(crate) finish_peer: usize,
}

/// Whether a peer finished the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stranger,
    Trusted,
}

/// Which limit stopped a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// The peer's own budget (or its message count): only its own releases help.
    Peer,
    /// A limit shared with other peers.
    Shared,
}

#[derive(Debug, Clone, Copy)]
struct Account {
    held: usize,
    messages: usize,
    kind: Kind,
    /// Trusted, but no longer connected: forgotten once it holds nothing.
    leaving: bool,
}

/// High-water marks and totals, for stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) held: usize,
    pub(crate) strangers_held: usize,
    pub(crate) peak: usize,
    pub(crate) strangers_peak: usize,
    /// The most one stranger held.
    pub(crate) stranger_peak: usize,
    /// The most one handshaked peer held.
    pub(crate) peer_peak: usize,
}

/// What a peer may charge now.
#[derive(Debug, Clone, Copy)]
struct Room {
    /// Under its own limit.
    own: usize,
    /// Under the shared limits (strangers', total).
    shared: usize,
}

impl Room {
    fn fits(self) -> usize {
        self.own.min(self.shared)
    }

    /// What to wait for to charge `n`: the peer's own releases only help when the shared limits
    /// have room for it; otherwise any release may (and a peer's own release wakes those too).
    fn blocked(self, n: usize) -> Blocked {
        if self.shared >= n {
            Blocked::Peer
        } else {
            Blocked::Shared
        }
    }
}

/// Every peer's account. `K` is the peer's id.
#[derive(Debug)]
pub(crate) struct Budgets<K> {
    limits: Limits,
    peers: HashMap<K, Account>,
    marks: Marks,
    /// Shutdown: charges are no longer limited (reading goes on to the streams' ends).
    unlimited: bool,
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            peers: HashMap::new(),
            marks: Marks::default(),
            unlimited: false,
        }
    }

    pub(crate) fn marks(&self) -> Marks {
        self.marks
    }

    /// What `peer` holds now, in bytes.
    #[cfg(test)]
    pub(crate) fn held(&self, peer: &K) -> usize {
        self.peers.get(peer).map_or(0, |a| a.held)
    }

    /// From now on charges are not limited (shutdown).
    pub(crate) fn set_unlimited(&mut self) {
        self.unlimited = true;
    }

    /// Whether `peer` is handshaked (an unknown peer is a stranger).
    pub(crate) fn kind(&self, peer: &K) -> Kind {
        self.account(peer).kind
    }

    pub(crate) fn is_unlimited(&self) -> bool {
        self.unlimited
    }

    /// Whether `peer` holds more than its own limit in bytes or messages (possible only after
    /// a change of kind or while unlimited).
    pub(crate) fn over(&self, peer: &K) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|a| a.held > self.own_limit(a.kind) || a.messages > self.limits.messages)
    }

    fn own_limit(&self, kind: Kind) -> usize {
        match kind {
            Kind::Stranger => self.limits.stranger,
            Kind::Trusted => self.limits.peer,
        }
    }

    /// The peer finished the handshake (`Trusted`) or no longer has (`Stranger`, the default
    /// of a peer never seen).
    pub(crate) fn set_kind(&mut self, peer: &K, kind: Kind) {
        match self.peers.get_mut(peer) {
            // A handshaked peer that leaves keeps its budget for what it already made the node
            // hold (it would otherwise fill the strangers' share); it is forgotten once that is
            // taken, and comes back as a stranger.
            Some(a) if a.kind == Kind::Trusted && kind == Kind::Stranger && a.held > 0 => {
                a.leaving = true;
            }
            Some(a) if a.kind != kind => {
                a.leaving = false;
                match kind {
                    Kind::Stranger => self.marks.strangers_held += a.held,
                    Kind::Trusted => self.marks.strangers_held -= a.held,
                }
                a.kind = kind;
                if a.kind == Kind::Stranger && a.held == 0 && a.messages == 0 {
                    self.peers.remove(peer);
                }
            }
            Some(a) => a.leaving = false,
            None if kind == Kind::Trusted => {
                self.peers.insert(
                    peer.clone(),
                    Account {
                        held: 0,
                        messages: 0,
                        kind,
                        leaving: false,
                    },
                );
            }
            None => {}
        }
    }

    /// Bytes `peer` may charge now under its own limits and under the shared ones. A read-ahead
    /// (`ahead`) leaves each limit's last `finish` bytes.
    fn room(&self, peer: &K, urgent: bool, ahead: bool) -> Room {
        if self.unlimited {
            return Room {
                own: usize::MAX,
                shared: usize::MAX,
            };
        }
        let a = self.account(peer);
        let keep = match (ahead, a.kind) {
            (false, _) => 0,
            (true, Kind::Stranger) => self.limits.finish_stranger,
            (true, Kind::Trusted) => self.limits.finish_peer,
        };
        let own = self.own_limit(a.kind);
        let own = if urgent { own } else { own - own / 4 };
        let peer_room = own.saturating_sub(keep).saturating_sub(a.held);
        let hard = self
            .limits
            .total
            .saturating_sub(keep)
            .saturating_sub(self.marks.held);
        let soft = (self.limits.total - self.limits.total / 4)
            .saturating_sub(keep)
            .saturating_sub(self.marks.held);
        let mut shared_room = if urgent {
            hard
        } else {
            soft.max(hard.min(self.limits.floor.saturating_sub(a.held)))
        };
        if a.kind == Kind::Stranger {
            shared_room = shared_room.min(
                self.limits
                    .strangers
                    .saturating_sub(keep)
                    .saturating_sub(self.marks.strangers_held),
            );
        }
        Room {
            own: peer_room,
            shared: shared_room,
        }
    }

    fn account(&self, peer: &K) -> Account {
        self.peers.get(peer).copied().unwrap_or(Account {
            held: 0,
            messages: 0,
            kind: Kind::Stranger,
            leaving: false,
        })
    }

    /// Charges exactly `n` bytes, or nothing.
    pub(crate) fn charge_exact(&mut self, peer: &K, n: usize, urgent: bool) -> Result<(), Blocked> {
        let room = self.room(peer, urgent, false);
        if room.fits() < n {
            return Err(room.blocked(n));
        }
        self.add(peer, n, 0);
        Ok(())
    }

    /// Charges between 1 and `max` bytes of read-ahead: as many as fit, leaving what started
    /// frames may need.
    pub(crate) fn charge_up_to(
        &mut self,
        peer: &K,
        max: usize,
        urgent: bool,
    ) -> Result<usize, Blocked> {
        let room = self.room(peer, urgent, true);
        let n = room.fits().min(max);
        if n == 0 {
            return Err(room.blocked(1));
        }
        self.add(peer, n, 0);
        Ok(n)
    }

    /// Charges between 1 and `max` messages of `size` bytes each (the per-message overhead):
    /// as many as fit in bytes and in the count.
    pub(crate) fn charge_messages(
        &mut self,
        peer: &K,
        max: usize,
        size: usize,
        urgent: bool,
    ) -> Result<usize, Blocked> {
        let room = self.room(peer, urgent, false);
        let by_count = if self.unlimited {
            max
        } else {
            self.limits
                .messages
                .saturating_sub(self.account(peer).messages)
        };
        let n = max.min(room.fits() / size.max(1)).min(by_count);
        if n == 0 {
            // Only the peer's own releases help if the shared limits have room for one.
            return Err(if room.shared >= size {
                Blocked::Peer
            } else {
                Blocked::Shared
            });
        }
        self.add(peer, n * size, n);
        Ok(n)
    }

    fn add(&mut self, peer: &K, bytes: usize, messages: usize) {
        let a = self.peers.entry(peer.clone()).or_insert(Account {
            held: 0,
            messages: 0,
            kind: Kind::Stranger,
            leaving: false,
        });
        a.held += bytes;
        a.messages += messages;
        let (held, kind) = (a.held, a.kind);
        let m = &mut self.marks;
        m.held += bytes;
        m.peak = m.peak.max(m.held);
        match kind {
            Kind::Stranger => {
                m.strangers_held += bytes;
                m.strangers_peak = m.strangers_peak.max(m.strangers_held);
                m.stranger_peak = m.stranger_peak.max(held);
            }
            Kind::Trusted => m.peer_peak = m.peer_peak.max(held),
        }
    }

    /// Gives back `bytes` and `messages` charged to `peer`.
    pub(crate) fn release(&mut self, peer: &K, bytes: usize, messages: usize) {
        let Some(a) = self.peers.get_mut(peer) else {
            debug_assert!(bytes == 0 && messages == 0, "release of an unknown peer");
            return;
        };
        debug_assert!(
            a.held >= bytes && a.messages >= messages,
            "release past charge"
        );
        let bytes = bytes.min(a.held);
        a.held -= bytes;
        a.messages -= messages.min(a.messages);
        self.marks.held -= bytes;
        if a.kind == Kind::Stranger {
            self.marks.strangers_held -= bytes;
        }
        if (a.kind == Kind::Stranger || a.leaving) && a.held == 0 && a.messages == 0 {
            self.peers.remove(peer);
        }
    }
}

#[cfg(test)]
mod tests;
