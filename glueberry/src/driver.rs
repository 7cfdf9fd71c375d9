//! The driver task: the one owner of the `Swarm`, of every peer's state machine and of their
//! timers.
//!
//! The node handle sends it [`Command`]s over a bounded channel and gets answers on oneshot
//! channels; the swarm sends it `SwarmEvent`s (inbound streams among them); senders ask it to
//! open streams. It never waits on anything else, so neither a slow subscriber nor a slow
//! reader can stall it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use futures::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionError, ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, ping};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::time::{DelayQueue, delay_queue};

use crate::admission::{self, Throttle};
use crate::behaviour::streams::{Inbound, OpenError};
use crate::behaviour::{Behaviour, BehaviourEvent, Built};
use crate::book::{self, Book};
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::event::{AdmissionCause, AdmissionEvent, ConnectionEvent, Event};
use crate::liveness::Liveness;
use crate::peer::{
    Change, DisconnectReason, Input, Machine, Output, Params, Refused, State, Timer,
};
use crate::persist::Snapshot;
use crate::shared::{OpenStream, PeerView, Shared, lock};
use crate::stats::Handshake;
use crate::stream;
use crate::telemetry as m;
use crate::transport::{pending, sever};
use crate::wire::{self, HANDSHAKE};

/// Capacity of the command channel from node handles to the driver.
pub(crate) const COMMAND_BUFFER: usize = 256;

/// Capacity of the channel of stream-open requests from senders to the driver.
pub(crate) const OPEN_BUFFER: usize = 256;

/// Longest time shutdown waits for connections and listeners to close cleanly.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

type Reply<T> = oneshot::Sender<Result<T>>;

/// What a node handle asks the driver.
pub(crate) enum Command {
    Start {
        reply: Reply<Vec<Multiaddr>>,
    },
    AddPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        metadata: Option<BTreeMap<String, String>>,
        reply: Reply<u64>,
    },
    RemovePeer {
        peer: PeerId,
        reply: Reply<u64>,
    },
    GetPeer {
        peer: PeerId,
        reply: Reply<Option<book::Entry>>,
    },
    ListPeers {
        reply: Reply<Vec<book::Entry>>,
    },
    Connect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    CancelReconnection {
        peer: PeerId,
        reply: Reply<()>,
    },
    Blacklist {
        peer: PeerId,
        blacklisted: bool,
        reply: Reply<u64>,
    },
    Prepare {
        peer: PeerId,
        public_key: [u8; 32],
        cipher: Arc<Cipher>,
        names: Vec<String>,
        reply: Reply<()>,
    },
    Finalize {
        peer: PeerId,
        reply: Reply<()>,
    },
}

struct Peer {
    machine: Machine,
    /// `connect` calls waiting for the dial to end.
    waiting: Vec<Reply<()>>,
    /// Established connections, oldest first.
    conns: Vec<Conn>,
}

#[derive(Debug, Clone)]
struct Conn {
    id: ConnectionId,
    /// Dialled by this node.
    outbound: bool,
    /// Its kill switch (liveness severs it when the peer stops answering).
    switch: Option<Arc<sever::Switch>>,
    /// A duplicate left to close once its streams are done.
    retired: bool,
    /// It came up while the peer was Established: a handshake stream on it means the peer
    /// restarted (a duplicate of a simultaneous dial comes up before).
    after_established: bool,
}

struct Starting {
    listeners: Vec<ListenerId>,
    pending: HashSet<ListenerId>,
    reply: Reply<Vec<Multiaddr>>,
}

pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    opens: mpsc::Receiver<OpenStream>,
    params: Params,
    peers: HashMap<PeerId, Peer>,
    timers: DelayQueue<(PeerId, Timer)>,
    timer_keys: HashMap<(PeerId, Timer), delay_queue::Key>,
    /// Inputs produced while carrying out outputs (a dial that fails at once).
    follow_ups: VecDeque<(PeerId, Input)>,
    starting: Option<Starting>,
    /// Accepted protocols and their stream names.
    accepting: HashMap<libp2p::StreamProtocol, String>,
    seeds: std::collections::hash_map::RandomState,
    /// Connections we are closing, with the reason to report if it was the last one.
    closing: HashMap<ConnectionId, DisconnectReason>,
    /// Listeners, until they report closed.
    listeners: HashSet<ListenerId>,
    /// The address book (the driver is its only owner).
    book: Book,
    /// Snapshots of the book to the writer task; `None` once shut down.
    persist: Option<watch::Sender<Snapshot>>,
    book_version: u64,
    /// Whether `start` was called.
    started: bool,
    /// Changes not yet handed to the writer (last_seen and public keys are batched).
    book_dirty: bool,
    /// Addresses of connected peers outside the address book: the address we dialled, and
    /// the listen addresses they announce through identify (at most `MAX_LEARNED` each).
    /// Established peers among them are reconnected with these when they drop.
    learned: HashMap<PeerId, Vec<Multiaddr>>,
    /// Which connections have gone silent.
    liveness: Liveness,
    /// Pending-inbound places (evictions are counted there).
    pending: pending::Slots,
    /// Evictions of pending connections already reported.
    pending_evicted: u64,
    /// Kill switches of connections whose muxer is up, until taken at establishment.
    switches: sever::Switches,
    /// One admission report per cause per second.
    throttle: Throttle<AdmissionCause>,
}

/// Most learned addresses kept per peer.
const MAX_LEARNED: usize = 8;

