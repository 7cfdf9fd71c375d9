//! Per-peer streams: which names are prepared, the stream key, and one writer per name.
//!
//! Each libp2p stream gets a reader task, and the stream a node writes on for a (peer, name)
//! also gets a writer task that alone owns the write half. Senders only queue messages for the
//! writer, so frames of concurrent senders never interleave, and reading goes on while a write
//! waits for the muxer.

mod intake;
mod link;
mod reader;
mod writer;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::AsyncReadExt as _;
use futures::io::WriteHalf;
use libp2p::{PeerId, Stream};
use tokio::sync::{OnceCell, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::behaviour::streams::OpenError;
use crate::crypto::Cipher;
use crate::error::Error;
use crate::flow::Gate;
use crate::shared::{Shared, lock};
use crate::stats::{PeerEntry, StreamCounters};
use crate::telemetry as m;
use crate::wire::{self, HANDSHAKE};

use link::{Copies, Link, Spare};

/// Most streams read at once for one (peer, name). Two arise when both sides open the same
/// name at once; more is a peer misbehaving.
const MAX_STREAMS_PER_NAME: usize = 4;

/// A message for a writer task.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) data: Bytes,
    /// Told once the message is written (`send_written`); dropped unsent if it never is.
    pub(crate) ack: Option<oneshot::Sender<()>>,
    /// Written once already (a copy to write again after the peer reset its stream): counted
    /// in `messages_written`, and its sender was told.
    pub(crate) written: bool,
}

impl Outgoing {
    pub(crate) fn new(data: Bytes) -> Self {
        Self {
            data,
            ack: None,
            written: false,
        }
    }
}

/// The write side of one (peer, name): a bounded queue to its writer task, behind the
/// stream's flow-control gate (when backpressure is enabled).
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    pub(crate) tx: mpsc::Sender<Outgoing>,
    pub(crate) gate: Option<Arc<Gate>>,
}

impl Writer {
    /// Takes a place at the flow-control gate if one is free now (always true without a
    /// gate), and counts it.
    pub(crate) fn try_place(&self, stats: &StreamCounters) -> bool {
        match &self.gate {
            None => true,
            Some(gate) => match gate.try_acquire() {
                None => false,
                Some(engaged) => {
                    stats.placed(engaged);
                    true
                }
            },
        }
    }

    /// Takes a place, waiting while the gate is closed (cancel-safe), and counts the wait.
    pub(crate) async fn place(&self, stats: &StreamCounters) {
        if self.try_place(stats) {
            return;
        }
        if let Some(gate) = &self.gate {
            let waiting = tokio::time::Instant::now();
            let acquired = gate.acquire().await;
            stats.backpressure_wait(waiting.elapsed());
            stats.placed(acquired.engaged);
        }
    }

    /// Gives back a place that a message did not use after all.
    pub(crate) fn unplace(&self, stats: &StreamCounters) {
        if let Some(gate) = &self.gate {
            gate.release(1);
            stats.pending(-1);
        }
    }
}

/// The writer of one (peer, name), set once by whoever gets a stream first: the first sender
/// (opening an outbound stream) or the driver (adopting an inbound one).
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) cell: OnceCell<Writer>,
    /// The statistics of (peer, name); they outlive the slot.
    pub(crate) stats: Arc<StreamCounters>,
}

impl Slot {
    fn new(stats: Arc<StreamCounters>) -> Self {
        Self {
            cell: OnceCell::new(),
            stats,
        }
    }
}

struct Session {
    /// Distinguishes this session from earlier ones of the same peer.
    id: u64,
    stats: Arc<PeerEntry>,
    token: CancellationToken,
    cipher: Option<Arc<Cipher>>,
    prepared: HashSet<Arc<str>>,
    slots: HashMap<Arc<str>, Arc<Slot>>,
    readers: HashMap<Arc<str>, usize>,
    /// Inbound streams read but not written on, per name (see `link`).
    spares: HashMap<Arc<str>, Vec<Spare>>,
    /// Messages handed over by a writer whose stream the peer reset, for the next writer of
    /// the name to write first.
    stash: HashMap<Arc<str>, VecDeque<Outgoing>>,
    /// The peer says (identify) it is glueberry-rs, which never resets a stream it is sent.
    never_resets: bool,
}

/// What a sender needs to reach the writer of a (peer, name).
pub(crate) struct Route {
    pub(crate) session: u64,
    pub(crate) slot: Arc<Slot>,
    pub(crate) name: Arc<str>,
    pub(crate) cipher: Option<Arc<Cipher>>,
    pub(crate) token: CancellationToken,
}

