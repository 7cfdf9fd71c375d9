//! The driver task: the one owner of the `Swarm` and of every peer's state machine.
//!
//! The node handle sends it [`Command`]s over a bounded channel and gets answers on oneshot
//! channels; the swarm sends it `SwarmEvent`s. It never waits on anything but those two (and
//! the shutdown token), so neither a slow subscriber nor a slow reader can stall it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt as _;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use crate::behaviour::Behaviour;
use crate::crypto::Cipher;
use crate::error::{Error, Result};
use crate::event::{ConnectionEvent, Event};
use crate::peer::{DisconnectReason, Input, Machine, Output, State};
use crate::shared::{Shared, lock};
use crate::stream;
use crate::wire::{self, HANDSHAKE};

/// Capacity of the command channel from node handles to the driver.
pub(crate) const COMMAND_BUFFER: usize = 256;

type Reply<T> = oneshot::Sender<Result<T>>;

/// What a node handle asks the driver.
pub(crate) enum Command {
    Start {
        reply: Reply<Vec<Multiaddr>>,
    },
    AddPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        metadata: HashMap<String, String>,
        reply: Reply<()>,
    },
    Connect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Prepare {
        peer: PeerId,
        cipher: Arc<Cipher>,
        names: Vec<String>,
        reply: Reply<()>,
    },
    Finalize {
        peer: PeerId,
        reply: Reply<()>,
    },
}

#[derive(Default)]
struct Peer {
    machine: Machine,
    /// In the address book (added by the application), so it may be dialled.
    known: Option<Known>,
    /// `connect` calls waiting for the dial to end.
    waiting: Vec<Reply<()>>,
}

struct Known {
    addrs: Vec<Multiaddr>,
    #[allow(dead_code)] // Kept for the persistent address book.
    metadata: HashMap<String, String>,
}

struct Starting {
    pending: HashSet<ListenerId>,
    reply: Reply<Vec<Multiaddr>>,
}

/// An inbound stream that arrived before its peer's session: (peer, name, stream).
type Orphan = (PeerId, String, libp2p::Stream);

/// Capacity of the channel of early inbound streams from accept loops to the driver.
const ORPHAN_BUFFER: usize = 64;

pub(crate) struct Driver {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    orphans: mpsc::Receiver<Orphan>,
    orphans_tx: mpsc::Sender<Orphan>,
    peers: HashMap<PeerId, Peer>,
    starting: Option<Starting>,
    accepting: HashSet<String>,
}