impl Driver {
    pub(crate) fn new(
        built: Built,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
        opens: mpsc::Receiver<OpenStream>,
        book: Book,
        persist: watch::Sender<Snapshot>,
    ) -> Self {
        let params = shared.config.machine_params();
        let liveness = Liveness::new(shared.config.ping_interval, shared.config.ping_timeout);
        let Built {
            swarm,
            switches,
            pending,
        } = built;
        let mut driver = Self {
            swarm,
            shared,
            commands,
            opens,
            params,
            peers: HashMap::new(),
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            follow_ups: VecDeque::new(),
            starting: None,
            accepting: HashMap::new(),
            seeds: Default::default(),
            closing: HashMap::new(),
            listeners: HashSet::new(),
            book,
            persist: Some(persist),
            book_version: 0,
            started: false,
            book_dirty: false,
            learned: HashMap::new(),
            liveness,
            pending,
            pending_evicted: 0,
            switches,
            throttle: Throttle::new(std::time::Duration::from_secs(1)),
        };
        // The book's peers: dialable, or blacklisted (refused in both directions).
        let entries: Vec<(PeerId, bool)> = driver
            .book
            .entries()
            .map(|e| (e.peer, e.blacklisted))
            .collect();
        for (peer, blacklisted) in entries {
            driver.peer(peer).machine.set_dialable(true);
            driver.swarm.behaviour_mut().admission.trust(peer);
            if blacklisted {
                driver.swarm.behaviour_mut().blocked.block_peer(peer);
                let _ = driver.apply(peer, Input::Blacklisted);
            }
        }
        driver
    }

    /// Hands the current book to the writer; returns its version (to wait for durability).
    fn save_book(&mut self) -> u64 {
        self.book_version += 1;
        self.book_dirty = false;
        if let Some(tx) = &self.persist {
            tx.send_replace(Snapshot {
                version: self.book_version,
                bytes: Some(Arc::new(self.book.to_bytes())),
            });
        }
        self.book_version
    }