/// The sessions of every connected peer.
#[derive(Default)]
pub(crate) struct Sessions {
    inner: Mutex<HashMap<PeerId, Session, foldhash::fast::RandomState>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Set by shutdown: no new writers (sends fail, inbound streams are only read).
    draining: std::sync::atomic::AtomicBool,
    /// Rate quotas per (peer, name) with one, shared by the name's streams and kept across
    /// the peer's sessions until the bucket is full again (a reconnection forgives nothing).
    quotas: Mutex<HashMap<(PeerId, Arc<str>), SharedBucket>>,
}

/// A quota bucket shared by the readers of one (peer, name).
type SharedBucket = Arc<Mutex<crate::quota::Bucket>>;

impl Sessions {
    /// The driver saw the first connection to `peer`.
    pub(crate) fn open(&self, peer: PeerId, parent: &CancellationToken, stats: Arc<PeerEntry>) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.inner).entry(peer).or_insert_with(|| Session {
            id,
            stats,
            token: parent.child_token(),
            cipher: None,
            prepared: HashSet::new(),
            slots: HashMap::new(),
            readers: HashMap::new(),
            spares: HashMap::new(),
            stash: HashMap::new(),
            never_resets: false,
        });
    }

    /// The driver saw the last connection to `peer` close: every stream task of the peer ends
    /// and its key is dropped.
    pub(crate) fn close(&self, peer: &PeerId) {
        if let Some(s) = lock(&self.inner).remove(peer) {
            s.token.cancel();
            // Handed over for a next writer that will not come.
            for (name, msgs) in s.stash {
                if !msgs.is_empty() {
                    tracing::warn!(%peer, stream = &*name, lost = msgs.len(), "messages lost: the peer reset the stream and left");
                    s.stats.stream(&name).lost_outgoing(&msgs);
                }
            }
        }
    }

    /// The quota bucket of (peer, name), made on first use.
    pub(crate) fn quota(
        &self,
        peer: &PeerId,
        name: &Arc<str>,
        quota: crate::quota::Quota,
    ) -> SharedBucket {
        lock(&self.quotas)
            .entry((*peer, name.clone()))
            .or_insert_with(|| {
                Arc::new(Mutex::new(crate::quota::Bucket::new(
                    quota,
                    std::time::Instant::now(),
                )))
            })
            .clone()
    }

    /// Forgets the quota buckets no reader holds that are full again and not over.
    pub(crate) fn forget_idle_quotas(&self, now: std::time::Instant) {
        lock(&self.quotas).retain(|_, b| Arc::strong_count(b) > 1 || !lock(b).is_idle(now));
    }

    /// `peer` is a glueberry-rs node (it never resets a stream it is sent).
    pub(crate) fn never_resets(&self, peer: &PeerId) {
        if let Some(s) = lock(&self.inner).get_mut(peer) {
            s.never_resets = true;
        }
    }

    /// Whether `peer` said it is a glueberry-rs node.
    fn peer_never_resets(&self, peer: &PeerId) -> bool {
        lock(&self.inner).get(peer).is_some_and(|s| s.never_resets)
    }

    /// Installs the stream key and allows `names` for the peer. Returns false if the peer has
    /// no session (not connected).
    pub(crate) fn prepare(&self, peer: &PeerId, cipher: Arc<Cipher>, names: &[String]) -> bool {
        let mut map = lock(&self.inner);
        let Some(s) = map.get_mut(peer) else {
            return false;
        };
        s.cipher = Some(cipher);
        s.prepared
            .extend(names.iter().map(|n| Arc::<str>::from(n.as_str())));
        true
    }

    /// Forgets every writer of `peer`: each closes its stream once its queue drains, and the
    /// next send opens a new stream (on the connection the driver keeps).
    pub(crate) fn drop_writers(&self, peer: &PeerId) {
        if let Some(s) = lock(&self.inner).get_mut(peer) {
            s.slots.clear();
        }
    }

    /// Forgets every writer of every peer (shutdown): each writes what is queued, closes its
    /// stream and ends.
    pub(crate) fn drop_all_writers(&self) {
        let mut map = lock(&self.inner);
        self.draining
            .store(true, std::sync::atomic::Ordering::Release);
        for (peer, s) in map.iter_mut() {
            s.slots.clear();
            // No writer starts any more to write what was handed over.
            for (name, msgs) in s.stash.drain() {
                if !msgs.is_empty() {
                    tracing::warn!(%peer, stream = &*name, lost = msgs.len(), "messages lost: the peer reset the stream and the node is shutting down");
                    s.stats.stream(&name).lost_outgoing(&msgs);
                }
            }
        }
    }

    /// Forgets the writer of `name` so that its stream is closed once its queue drains.
    pub(crate) fn drop_writer(&self, peer: &PeerId, name: &str) {
        if let Some(s) = lock(&self.inner).get_mut(peer) {
            s.slots.remove(name);
        }
    }

    /// The flow-control state of every open send queue, ordered by peer and stream.
    pub(crate) fn flows(&self) -> Vec<crate::health::FlowState> {
        let mut flows = Vec::new();
        for (peer, s) in lock(&self.inner).iter() {
            for (name, slot) in &s.slots {
                if let Some(gate) = slot.cell.get().and_then(|w| w.gate.as_ref()) {
                    let c = gate.snapshot();
                    flows.push(crate::health::FlowState {
                        peer: *peer,
                        stream: name.to_string(),
                        queued: c.queued(),
                        peak: c.peak(),
                        blocked: c.is_blocked(),
                    });
                }
            }
        }
        flows.sort_by(|a, b| (a.peer, &a.stream).cmp(&(b.peer, &b.stream)));
        flows
    }

    /// The slot of (peer, name) if a send can use it right away: the node is not draining, the
    /// name is prepared (or is the handshake) and the slot exists. Unlike [`route`](Self::route)
    /// it creates nothing and clones only the slot: the hot path of `send`.
    pub(crate) fn ready_slot(&self, peer: &PeerId, name: &str) -> Option<Arc<Slot>> {
        let map = lock(&self.inner);
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let s = map.get(peer)?;
        if name != HANDSHAKE && (s.cipher.is_none() || !s.prepared.contains(name)) {
            return None;
        }
        s.slots.get(name).cloned()
    }

    /// The route for sending to `peer` on `name`, creating an empty slot if needed.
    pub(crate) fn route(&self, peer: &PeerId, name: &str) -> Result<Route, Error> {
        let mut map = lock(&self.inner);
        if self.draining.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let s = map.get_mut(peer).ok_or(Error::NotConnected(*peer))?;
        let cipher = if name == HANDSHAKE {
            None
        } else {
            let prepared = s.prepared.get(name).filter(|_| s.cipher.is_some());
            if prepared.is_none() {
                return Err(Error::StreamNotPrepared {
                    peer: *peer,
                    stream: name.to_owned(),
                });
            }
            s.cipher.clone()
        };
        let name: Arc<str> = s.prepared.get(name).cloned().unwrap_or_else(|| name.into());
        let slot = match s.slots.get(&name) {
            Some(slot) => slot.clone(),
            None => {
                let slot = Arc::new(Slot::new(s.stats.stream(&name)));
                s.slots.insert(name.clone(), slot.clone());
                slot
            }
        };
        Ok(Route {
            session: s.id,
            slot,
            name,
            cipher,
            token: s.token.clone(),
        })
    }

    /// Removes `slot` if it is still the writer of (peer, name): its stream is gone, and the
    /// next send opens a new one.
    pub(crate) fn invalidate(&self, peer: &PeerId, name: &str, slot: &Slot) {
        if let Some(s) = lock(&self.inner).get_mut(peer)
            && s.slots
                .get(name)
                .is_some_and(|cur| std::ptr::eq(&**cur, slot))
        {
            s.slots.remove(name);
        }
    }

    fn reader_ended(&self, peer: &PeerId, name: &str, session: u64) {
        if let Some(s) = lock(&self.inner).get_mut(peer)
            && s.id == session
            && let Some(n) = s.readers.get_mut(name)
        {
            *n -= 1;
            if *n == 0 {
                s.readers.remove(name);
            }
        }
    }
}

