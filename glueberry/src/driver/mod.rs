//! The driver task: the one owner of the `Swarm`, of every peer's state machine and of their
//! timers.
//!
//! The node handle sends it [`Command`]s over a bounded channel and gets answers on oneshot
//! channels; the swarm sends it `SwarmEvent`s (inbound streams among them); senders ask it to
//! open streams. It never waits on anything else, so neither a slow subscriber nor a slow
//! reader can stall it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher as _;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, watch};
use tokio_util::time::{DelayQueue, delay_queue};

use crate::behaviour::{Behaviour, Built};
use crate::book::Book;
use crate::error::Error;
use crate::event::AdmissionCause;
use crate::liveness::Liveness;
use crate::peer::{DisconnectReason, Input, Machine, Output, Params, Refused, State, Timer};
use crate::persist::Snapshot;
use crate::shared::{OpenStream, Shared, lock};
use crate::throttle::Throttle;
use crate::transport::{pending, sever};

mod commands;
mod conns;
mod guard;
mod ingress;
mod peers;
mod scores;
mod streams;
mod swarm;

use commands::Starting;
pub(crate) use ingress::Command;
use ingress::Reply;

/// Capacity of the command channel from node handles to the driver.
pub(crate) const COMMAND_BUFFER: usize = 256;

/// Capacity of the channel of stream-open requests from senders to the driver.
pub(crate) const OPEN_BUFFER: usize = 256;

/// Longest time shutdown waits for connections and listeners to close cleanly.
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// The address of a one-off dial (`Node::dial`), tried first by the peer's next dial.
    dial_once: HashMap<PeerId, Multiaddr>,
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
    /// Peer scores (docs/scoring.md).
    scores: crate::scoring::Scores,
    /// The peers' inbound-stream allowances (`max_new_streams`), charged by the transport.
    meter: Arc<crate::transport::meter::Meter>,
    /// Handshake streams opened, per peer (`max_handshake_streams`; `None`: no limit).
    new_handshakes: Option<crate::quota::PerPeer>,
    /// Ends of timed bans.
    bans: DelayQueue<PeerId>,
    ban_keys: HashMap<PeerId, delay_queue::Key>,
}

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
        let shared_scoring = shared.config.scoring.clone();
        let liveness = Liveness::new(shared.config.ping_interval, shared.config.ping_timeout);
        let Built {
            swarm,
            switches,
            pending,
            meter,
        } = built;
        let new_handshakes = shared
            .config
            .max_handshake_streams
            .map(|n| crate::quota::PerPeer::new(n, std::time::Duration::from_secs(60)));
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
            dial_once: HashMap::new(),
            liveness,
            pending,
            pending_evicted: 0,
            switches,
            throttle: Throttle::new(std::time::Duration::from_secs(1)),
            scores: crate::scoring::Scores::new(shared_scoring),
            meter,
            new_handshakes,
            bans: DelayQueue::new(),
            ban_keys: HashMap::new(),
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
        driver.load_bans();
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
        let mail = self.shared.mail.clone();
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
            // One call per source. `select!` polls the arms in a random order, so no source
            // starves another, and no handler waits on anything: neither a slow subscriber nor
            // a slow reader can stall the swarm.
            tokio::select! {
                _ = token.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every node handle is gone: nobody can use the node any more.
                    None => { token.cancel(); break }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some(open) = self.opens.recv() => self.on_open(open),
                _ = mail.posted() => self.on_mail(),
                Some(expired) = self.timers.next() => self.on_timer(expired.into_inner()),
                Some(ended) = self.bans.next() => self.unban(ended.into_inner()),
                _ = &mut live_timer, if armed.is_some() => {
                    armed = None;
                    self.on_liveness_timeout();
                }
                _ = flush.tick() => self.on_flush_tick(),
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

    /// A peer's timer fired.
    fn on_timer(&mut self, (peer, timer): (PeerId, Timer)) {
        self.timer_keys.remove(&(peer, timer));
        let _ = self.apply(peer, Input::TimerFired(timer));
        if timer == Timer::Handshake && self.state(&peer) == State::Cooldown {
            // A failed handshake counts against the peer (docs/scoring.md).
            self.on_verdict(peer, crate::scoring::Severity::Low);
        }
    }

    /// Hands batched book changes to the writer, and reports admission refusals held back.
    fn on_flush_tick(&mut self) {
        if self.book_dirty {
            self.save_book();
        }
        self.flush_admission_reports();
        let now = std::time::Instant::now();
        self.scores.forget_old(now);
        // Stream limits of peers that are back within them and not over: forgotten (a peer
        // that reconnects does not get a fresh allowance while it is over).
        self.meter.forget_idle(now);
        self.swarm.behaviour().ping.forget_idle();
        if let Some(limit) = &self.new_handshakes {
            limit.forget_idle(now);
        }
        self.shared.sessions.forget_idle_quotas(now);
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
            self.dial_once.remove(&peer);
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
                            if self.timers.is_empty() {
                                // Its deadlines count from its start: a fresh one never
                                // overflows them, however long the node ran.
                                self.timers = DelayQueue::new();
                            }
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
}