    pub(crate) async fn run(mut self) {
        let token = self.shared.token.clone();
        // Batched address-book changes (last_seen, public keys) are written this often.
        let mut flush = tokio::time::interval(self.shared.config.book_flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // One timer for the earliest liveness deadline, re-armed when it changes.
        let far = || tokio::time::Instant::now() + std::time::Duration::from_secs(86_400);
        let live_timer = tokio::time::sleep_until(far());
        tokio::pin!(live_timer);
        let mut armed: Option<Instant> = None;
        loop {
            let next = self.liveness.poll_timeout();
            if next != armed {
                armed = next;
                live_timer
                    .as_mut()
                    .reset(next.map_or_else(far, tokio::time::Instant::from_std));
            }
            tokio::select! {
                _ = flush.tick() => {
                    if self.book_dirty { self.save_book(); }
                    self.flush_admission_reports();
                }
                _ = &mut live_timer, if armed.is_some() => {
                    armed = None;
                    self.on_liveness_timeout();
                }
                _ = token.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every node handle is gone: nobody can use the node any more.
                    None => { token.cancel(); break }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(open) = self.opens.recv() => self.on_open(open),
                Some(expired) = self.timers.next() => {
                    let (peer, timer) = expired.into_inner();
                    self.timer_keys.remove(&(peer, timer));
                    let _ = self.apply(peer, Input::TimerFired(timer));
                }
            }
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            let _ = self.apply(peer, Input::Shutdown);
            self.fail_waiting(peer, || Error::Shutdown);
        }
        if let Some(s) = self.starting.take() {
            let _ = s.reply.send(Err(Error::Shutdown));
        }
        self.close_gracefully().await;
        if self.book_dirty {
            self.save_book();
        }
        // The writer writes what it holds, then ends.
        self.persist.take();
        tracing::debug!("driver stopped");
    }

    /// Closes every listener and connection and drives the swarm until they are gone (or a
    /// short bound passes), so that peers see a clean close and ports are free on return.
    async fn close_gracefully(&mut self) {
        for id in self.listeners.clone() {
            self.swarm.remove_listener(id);
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let bound = tokio::time::sleep(SHUTDOWN_DRAIN);
        tokio::pin!(bound);
        while !self.listeners.is_empty() || self.swarm.connected_peers().next().is_some() {
            tokio::select! {
                _ = &mut bound => {
                    tracing::debug!("shutdown drain bound reached");
                    break;
                }
                event = self.swarm.select_next_some() => {
                    if let SwarmEvent::ListenerClosed { listener_id, .. } = event {
                        self.listeners.remove(&listener_id);
                    }
                }
            }
        }
    }

    /// The peer's entry, created (unknown, Disconnected) if absent.
    fn peer(&mut self, peer: PeerId) -> &mut Peer {
        let params = &self.params;
        let seeds = &self.seeds;
        self.peers.entry(peer).or_insert_with(|| Peer {
            machine: Machine::new(params.clone(), seeds.hash_one(peer)),
            waiting: Vec::new(),
            conns: Vec::new(),
        })
    }

    fn state(&self, peer: &PeerId) -> State {
        self.peers
            .get(peer)
            .map_or(State::Disconnected, |p| p.machine.state())
    }

    /// Forgets a peer that holds nothing worth keeping.
    fn gc(&mut self, peer: PeerId) {
        if let Some(p) = self.peers.get(&peer)
            && self.book.get(&peer).is_none()
            && p.waiting.is_empty()
            && p.conns.is_empty()
            && !p.machine.is_blacklisted()
            && p.machine.state() == State::Disconnected
        {
            self.peers.remove(&peer);
            self.learned.remove(&peer);
            lock(&self.shared.states).remove(&peer);
        }
    }

    fn fail_waiting(&mut self, peer: PeerId, err: impl Fn() -> Error) {
        if let Some(p) = self.peers.get_mut(&peer) {
            for w in p.waiting.drain(..) {
                let _ = w.send(Err(err()));
            }
        }
    }

    /// Feeds the peer's state machine and carries out what it says, then any follow-ups.
    fn apply(&mut self, peer: PeerId, input: Input) -> std::result::Result<(), Refused> {
        let first = self.apply_one(peer, input);
        while let Some((p, i)) = self.follow_ups.pop_front() {
            let _ = self.apply_one(p, i);
        }
        self.gc(peer);
        first
    }

    fn apply_one(&mut self, peer: PeerId, input: Input) -> std::result::Result<(), Refused> {
        let now = Instant::now();
        let outputs = self.peer(peer).machine.handle(input, now)?;
        for output in outputs {
            match output {
                Output::Dial => self.dial(peer),
                Output::Close => {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Output::Arm { timer, at } => {
                    let at = tokio::time::Instant::from_std(at);
                    match self.timer_keys.get(&(peer, timer)) {
                        Some(key) => self.timers.reset_at(key, at),
                        None => {
                            let key = self.timers.insert_at((peer, timer), at);
                            self.timer_keys.insert((peer, timer), key);
                        }
                    }
                }
                Output::Cancel(timer) => {
                    if let Some(key) = self.timer_keys.remove(&(peer, timer)) {
                        self.timers.try_remove(&key);
                    }
                }
                Output::Emit(change) => self.publish(peer, change),
            }
        }
        Ok(())
    }

    /// The connection new streams go on: the one dialled by the smaller `PeerId` (both sides
    /// pick the same one when both dialled at once), else the newest not retired.
    fn keeper(&self, peer: &PeerId) -> Option<Conn> {
        let p = self.peers.get(peer)?;
        let we_are_smaller = *self.swarm.local_peer_id() < *peer;
        // Connections being closed (superseded, severed) carry no new streams.
        let open = || {
            p.conns
                .iter()
                .rev()
                .filter(|c| !self.closing.contains_key(&c.id))
        };
        let live = || open().filter(|c| !c.retired);
        live()
            .find(|c| c.outbound == we_are_smaller)
            .or_else(|| live().next())
            .or_else(|| open().next())
            .or_else(|| p.conns.last())
            .cloned()
    }

    /// Refreshes what `connection_state`, `is_outbound` and `connection_count` read.
    /// Returns the direction of the kept connection, as the view now says.
    fn refresh_view(&mut self, peer: PeerId) -> Option<bool> {
        let Some(p) = self.peers.get(&peer) else {
            lock(&self.shared.states).remove(&peer);
            return None;
        };
        let state = p.machine.state();
        let connections = p.conns.len();
        let outbound = match state {
            State::Connected | State::Established => self
                .keeper(&peer)
                .map(|c| c.outbound)
                .or(p.machine.is_outbound()),
            _ => None,
        };
        lock(&self.shared.states).insert(
            peer,
            PeerView {
                state,
                outbound,
                connections,
            },
        );
        outbound
    }

    /// Both sides dialled at once: keep the connection dialled by the smaller `PeerId`, retire
    /// the others. Writers are dropped so that new streams go on the kept connection; the old
    /// streams drain and close from both ends, then the retired connection idles out. Nothing
    /// sent on it is lost.
    fn settle_duplicates(&mut self, peer: PeerId) {
        let Some(keep) = self.keeper(&peer) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut retired = Vec::new();
        for c in p.conns.iter_mut().filter(|c| c.id != keep.id && !c.retired) {
            c.retired = true;
            retired.push(c.id);
        }
        if retired.is_empty() {
            return;
        }
        tracing::debug!(%peer, kept = %keep.id, ?retired, "duplicate connections: keeping one");
        metrics::counter!(m::DUPLICATE_CONNECTIONS).increment(retired.len() as u64);
        for id in retired {
            self.swarm.behaviour_mut().stream.retire(peer, id, true);
        }
        self.shared.sessions.drop_writers(&peer);
    }

    /// A peer with more than `max_connections_per_peer` connections: close its oldest (a
    /// retired duplicate first), never `new`. A peer that restarted connects again while its
    /// old connection lingers; refusing the new one would keep it out until the old one dies.
    fn supersede_oldest(&mut self, peer: PeerId, new: ConnectionId) {
        let Some(max) = self.shared.config.max_connections_per_peer else {
            return;
        };
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let excess = p
            .conns
            .iter()
            .filter(|c| !self.closing.contains_key(&c.id))
            .count()
            .saturating_sub(max);
        let mut victims: Vec<ConnectionId> = p
            .conns
            .iter()
            .filter(|c| c.id != new && c.retired && !self.closing.contains_key(&c.id))
            .chain(
                p.conns
                    .iter()
                    .filter(|c| c.id != new && !c.retired && !self.closing.contains_key(&c.id)),
            )
            .map(|c| c.id)
            .collect();
        victims.truncate(excess);
        for id in victims {
            tracing::debug!(%peer, connection = %id, "closing the peer's oldest connection for its new one");
            if self.swarm.close_connection(id) {
                self.closing.insert(
                    id,
                    DisconnectReason::Error("superseded by a new connection".into()),
                );
            }
            self.on_admission(admission::Report {
                cause: AdmissionCause::Superseded,
                peer: Some(peer),
                remote: None,
            });
        }
    }

    /// Connections whose peer stopped answering: sever them (a graceful close would wait
    /// forever on a silent path); `ConnectionClosed` follows at once with this reason.
    fn on_liveness_timeout(&mut self) {
        let dead = self.liveness.handle_timeout(Instant::now());
        for id in dead {
            let Some((peer, conn)) = self.peers.iter().find_map(|(peer, p)| {
                p.conns
                    .iter()
                    .find(|c| c.id == id)
                    .map(|c| (*peer, c.clone()))
            }) else {
                continue;
            };
            tracing::info!(%peer, connection = %id, "peer stopped answering pings: severing the connection");
            metrics::counter!(m::CONNECTIONS_SEVERED).increment(1);
            self.closing.insert(id, DisconnectReason::Unresponsive);
            match conn.switch {
                Some(switch) => switch.sever(),
                None => {
                    self.swarm.close_connection(id);
                }
            }
        }
    }

    /// Counts a refusal or eviction, and logs and reports it (at most once per cause per
    /// second; the rest are carried by the next report).
    fn on_admission(&mut self, report: admission::Report) {
        let cause = report.cause;
        *crate::shared::lock(&self.shared.admission).get_mut(cause) += 1;
        match cause {
            AdmissionCause::PendingEvicted => {} // counted where it happens (transport)
            AdmissionCause::StrangerEvicted => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "stranger").increment(1);
            }
            AdmissionCause::Superseded => {
                metrics::counter!(m::CONNECTIONS_EVICTED, "cause" => "superseded").increment(1);
            }
            _ => {
                metrics::counter!(m::CONNECTIONS_REFUSED, "limit" => cause.label()).increment(1);
            }
        }
        if let Some(count) = self.throttle.record(cause, Instant::now()) {
            self.emit_admission(cause, count, report.peer, report.remote);
        }
    }

    fn flush_admission_reports(&mut self) {
        for (cause, count) in self.throttle.flush(Instant::now()) {
            self.emit_admission(cause, count, None, None);
        }
    }

    fn emit_admission(
        &self,
        cause: AdmissionCause,
        count: u64,
        peer: Option<PeerId>,
        remote: Option<Multiaddr>,
    ) {
        match cause {
            AdmissionCause::Superseded => {
                tracing::info!(%cause, count, ?peer, "admission: superseded connections closed");
            }
            _ => {
                tracing::warn!(%cause, count, ?peer, ?remote, "admission: connections refused or evicted")
            }
        }
        self.shared.emit(Event::Admission(AdmissionEvent {
            cause,
            count,
            peer,
            remote,
            at: SystemTime::now(),
        }));
    }

    fn publish(&mut self, peer: PeerId, change: Change) {
        let state = change.state;
        // Handshaked peers are never refused by admission; strangers again once they leave.
        match state {
            State::Established => self.swarm.behaviour_mut().admission.trust(peer),
            State::Disconnected | State::Reconnecting | State::Cooldown
                if self.book.get(&peer).is_none() =>
            {
                self.swarm.behaviour_mut().admission.distrust(&peer);
            }
            _ => {}
        }
        let outbound = self.refresh_view(peer);
        tracing::info!(%peer, %state, reason = ?change.reason, attempt = ?change.attempt, "peer state");
        metrics::counter!(m::EVENTS_EMITTED, "state" => state_label(state)).increment(1);
        if state == State::Connecting && change.attempt.is_some() {
            metrics::counter!(m::RECONNECT_ATTEMPTS).increment(1);
        }
        let timed_out = change.reason == Some(DisconnectReason::HandshakeTimeout);
        let now = tokio::time::Instant::now();
        let (previous, handshake) = self
            .shared
            .stats
            .peer(peer, now)
            .state_changed(state, outbound, timed_out, now);
        if previous != State::Disconnected {
            metrics::gauge!(m::PEERS, "state" => state_label(previous)).decrement(1.0);
        }
        if state != State::Disconnected {
            metrics::gauge!(m::PEERS, "state" => state_label(state)).increment(1.0);
        }
        if let Some(h) = handshake {
            tracing::debug!(%peer, result = h.label(), "handshake ended");
            metrics::counter!(m::HANDSHAKE_RESULTS, "result" => h.label()).increment(1);
            if let Handshake::Succeeded(took) = h {
                metrics::histogram!(m::HANDSHAKE_DURATION).record(took.as_secs_f64());
            }
        }
        if matches!(
            state,
            State::Disconnected | State::Reconnecting | State::Cooldown
        ) {
            // Whatever was waiting for this dial has its answer.
            let reason = change.reason.clone();
            self.fail_waiting(peer, || Error::Dial {
                peer,
                reason: reason
                    .as_ref()
                    .map_or_else(|| state.to_string(), |r| r.to_string()),
            });
        }
        self.shared.emit(Event::Connection(ConnectionEvent {
            peer,
            state,
            reason: change.reason,
            attempt: change.attempt,
            delay: change.delay,
            at: SystemTime::now(),
        }));
    }

    fn dial(&mut self, peer: PeerId) {
        let addrs = match self.book.get(&peer) {
            Some(e) => e.addrs.clone(),
            None => self.learned.get(&peer).cloned().unwrap_or_default(),
        };
        // A fresh source port: dialling from the listen port lets two nodes that dial each
        // other at once meet in one TCP simultaneous open, where both sides start Noise as
        // initiator and the handshake fails.
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, error = %e, "dial refused at once");
            self.dial_failed(peer);
            self.follow_ups
                .push_back((peer, Input::DialFailed(e.to_string())));
        }
    }

    /// Remembers addresses of a connected peer outside the address book.
    fn learn(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>) {
        if self.book.get(&peer).is_some() || !self.peers.contains_key(&peer) {
            return;
        }
        let known = self.learned.entry(peer).or_default();
        for a in addrs {
            // Our dials carry the peer's id; keep the bare address.
            let a: Multiaddr = a
                .into_iter()
                .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                .collect();
            // The most recent first; the oldest goes when there are too many.
            known.retain(|k| k != &a);
            known.insert(0, a);
            known.truncate(MAX_LEARNED);
        }
    }

    /// A dial to `peer` failed (at once, or after trying its addresses).
    fn dial_failed(&mut self, peer: PeerId) {
        metrics::counter!(m::CONNECTION_ATTEMPTS, "result" => "failure").increment(1);
        self.shared
            .stats
            .peer(peer, tokio::time::Instant::now())
            .dial_failed();
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { reply } => self.start(reply),
            Command::AddPeer {
                peer,
                addrs,
                metadata,
                reply,
            } => {
                let r = if self.book.get(&peer).is_some_and(|e| e.blacklisted) {
                    Err(Error::Blacklisted(peer))
                } else {
                    self.book
                        .add(peer, addrs, metadata, OffsetDateTime::now_utc());
                    self.peer(peer).machine.set_dialable(true);
                    self.swarm.behaviour_mut().admission.trust(peer);
                    let version = self.save_book();
                    // A started node connects to the peers it is given.
                    if self.started {
                        let _ = self.apply(peer, Input::DialRequested);
                    }
                    Ok(version)
                };
                let _ = reply.send(r);
            }
            Command::RemovePeer { peer, reply } => {
                let r = if self.book.remove(&peer) {
                    if self.state(&peer) != State::Established {
                        self.swarm.behaviour_mut().admission.distrust(&peer);
                    }
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.machine.set_dialable(false);
                        // A reconnection series has nothing left to dial.
                        if p.machine.state() == State::Reconnecting {
                            let _ = self.apply(peer, Input::ReconnectionCancelled);
                        }
                    }
                    self.gc(peer);
                    Ok(self.save_book())
                } else {
                    Err(Error::UnknownPeer(peer))
                };
                let _ = reply.send(r);
            }
            Command::GetPeer { peer, reply } => {
                let _ = reply.send(Ok(self.book.get(&peer).cloned()));
            }
            Command::ListPeers { reply } => {
                let _ = reply.send(Ok(self.book.entries().cloned().collect()));
            }
            Command::Connect { peer, reply } => {
                let known = self.book.get(&peer).is_some();
                let Some(p) = self.peers.get_mut(&peer).filter(|_| known) else {
                    let _ = reply.send(Err(Error::UnknownPeer(peer)));
                    return;
                };
                match p.machine.state() {
                    State::Connected | State::Established => {
                        let _ = reply.send(Ok(()));
                    }
                    state => {
                        p.waiting.push(reply);
                        if let Err(refused) = self.apply(peer, Input::DialRequested) {
                            self.fail_waiting(peer, || {
                                if refused.blacklisted {
                                    Error::Blacklisted(peer)
                                } else {
                                    Error::InvalidState {
                                        peer,
                                        state,
                                        operation: "connect",
                                    }
                                }
                            });
                        }
                    }
                }
            }
            Command::Disconnect { peer, reply } => {
                let r = if self.peers.contains_key(&peer) {
                    self.apply(peer, Input::DisconnectRequested)
                        .map_err(|_| Error::NotConnected(peer))
                } else {
                    Err(Error::NotConnected(peer))
                };
                let _ = reply.send(r);
            }
            Command::CancelReconnection { peer, reply } => {
                let r = if self.peers.contains_key(&peer) {
                    self.apply(peer, Input::ReconnectionCancelled)
                        .map_err(|refused| Error::InvalidState {
                            peer,
                            state: refused.state,
                            operation: "cancel_reconnection",
                        })
                } else {
                    Err(Error::InvalidState {
                        peer,
                        state: State::Disconnected,
                        operation: "cancel_reconnection",
                    })
                };
                let _ = reply.send(r);
            }
            Command::Blacklist {
                peer,
                blacklisted,
                reply,
            } => {
                let blocked = &mut self.swarm.behaviour_mut().blocked;
                if blacklisted {
                    // Closes its connections at once and refuses new ones, both ways.
                    blocked.block_peer(peer);
                } else {
                    blocked.unblock_peer(peer);
                }
                self.book
                    .set_blacklisted(peer, blacklisted, OffsetDateTime::now_utc());
                if blacklisted || self.peers.contains_key(&peer) {
                    let dialable = self.book.get(&peer).is_some();
                    self.peer(peer).machine.set_dialable(dialable);
                    let input = if blacklisted {
                        Input::Blacklisted
                    } else {
                        Input::Unblacklisted
                    };
                    let _ = self.apply(peer, input);
                }
                let _ = reply.send(Ok(self.save_book()));
            }
            Command::Prepare {
                peer,
                public_key,
                cipher,
                names,
                reply,
            } => {
                let allowed = if self.peers.contains_key(&peer) {
                    self.apply(peer, Input::StreamsPrepared)
                        .map_err(|refused| refused.state)
                } else {
                    Err(State::Disconnected)
                };
                let r = match allowed {
                    Ok(()) => {
                        if self.shared.sessions.prepare(&peer, cipher, &names) {
                            if self.book.set_public_key(
                                &peer,
                                public_key,
                                OffsetDateTime::now_utc(),
                            ) {
                                self.book_dirty = true;
                            }
                            self.accept_from(peer, &names);
                            Ok(())
                        } else {
                            Err(Error::NotConnected(peer))
                        }
                    }
                    Err(State::Disconnected | State::Connecting | State::Reconnecting) => {
                        Err(Error::NotConnected(peer))
                    }
                    Err(state) => Err(Error::InvalidState {
                        peer,
                        state,
                        operation: "prepare_streams",
                    }),
                };
                let _ = reply.send(r);
            }
            Command::Finalize { peer, reply } => {
                let r = if self.peers.contains_key(&peer) {
                    match self.apply(peer, Input::HandshakeFinalized) {
                        Ok(()) => {
                            // The handshake stream has done its job: close our side once drained.
                            self.shared.sessions.drop_writer(&peer, HANDSHAKE);
                            Ok(())
                        }
                        Err(refused)
                            if matches!(
                                refused.state,
                                State::Disconnected | State::Connecting | State::Reconnecting
                            ) =>
                        {
                            Err(Error::NotConnected(peer))
                        }
                        Err(refused) => Err(Error::InvalidState {
                            peer,
                            state: refused.state,
                            operation: "finalize_handshake",
                        }),
                    }
                } else {
                    Err(Error::NotConnected(peer))
                };
                let _ = reply.send(r);
            }
        }
    }

    fn start(&mut self, reply: Reply<Vec<Multiaddr>>) {
        self.started = true;
        self.accept(HANDSHAKE);
        // Connect to every peer of the book that is not blacklisted.
        let peers: Vec<PeerId> = self
            .book
            .entries()
            .filter(|e| !e.blacklisted)
            .map(|e| e.peer)
            .collect();
        for peer in peers {
            let _ = self.apply(peer, Input::DialRequested);
        }
        let mut listeners = Vec::new();
        for addr in self.shared.config.listen_addrs.clone() {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    listeners.push(id);
                    self.listeners.insert(id);
                }
                Err(e) => {
                    self.stop_listening(&listeners);
                    let _ = reply.send(Err(Error::Listen {
                        addr,
                        reason: e.to_string(),
                    }));
                    return;
                }
            }
        }
        let pending = listeners.iter().copied().collect();
        self.starting = Some(Starting {
            listeners,
            pending,
            reply,
        });
    }

    fn stop_listening(&mut self, listeners: &[ListenerId]) {
        for id in listeners {
            self.swarm.remove_listener(*id);
        }
        lock(&self.shared.listen_addrs).clear();
    }

    /// Accepts inbound streams named `names` from `peer` (for its current session).
    fn accept_from(&mut self, peer: PeerId, names: &[String]) {
        let protocols: Vec<_> = names.iter().map(|n| wire::protocol_id(n)).collect();
        for (protocol, name) in protocols.iter().zip(names) {
            self.accepting
                .entry(protocol.clone())
                .or_insert_with(|| name.clone());
        }
        self.swarm
            .behaviour_mut()
            .stream
            .accept_from(peer, protocols);
    }

    /// Accepts inbound streams named `name` from every peer from now on (the handshake).
    fn accept(&mut self, name: &str) {
        let protocol = wire::protocol_id(name);
        if self.accepting.contains_key(&protocol) {
            return;
        }
        self.swarm.behaviour_mut().stream.accept(protocol.clone());
        self.accepting.insert(protocol, name.to_owned());
    }

    /// Opens an outbound stream on the connection kept for the peer (never dials).
    fn on_open(&mut self, open: OpenStream) {
        match self.keeper(&open.peer) {
            Some(connection) => self.swarm.behaviour_mut().stream.open(
                open.peer,
                connection.id,
                open.protocol,
                open.reply,
            ),
            None => {
                let _ = open.reply.send(Err(OpenError::NotConnected));
            }
        }
    }

    /// An inbound stream, negotiated for an accepted protocol.
    fn on_inbound(&mut self, inbound: Inbound) {
        let Inbound {
            peer,
            connection,
            protocol,
            stream: s,
        } = inbound;
        let Some(name) = self.accepting.get(&protocol).cloned() else {
            return;
        };
        tracing::trace!(%peer, %connection, stream = name, "inbound stream");
        let s = match stream::accept_inbound(&self.shared, peer, &name, s) {
            None => None,
            // Its connection is up but the peer has no session yet: open it.
            Some(s) if self.swarm.is_connected(&peer) => {
                let stats = self.shared.stats.peer(peer, tokio::time::Instant::now());
                self.shared.sessions.open(peer, &self.shared.token, stats);
                stream::accept_inbound(&self.shared, peer, &name, s)
            }
            Some(s) => Some(s),
        };
        if s.is_some() {
            tracing::debug!(%peer, stream = name, "inbound stream from a peer that is gone");
            metrics::counter!(m::INBOUND_STREAMS_REFUSED).increment(1);
            if let Some(e) = self.shared.stats.get(&peer) {
                e.stream_refused();
            }
            return;
        }
        if name == HANDSHAKE {
            self.swarm.behaviour_mut().admission.progressed(&peer);
            self.on_handshake_stream(peer, connection);
        }
    }

    /// A new handshake stream, while Established, on a connection that came up after the
    /// peer was Established: the peer restarted (its old connection may linger until it times
    /// out). Keep only the newest connection and go through the handshake again. A handshake
    /// stream on an older connection (a late one of the first handshake, or on the duplicate
    /// of a simultaneous dial) changes nothing.
    fn on_handshake_stream(&mut self, peer: PeerId, connection: ConnectionId) {
        let Some(p) = self.peers.get(&peer) else {
            return;
        };
        let on_new_connection = p
            .conns
            .iter()
            .any(|c| c.id == connection && c.after_established);
        if p.machine.state() != State::Established || p.conns.len() < 2 || !on_new_connection {
            return;
        }
        let stale: Vec<ConnectionId> = p.conns[..p.conns.len() - 1].iter().map(|c| c.id).collect();
        let newest = p.conns[p.conns.len() - 1].clone();
        if let Some(p) = self.peers.get_mut(&peer) {
            // The stale ones get no new streams while they close; the newest is the keeper.
            let last = p.conns.len() - 1;
            for (i, c) in p.conns.iter_mut().enumerate() {
                c.retired = i != last;
            }
        }
        if newest.retired {
            self.swarm
                .behaviour_mut()
                .stream
                .retire(peer, newest.id, false);
        }
        tracing::info!(%peer, stale = stale.len(), "peer handshakes again on a new connection");
        for id in stale {
            if self.swarm.close_connection(id) {
                self.closing.insert(
                    id,
                    DisconnectReason::Error("superseded by a new connection".into()),
                );
            }
        }
        let _ = self.apply(peer, Input::HandshakeStreamOpened);
    }

    /// A connection came up: record it, settle duplicates and a restarted peer's extra
    /// connections, open the session on the first one, feed the machine, answer waiters.
    fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: libp2p::core::ConnectedPoint,
        num_established: std::num::NonZeroU32,
    ) {
        let outbound = endpoint.is_dialer();
        metrics::counter!(m::CONNECTIONS_OPENED, "direction" => direction(outbound)).increment(1);
        if outbound {
            metrics::counter!(m::CONNECTION_ATTEMPTS, "result" => "success").increment(1);
        }
        let after_established = self.state(&peer_id) == State::Established;
        // A peer outside the book is dialable only for the reconnection series after
        // a loss (see ConnectionClosed): once connected again, that series is over.
        if self.book.get(&peer_id).is_none()
            && let Some(p) = self.peers.get_mut(&peer_id)
        {
            p.machine.set_dialable(false);
        }
        if outbound {
            self.learn(peer_id, [endpoint.get_remote_address().clone()]);
        }
        let quic = endpoint
            .get_remote_address()
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1));
        // QUIC keeps its own liveness (its idle timeout); TCP is watched by pings.
        self.liveness
            .on_established(connection_id, !quic, Instant::now());
        let switch = self.switches.take(peer_id, &endpoint);
        self.peer(peer_id).conns.push(Conn {
            id: connection_id,
            outbound,
            switch,
            retired: false,
            after_established,
        });
        self.supersede_oldest(peer_id, connection_id);
        if num_established.get() > 1 {
            // Both dialled at once, or (while Established) the peer restarted behind a
            // lingering connection: settle on one now; a handshake stream on the newest
            // connection later says it was a restart (`on_handshake_stream`).
            self.settle_duplicates(peer_id);
        }
        if num_established.get() == 1 {
            let now = tokio::time::Instant::now();
            let stats = self.shared.stats.peer(peer_id, now);
            stats.connection_up(outbound, now);
            self.shared
                .sessions
                .open(peer_id, &self.shared.token, stats);
            if self.book.touch(&peer_id, OffsetDateTime::now_utc()) {
                self.book_dirty = true;
            }
            let _ = self.apply(
                peer_id,
                Input::ConnectionEstablished {
                    outbound: endpoint.is_dialer(),
                },
            );
        }
        if matches!(self.state(&peer_id), State::Connected | State::Established)
            && let Some(p) = self.peers.get_mut(&peer_id)
        {
            for w in p.waiting.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        self.refresh_view(peer_id);
    }

    /// A connection closed: forget it; on the peer's last one, close the session and feed
    /// the machine the reason.
    fn on_connection_closed(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: libp2p::core::ConnectedPoint,
        num_established: u32,
        cause: Option<ConnectionError>,
    ) {
        metrics::counter!(m::CONNECTIONS_CLOSED, "direction" => direction(endpoint.is_dialer()))
            .increment(1);
        if let Some(p) = self.peers.get_mut(&peer_id) {
            p.conns.retain(|c| c.id != connection_id);
        }
        self.liveness.on_closed(connection_id);
        let recorded = self.closing.remove(&connection_id);
        if num_established == 0 {
            if let Some(e) = self.shared.stats.get(&peer_id) {
                e.connection_down(tokio::time::Instant::now());
            }
            self.shared.sessions.close(&peer_id);
            self.swarm.behaviour_mut().stream.forget(&peer_id);
            let reason = recorded.unwrap_or_else(|| close_reason(cause));
            // An established peer outside the book whose connection was lost (not
            // closed by the peer on purpose): reconnect it with what we learned.
            if self.shared.config.reconnect_learned_peers
                && !matches!(reason, DisconnectReason::RemoteClosed)
                && self.state(&peer_id) == State::Established
                && self.book.get(&peer_id).is_none()
                && self.learned.get(&peer_id).is_some_and(|a| !a.is_empty())
                && let Some(p) = self.peers.get_mut(&peer_id)
            {
                p.machine.set_dialable(true);
            }
            let _ = self.apply(peer_id, Input::ConnectionClosed(reason));
        }
        if self.peers.contains_key(&peer_id) {
            self.refresh_view(peer_id);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        #[cfg(feature = "libp2p-metrics")]
        if let Some(m) = &self.shared.config.libp2p_metrics {
            use libp2p::metrics::Recorder as _;
            match &event {
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => m.record(e),
                _ => {}
            }
            m.record(&event);
        }
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connection_established(peer_id, connection_id, endpoint, num_established),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                self.on_connection_closed(peer_id, connection_id, endpoint, num_established, cause)
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "dial failed");
                self.dial_failed(peer);
                if !self.swarm.is_connected(&peer) {
                    let _ = self.apply(peer, Input::DialFailed(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Ok(rtt),
            })) => {
                self.liveness.on_pong(connection, Instant::now());
                if let Some(e) = self.shared.stats.get(&peer) {
                    e.rtt(rtt);
                }
                metrics::histogram!(m::PING_RTT).record(rtt.as_secs_f64());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Stream(inbound)) => self.on_inbound(inbound),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => self.learn(peer_id, info.listen_addrs),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(failure),
            })) => {
                // Liveness decides from the answers (`on_liveness_timeout`), not from how
                // libp2p-ping reports failures (it keeps the first one to itself).
                tracing::debug!(%peer, %connection, %failure, "ping failed");
                if matches!(failure, ping::Failure::Unsupported) {
                    self.liveness.on_unsupported(connection);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Admission(report)) => self.on_admission(report),
            SwarmEvent::IncomingConnectionError { .. } => {
                let evicted = self.pending.evicted();
                for _ in self.pending_evicted..evicted {
                    self.on_admission(admission::Report {
                        cause: AdmissionCause::PendingEvicted,
                        peer: None,
                        remote: None,
                    });
                }
                self.pending_evicted = evicted;
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                lock(&self.shared.listen_addrs).push(address);
                self.listener_ready(listener_id, None);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                lock(&self.shared.listen_addrs).retain(|a| a != &address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                self.listeners.remove(&listener_id);
                let why = match reason {
                    Ok(()) => "listener closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.listener_ready(listener_id, Some(why));
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.listener_ready(listener_id, Some(error.to_string()));
            }
            _ => {}
        }
    }

    fn listener_ready(&mut self, id: ListenerId, error: Option<String>) {
        let Some(starting) = self.starting.as_mut() else {
            return;
        };
        if !starting.pending.remove(&id) {
            return;
        }
        if let Some(reason) = error {
            let s = self.starting.take().expect("checked above");
            self.stop_listening(&s.listeners);
            let _ = s.reply.send(Err(Error::Listen {
                addr: Multiaddr::empty(),
                reason,
            }));
            return;
        }
        if starting.pending.is_empty() {
            let s = self.starting.take().expect("checked above");
            let _ = s.reply.send(Ok(lock(&self.shared.listen_addrs).clone()));
        }
    }
}