/// Why an inbound stream was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotConnected,
    NotPrepared,
    TooMany,
}

/// An inbound stream of `peer` was refused after negotiation: counted in the metric and the
/// peer's `refused_streams`.
pub(crate) fn count_refused(shared: &Shared, peer: &PeerId) {
    metrics::counter!(m::INBOUND_STREAMS_REFUSED).increment(1);
    if let Some(e) = shared.stats.get(peer) {
        e.streams_refused(1);
    }
}

/// Takes an inbound stream from the driver: starts its reader and, if (peer, name) has no
/// writer yet, makes it the writer too (so both sides use one stream, as in Go).
///
/// Gives the stream back if the peer has no session (not connected, as far as the driver has
/// seen); the driver settles those.
pub(crate) fn accept_inbound(
    shared: &Arc<Shared>,
    peer: PeerId,
    name: &str,
    stream: Stream,
) -> Option<Stream> {
    let outcome = {
        let mut map = lock(&shared.sessions.inner);
        match map.get_mut(&peer) {
            None => Err(Refusal::NotConnected),
            Some(s) => {
                let cipher = if name == HANDSHAKE {
                    Ok(None)
                } else {
                    match (s.prepared.contains(name), &s.cipher) {
                        (true, Some(c)) => Ok(Some(c.clone())),
                        _ => Err(Refusal::NotPrepared),
                    }
                };
                match cipher {
                    Err(r) => Err(r),
                    Ok(_) if s.readers.get(name).copied().unwrap_or(0) >= MAX_STREAMS_PER_NAME => {
                        Err(Refusal::TooMany)
                    }
                    Ok(cipher) => {
                        let name: Arc<str> =
                            s.prepared.get(name).cloned().unwrap_or_else(|| name.into());
                        *s.readers.entry(name.clone()).or_default() += 1;
                        let stats = &s.stats;
                        let slot = s
                            .slots
                            .entry(name.clone())
                            .or_insert_with(|| Arc::new(Slot::new(stats.stream(&name))))
                            .clone();
                        Ok((name, cipher, s.token.clone(), slot, s.id))
                    }
                }
            }
        }
    };
    match outcome {
        Err(Refusal::NotConnected) => return Some(stream),
        Err(refusal) => {
            tracing::debug!(%peer, stream = name, ?refusal, "inbound stream refused");
            count_refused(shared, &peer);
            // Dropping the stream resets it.
        }
        Ok((name, cipher, token, slot, session)) => {
            let ids = Ids { peer, session };
            spawn(shared, ids, name, cipher, stream, token, &slot, false);
        }
    }
    None
}

