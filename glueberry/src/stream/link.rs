//! What a stream's reader and its writer share, and the streams a writer can move onto.
//!
//! Under Go Glueberry's stream rule a peer keeps its own stream of a name and resets any second
//! inbound one, so when both sides open a name at once the peer resets ours. The node then
//! moves its writer onto the peer's stream (a *spare*: an inbound stream of the name that the
//! node reads but does not write on) and writes again what the peer could not have read; if the
//! peer's stream has not arrived yet, what was written and what is queued is *handed over* to the
//! session, and the next writer of the name writes it first (docs/protocol.md, "Streams").

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

use futures::io::WriteHalf;
use libp2p::{PeerId, Stream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Outgoing, Sessions, Slot};
use crate::shared::lock;

/// How a stream's read side ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The peer closed its side cleanly.
    Eof,
    /// Reading failed: the peer reset the stream (or the connection went).
    Reset,
    /// This node ended it (a framing error, the session or the node going).
    Local,
}

/// Shared by one stream's reader and whoever writes on it.
#[derive(Debug)]
pub(crate) struct Link {
    /// The stream's token: cancelling it ends both tasks.
    pub(crate) token: CancellationToken,
    /// Set once by the reader when it ends.
    pub(crate) ended: watch::Sender<Option<Ended>>,
    /// The slot this stream writes for, once it does: its reader invalidates it when the peer
    /// closes its side.
    pub(crate) writer_of: Mutex<Option<Weak<Slot>>>,
}

impl Link {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Self {
            token,
            ended: watch::channel(None).0,
            writer_of: Mutex::new(None),
        }
    }

    /// Whether the read side has ended.
    pub(crate) fn has_ended(&self) -> bool {
        self.ended.borrow().is_some()
    }
}

/// An inbound stream the node reads but does not write on, with its write half kept open (a
/// Go peer drops a stream whose other side closes).
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) id: u64,
    pub(crate) write: WriteHalf<Stream>,
    pub(crate) link: Arc<Link>,
}

/// How long, and for how many bytes, a writer keeps copies of what it wrote on a stream it
/// opened, in case the peer resets it under Go's rule.
///
/// The peer resets at once, when the stream arrives, before reading anything: so within about a
/// round trip, and before the writer can have written more than the initial window the peer's
/// muxer granted (yamux: 256 KiB; QUIC in go-libp2p: 512 KiB), since a peer that does not read
/// grants no more. Past either bound the stream has *settled* and the copies are dropped.
pub(crate) const SETTLE_BYTES: usize = 1024 * 1024;
/// See [`SETTLE_BYTES`].
pub(crate) const SETTLE_TIME: Duration = Duration::from_secs(5);
/// The shortest wait for a reset before an unsettled stream is closed (`Copies::reset_window`).
pub(crate) const CLOSE_WAIT: Duration = Duration::from_millis(250);

/// The copies a writer keeps of what it wrote on a stream that has not settled.
#[derive(Debug, Default)]
pub(crate) struct Copies {
    msgs: VecDeque<Outgoing>,
    written: usize,
    /// When the stream was opened.
    opened: Option<Instant>,
    /// When the stream settles; `None` once it has (or for a stream the peer opened: the peer
    /// never resets its own).
    until: Option<Instant>,
}

impl Copies {
    /// For a stream this node opened at `now`.
    pub(crate) fn unsettled(now: Instant) -> Self {
        Self {
            until: Some(now + SETTLE_TIME),
            opened: Some(now),
            ..Self::default()
        }
    }

    /// For a stream the peer opened.
    pub(crate) fn settled() -> Self {
        Self::default()
    }

    /// When the copies go, if they have not yet.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.until
    }

    /// How long a writer whose senders are gone waits for a reset before closing an unsettled
    /// stream: a peer following Go's rule resets it as soon as it arrives, so within a few
    /// round trips of its opening (`rtt`, the last ping's; at least 250 ms, at most until the
    /// stream settles).
    pub(crate) fn reset_window(&self, rtt: Option<Duration>) -> Option<Instant> {
        let (until, opened) = (self.until?, self.opened?);
        let wait = rtt
            .map_or(CLOSE_WAIT, |r| r * 8)
            .clamp(CLOSE_WAIT, SETTLE_TIME);
        Some(until.min(opened + wait))
    }

    /// Keeps `m` (written, or whose write failed) while the stream has not settled; gives it
    /// back otherwise.
    pub(crate) fn keep(&mut self, m: Outgoing) -> Option<Outgoing> {
        if self.until.is_some() {
            self.msgs.push_back(m);
            None
        } else {
            Some(m)
        }
    }

    /// `n` more bytes were written at `now`.
    pub(crate) fn written(&mut self, n: usize, now: Instant) {
        self.written += n;
        if self.until.is_some_and(|t| now >= t) || self.written >= SETTLE_BYTES {
            self.settle();
        }
    }

    /// The stream has settled: nothing to keep.
    pub(crate) fn settle(&mut self) {
        self.until = None;
        self.msgs = VecDeque::new();
    }

    /// Takes the copies (the stream was reset): from now on nothing is kept.
    pub(crate) fn take(&mut self) -> VecDeque<Outgoing> {
        self.until = None;
        std::mem::take(&mut self.msgs)
    }

    /// Copies kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }
}