/// Why a connection closed, from what the swarm reports.
fn close_reason(cause: Option<ConnectionError>) -> DisconnectReason {
    match cause {
        // An active close by this node; the state machine knows when it asked for one.
        None => DisconnectReason::RemoteClosed,
        Some(ConnectionError::KeepAliveTimeout) => DisconnectReason::IdleTimeout,
        Some(ConnectionError::IO(outer)) => {
            // Muxer errors arrive boxed in io::Errors (one per StreamMuxerBox): look inside.
            let mut e = &outer;
            while let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>()) {
                e = inner;
            }
            // libp2p-yamux's error wraps yamux's privately; its Display is yamux's.
            let yamux_closed = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<libp2p::yamux::Error>())
                .is_some_and(|y| y.to_string() == yamux::ConnectionError::Closed.to_string());
            // quinn reports a peer's close as "closed by peer" (ApplicationClosed) inside
            // libp2p-quic's error, which is not reachable by downcasting.
            if yamux_closed
                || e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.to_string().contains("closed by peer")
            {
                DisconnectReason::RemoteClosed
            } else if e.kind() == std::io::ErrorKind::TimedOut
                || e.to_string().contains("timed out")
            {
                // QUIC's idle timeout: the path went silent (our severed connections carry
                // their reason in `closing`).
                DisconnectReason::Unresponsive
            } else {
                DisconnectReason::Error(e.to_string())
            }
        }
    }
}

fn direction(outbound: bool) -> &'static str {
    if outbound { "outbound" } else { "inbound" }
}

fn state_label(state: State) -> &'static str {
    match state {
        State::Disconnected => "disconnected",
        State::Connecting => "connecting",
        State::Connected => "connected",
        State::Established => "established",
        State::Reconnecting => "reconnecting",
        State::Cooldown => "cooldown",
    }
}