/// Opens an outbound stream for (peer, name) and starts its reader and writer.
pub(crate) async fn open(
    shared: &Arc<Shared>,
    peer: PeerId,
    route: &Route,
) -> Result<Writer, Error> {
    if route.token.is_cancelled() {
        return Err(Error::NotConnected(peer));
    }
    // An inbound stream of the name that we only read (the peer's own, under Go's rule): write
    // on it rather than open a second one, which such a peer would reset.
    if let Some(spare) = shared
        .sessions
        .take_spare(&peer, route.session, &route.name)
    {
        let ids = Ids {
            peer,
            session: route.session,
        };
        tracing::debug!(%peer, stream = &*route.name, "writing on the peer's stream");
        let (w, rx, gate) = queue(shared);
        run_writer(
            shared,
            ids,
            route.name.clone(),
            route.cipher.clone(),
            spare.write,
            spare.link,
            &route.slot,
            rx,
            gate,
            Copies::settled(),
        );
        return Ok(w);
    }
    let err = |reason: String| Error::OpenStream {
        peer,
        stream: route.name.to_string(),
        reason,
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    let request = crate::shared::OpenStream {
        peer,
        protocol: wire::protocol_id(&route.name),
        reply,
    };
    let opened = tokio::select! {
        _ = route.token.cancelled() => return Err(Error::NotConnected(peer)),
        r = tokio::time::timeout(shared.config.dial_timeout, async {
            shared.opens.send(request).await.map_err(|_| OpenError::NotConnected)?;
            answer.await.unwrap_or(Err(OpenError::NotConnected))
        }) => r,
    };
    let stream = match opened {
        Err(_) => return Err(err("timed out".into())),
        Ok(Err(OpenError::NotConnected)) => return Err(Error::NotConnected(peer)),
        Ok(Err(e)) => return Err(err(e.to_string())),
        Ok(Ok(s)) => s,
    };
    {
        let mut map = lock(&shared.sessions.inner);
        match map.get_mut(&peer) {
            // The session the route belongs to must still be the live one.
            Some(s) if s.id == route.session && !route.token.is_cancelled() => {
                *s.readers.entry(route.name.clone()).or_default() += 1
            }
            _ => return Err(Error::NotConnected(peer)),
        }
    }
    let ids = Ids {
        peer,
        session: route.session,
    };
    spawn(
        shared,
        ids,
        route.name.clone(),
        route.cipher.clone(),
        stream,
        route.token.clone(),
        &route.slot,
        true,
    )
    .ok_or_else(|| err("stream closed at once".into()))
}

/// Which peer and which of its sessions a stream task belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    pub(crate) peer: PeerId,
    pub(crate) session: u64,
}