/// The spares and the hand-over of a session, by (peer, name).
impl Sessions {
    /// Keeps `spare` for (peer, name) while its session lasts (dropped otherwise). If a writer of
    /// the name handed messages over and no writer took them yet, the spare is to write them
    /// instead: a new slot is made the name's and returned with it.
    pub(super) fn add_spare(
        &self,
        peer: &PeerId,
        session: u64,
        name: &Arc<str>,
        spare: Spare,
    ) -> Option<(Arc<Slot>, Spare)> {
        let mut map = lock(&self.inner);
        let s = map.get_mut(peer).filter(|s| s.id == session)?;
        let waiting = s.stash.get(name).is_some_and(|m| !m.is_empty());
        let draining = self.draining.load(std::sync::atomic::Ordering::Acquire);
        if waiting && !draining && !s.slots.contains_key(name) {
            let slot = Arc::new(Slot::new(s.stats.stream(name)));
            s.slots.insert(name.clone(), slot.clone());
            return Some((slot, spare));
        }
        s.spares.entry(name.clone()).or_default().push(spare);
        None
    }

    /// Drops the spare `id` of (peer, name), if it is still one (its reader ended).
    pub(super) fn remove_spare(&self, peer: &PeerId, session: u64, name: &str, id: u64) {
        let removed = {
            let mut map = lock(&self.inner);
            let Some(s) = map.get_mut(peer).filter(|s| s.id == session) else {
                return;
            };
            let Some(list) = s.spares.get_mut(name) else {
                return;
            };
            let removed = list
                .iter()
                .position(|sp| sp.id == id)
                .map(|i| list.remove(i));
            if list.is_empty() {
                s.spares.remove(name);
            }
            removed
        };
        // Closed outside the lock.
        drop(removed);
    }

    /// A spare of (peer, name) to write on, the newest whose reader still runs.
    pub(super) fn take_spare(&self, peer: &PeerId, session: u64, name: &str) -> Option<Spare> {
        let mut map = lock(&self.inner);
        let s = map.get_mut(peer).filter(|s| s.id == session)?;
        live_spare(s, name)
    }

    /// What a writer handed over for (peer, name), to write first.
    pub(super) fn take_stash(&self, peer: &PeerId, session: u64, name: &str) -> VecDeque<Outgoing> {
        lock(&self.inner)
            .get_mut(peer)
            .filter(|s| s.id == session)
            .and_then(|s| s.stash.remove(name))
            .unwrap_or_default()
    }

    /// A writer whose stream the peer reset, with nowhere to move: in one step (under the
    /// lock, so that no new writer of the name starts in between), `slot` stops being the
    /// writer and `fill` moves what is to be written again, and what is still queued, into the
    /// session for the next writer of the name.
    ///
    /// With `or_spare`, a spare that came since the writer last looked is returned instead
    /// (`fill` does not run): a spare registered while the writer was deciding would otherwise
    /// sit beside a stash that no writer takes.
    pub(super) fn hand_over(
        &self,
        peer: &PeerId,
        session: u64,
        name: &Arc<str>,
        slot: &Slot,
        or_spare: bool,
        fill: impl FnOnce(&mut VecDeque<Outgoing>),
    ) -> HandOver {
        let mut map = lock(&self.inner);
        let Some(s) = map.get_mut(peer).filter(|s| s.id == session) else {
            return HandOver::Refused;
        };
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            // Shutting down: no writer would start to write them.
            return HandOver::Refused;
        }
        if or_spare && let Some(spare) = live_spare(s, name) {
            return HandOver::Spare(spare);
        }
        if s.slots
            .get(name)
            .is_some_and(|cur| std::ptr::eq(&**cur, slot))
        {
            s.slots.remove(name);
        }
        fill(s.stash.entry(name.clone()).or_default());
        HandOver::Kept
    }
}

/// What [`Sessions::hand_over`] did.
pub(super) enum HandOver {
    /// Kept for the next writer of the name.
    Kept,
    /// Nothing kept: the session is gone or the node is shutting down.
    Refused,
    /// A spare to move onto instead.
    Spare(Spare),
}

/// Takes the newest spare of `name` whose reader still runs; drops those that ended.
fn live_spare(s: &mut super::Session, name: &str) -> Option<Spare> {
    let list = s.spares.get_mut(name)?;
    let mut found = None;
    while let Some(sp) = list.pop() {
        if !sp.link.has_ended() {
            found = Some(sp);
            break;
        }
    }
    if list.is_empty() {
        s.spares.remove(name);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_kept_until_the_stream_settles_by_bytes_or_time() {
        let t0 = Instant::now();
        let mut c = Copies::unsettled(t0);
        let m = || Outgoing::new(vec![0u8; 300 * 1024].into());
        let len = 300 * 1024;
        for _ in 0..3 {
            assert!(c.keep(m()).is_none());
            c.written(len, t0);
        }
        assert_eq!(c.len(), 3);
        // The fourth write passes 1 MiB: the peer read (granted window), the stream settled.
        let _ = c.keep(m());
        c.written(len, t0);
        assert_eq!((c.len(), c.until()), (0, None));
        assert!(c.keep(m()).is_some(), "settled: nothing kept");
        assert_eq!(c.len(), 0);

        let mut c = Copies::unsettled(t0);
        let _ = c.keep(m());
        c.written(1, t0 + SETTLE_TIME);
        assert_eq!(c.len(), 0);

        let mut c = Copies::settled();
        let _ = c.keep(m());
        assert_eq!(c.take().len(), 0);

        let mut c = Copies::unsettled(t0);
        let _ = c.keep(m());
        assert_eq!(c.take().len(), 1);
        let _ = c.keep(m());
        assert_eq!(c.len(), 0, "after a reset nothing more is kept");
    }
}