impl Driver {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let (orphans_tx, orphans) = mpsc::channel(ORPHAN_BUFFER);
        Self {
            swarm,
            shared,
            commands,
            orphans,
            orphans_tx,
            peers: HashMap::new(),
            starting: None,
            accepting: HashSet::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        let token = self.shared.token.clone();
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every node handle is gone: nobody can use the node any more.
                    None => { token.cancel(); break }
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                Some((peer, name, stream)) = self.orphans.recv() => self.on_orphan(peer, &name, stream),
            }
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            let _ = self.apply(peer, Input::Shutdown);
            for w in std::mem::take(&mut self.entry(peer).waiting) {
                let _ = w.send(Err(Error::Shutdown));
            }
        }
        if let Some(s) = self.starting.take() {
            let _ = s.reply.send(Err(Error::Shutdown));
        }
        tracing::debug!("driver stopped");
    }

    fn entry(&mut self, peer: PeerId) -> &mut Peer {
        self.peers.entry(peer).or_default()
    }

    /// Feeds the peer's state machine and carries out what it says.
    fn apply(
        &mut self,
        peer: PeerId,
        input: Input,
    ) -> std::result::Result<(), crate::peer::state::Refused> {
        let outputs = self.entry(peer).machine.handle(input)?;
        for output in outputs {
            match output {
                Output::Dial => self.dial(peer),
                Output::Close => {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                Output::Emit { state, reason } => self.publish(peer, state, reason),
            }
        }
        Ok(())
    }

    fn publish(&mut self, peer: PeerId, state: State, reason: Option<DisconnectReason>) {
        let outbound = self.entry(peer).machine.is_outbound();
        let forget = state == State::Disconnected && self.entry(peer).known.is_none();
        {
            let mut states = lock(&self.shared.states);
            if forget {
                states.remove(&peer);
            } else {
                states.insert(peer, (state, outbound));
            }
        }
        tracing::info!(%peer, %state, ?reason, "peer state");
        metrics::counter!("glueberry_events_emitted_total", "state" => state_label(state))
            .increment(1);
        self.shared.emit(Event::Connection(ConnectionEvent {
            peer,
            state,
            reason,
            at: SystemTime::now(),
        }));
        if forget && self.peers.get(&peer).is_some_and(|p| p.waiting.is_empty()) {
            self.peers.remove(&peer);
        }
    }

    fn dial(&mut self, peer: PeerId) {
        let addrs = self
            .peers
            .get(&peer)
            .and_then(|p| p.known.as_ref())
            .map(|k| k.addrs.clone())
            .unwrap_or_default();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            self.dial_failed(peer, e.to_string());
        }
    }

    fn dial_failed(&mut self, peer: PeerId, reason: String) {
        tracing::debug!(%peer, %reason, "dial failed");
        let _ = self.apply(peer, Input::DialFailed(reason.clone()));
        for w in std::mem::take(&mut self.entry(peer).waiting) {
            let _ = w.send(Err(Error::Dial {
                peer,
                reason: reason.clone(),
            }));
        }
        if self
            .peers
            .get(&peer)
            .is_some_and(|p| p.known.is_none() && p.machine.state() == State::Disconnected)
        {
            self.peers.remove(&peer);
        }
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
                self.entry(peer).known = Some(Known { addrs, metadata });
                let _ = reply.send(Ok(()));
            }
            Command::Connect { peer, reply } => {
                let p = self.entry(peer);
                if p.known.is_none() {
                    let _ = reply.send(Err(Error::UnknownPeer(peer)));
                    return;
                }
                match p.machine.state() {
                    State::Connected | State::Established => {
                        let _ = reply.send(Ok(()));
                    }
                    state => {
                        p.waiting.push(reply);
                        if self.apply(peer, Input::DialRequested).is_err() {
                            for w in std::mem::take(&mut self.entry(peer).waiting) {
                                let _ = w.send(Err(Error::InvalidState {
                                    peer,
                                    state,
                                    operation: "connect",
                                }));
                            }
                        }
                    }
                }
            }
            Command::Disconnect { peer, reply } => {
                let r = self
                    .apply(peer, Input::DisconnectRequested)
                    .map_err(|_| Error::NotConnected(peer));
                let _ = reply.send(r);
            }
            Command::Prepare {
                peer,
                cipher,
                names,
                reply,
            } => {
                let state = self.state(peer);
                let r = match state {
                    State::Connected | State::Established => {
                        if self.shared.sessions.prepare(&peer, cipher, &names) {
                            for name in &names {
                                self.accept(name);
                            }
                            Ok(())
                        } else {
                            Err(Error::NotConnected(peer))
                        }
                    }
                    State::Disconnected | State::Connecting => Err(Error::NotConnected(peer)),
                    state => Err(Error::InvalidState {
                        peer,
                        state,
                        operation: "prepare_streams",
                    }),
                };
                let _ = reply.send(r);
            }
            Command::Finalize { peer, reply } => {
                let r = match self.apply(peer, Input::HandshakeFinalized) {
                    Ok(()) => {
                        // The handshake stream has done its job: close our side once drained.
                        self.shared.sessions.drop_writer(&peer, HANDSHAKE);
                        Ok(())
                    }
                    Err(refused) if refused.state == State::Disconnected => {
                        Err(Error::NotConnected(peer))
                    }
                    Err(refused) => Err(Error::InvalidState {
                        peer,
                        state: refused.state,
                        operation: "finalize_handshake",
                    }),
                };
                let _ = reply.send(r);
            }
        }
    }

    fn state(&self, peer: PeerId) -> State {
        self.peers
            .get(&peer)
            .map_or(State::Disconnected, |p| p.machine.state())
    }

    fn start(&mut self, reply: Reply<Vec<Multiaddr>>) {
        self.accept(HANDSHAKE);
        let mut pending = HashSet::new();
        for addr in self.shared.config.listen_addrs.clone() {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    pending.insert(id);
                }
                Err(e) => {
                    for id in pending {
                        self.swarm.remove_listener(id);
                    }
                    let _ = reply.send(Err(Error::Listen {
                        addr,
                        reason: e.to_string(),
                    }));
                    return;
                }
            }
        }
        self.starting = Some(Starting { pending, reply });
    }

    /// Starts the always-running accept loop of `name`'s protocol, once.
    fn accept(&mut self, name: &str) {
        if self.accepting.contains(name) {
            return;
        }
        let protocol = wire::protocol_id(name);
        match self.shared.control.clone().accept(protocol) {
            Ok(incoming) => {
                self.accepting.insert(name.to_owned());
                let shared = self.shared.clone();
                let name = name.to_owned();
                let orphans = self.orphans_tx.clone();
                self.shared
                    .tracker
                    .spawn(accept_loop(shared, name, incoming, orphans));
            }
            Err(e) => tracing::error!(stream = name, error = %e, "cannot accept streams"),
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<crate::behaviour::BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if num_established.get() == 1 {
                    self.shared.sessions.open(peer_id, &self.shared.token);
                    let _ = self.apply(
                        peer_id,
                        Input::ConnectionEstablished {
                            outbound: endpoint.is_dialer(),
                        },
                    );
                }
                for w in std::mem::take(&mut self.entry(peer_id).waiting) {
                    let _ = w.send(Ok(()));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.shared.sessions.close(&peer_id);
                let reason = match cause {
                    None => DisconnectReason::RemoteClosed,
                    Some(ConnectionError::KeepAliveTimeout) => {
                        DisconnectReason::Error("idle timeout".into())
                    }
                    Some(ConnectionError::IO(e)) => DisconnectReason::Error(e.to_string()),
                };
                let _ = self.apply(peer_id, Input::ConnectionClosed(reason));
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                self.dial_failed(peer, error.to_string());
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

    /// An inbound stream came before the driver saw its connection: if the peer is connected,
    /// open its session now (the `ConnectionEstablished` event is on its way).
    fn on_orphan(&mut self, peer: PeerId, name: &str, s: libp2p::Stream) {
        if self.swarm.is_connected(&peer) {
            self.shared.sessions.open(peer, &self.shared.token);
            if stream::accept_inbound(&self.shared, peer, name, s).is_none() {
                return;
            }
        }
        tracing::debug!(%peer, stream = name, "inbound stream from a peer that is gone");
        metrics::counter!("glueberry_inbound_streams_refused_total").increment(1);
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

/// The accept loop of one protocol: always polling, because libp2p-stream drops inbound
/// streams that find its one-slot queue full. It only hands each stream on; it never waits.
async fn accept_loop(
    shared: Arc<Shared>,
    name: String,
    mut incoming: libp2p_stream::IncomingStreams,
    orphans: mpsc::Sender<Orphan>,
) {
    let token = shared.token.clone();
    loop {
        let next = tokio::select! {
            biased;
            _ = token.cancelled() => break,
            next = incoming.next() => next,
        };
        let Some((peer, s)) = next else { break };
        if let Some(s) = stream::accept_inbound(&shared, peer, &name, s) {
            tokio::select! {
                biased;
                _ = token.cancelled() => break,
                _ = orphans.send((peer, name.clone(), s)) => {}
            }
        }
    }
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