/// Starts the tasks of one stream. An `opened` stream is always the writer of `slot` (the
/// opener sets the slot); an inbound one becomes the writer only if the slot is still empty,
/// and is kept as a spare otherwise. Returns the writer, if this stream has one.
///
/// The tasks hold the slot weakly: once the session forgets the slot and the senders are done
/// with it, the writer's queue closes and the writer closes the stream after draining.
#[allow(clippy::too_many_arguments)]
fn spawn(
    shared: &Arc<Shared>,
    ids: Ids,
    name: Arc<str>,
    cipher: Option<Arc<Cipher>>,
    stream: Stream,
    session: CancellationToken,
    slot: &Arc<Slot>,
    opened: bool,
) -> Option<Writer> {
    let link = Arc::new(Link::new(session.child_token()));
    let (read, write) = stream.split();
    let (w, rx, gate) = queue(shared);
    // While shutting down, an inbound stream is only read: no writer may start that shutdown
    // would then wait for.
    let draining = shared
        .sessions
        .draining
        .load(std::sync::atomic::Ordering::Acquire);
    let is_writer = opened || (!draining && slot.cell.set(w.clone()).is_ok());
    tracing::debug!(peer = %ids.peer, stream = &*name, opened, is_writer, "stream started");
    let stats = slot.stats.clone();
    stats.stream_opened();
    let spare_id = if is_writer {
        // A stream we opened may be reset by a peer following Go's rule: keep copies until it
        // settles. One the peer opened is its own, which it never resets.
        let copies = if opened && !shared.sessions.peer_never_resets(&ids.peer) {
            Copies::unsettled(std::time::Instant::now())
        } else {
            Copies::settled()
        };
        run_writer(
            shared,
            ids,
            name.clone(),
            cipher.clone(),
            write,
            link.clone(),
            slot,
            rx,
            gate,
            copies,
        );
        None
    } else {
        let id = shared
            .sessions
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let spare = Spare {
            id,
            write,
            link: link.clone(),
        };
        match shared
            .sessions
            .add_spare(&ids.peer, ids.session, &name, spare)
        {
            None => Some(id),
            // A writer of the name handed its messages over meanwhile, with nowhere to move:
            // this stream (the peer's own) writes them.
            Some((slot, spare)) => {
                let (w, rx, gate) = queue(shared);
                let _ = slot.cell.set(w);
                run_writer(
                    shared,
                    ids,
                    name.clone(),
                    cipher.clone(),
                    spare.write,
                    spare.link,
                    &slot,
                    rx,
                    gate,
                    Copies::settled(),
                );
                None
            }
        }
    };
    let span = tracing::debug_span!("glueberry.receive", peer = %ids.peer, stream = &*name);
    shared.tracker.spawn(
        reader::run(
            shared.clone(),
            ids,
            name,
            cipher,
            read,
            stats,
            link,
            spare_id,
        )
        .instrument(span),
    );
    is_writer.then_some(w)
}

/// A writer's queue (`high_watermark` messages) and its flow-control gate: the senders' side,
/// and the writer task's.
fn queue(shared: &Shared) -> (Writer, mpsc::Receiver<Outgoing>, Option<Arc<Gate>>) {
    let (tx, rx) = mpsc::channel(shared.config.high_watermark);
    let gate = shared.config.backpressure.then(|| {
        Arc::new(Gate::new(
            shared.config.high_watermark,
            shared.config.low_watermark,
        ))
    });
    let w = Writer {
        tx,
        gate: gate.clone(),
    };
    (w, rx, gate)
}

/// Spawns the writer task of `slot` on `write`.
#[allow(clippy::too_many_arguments)]
fn run_writer(
    shared: &Arc<Shared>,
    ids: Ids,
    name: Arc<str>,
    cipher: Option<Arc<Cipher>>,
    write: WriteHalf<Stream>,
    link: Arc<Link>,
    slot: &Arc<Slot>,
    rx: mpsc::Receiver<Outgoing>,
    gate: Option<Arc<Gate>>,
    copies: Copies,
) {
    *lock(&link.writer_of) = Some(Arc::downgrade(slot));
    let stash = shared.sessions.take_stash(&ids.peer, ids.session, &name);
    let span = tracing::debug_span!("glueberry.write", peer = %ids.peer, stream = &*name);
    shared.writers.spawn(
        writer::run(writer::Task {
            shared: shared.clone(),
            ids,
            name,
            cipher,
            write,
            link,
            rx,
            gate,
            stats: slot.stats.clone(),
            slot: Arc::downgrade(slot),
            copies,
            stash,
            end_seen: false,
        })
        .instrument(span),
    );
}
