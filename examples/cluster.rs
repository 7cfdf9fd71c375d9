//! A cluster of nodes in one process: a bootstrap node, membership gossip, and broadcasts to
//! every established peer while nodes leave and join.
//!
//! ```text
//! cargo run --example cluster -- --demo              # 5 nodes, one leaves, one joins; exits
//! cargo run --example cluster -- --demo --nodes 8
//! cargo run --example cluster                        # broadcast every second, churn, Ctrl-C
//! ```
//!
//! Node 0 is the bootstrap: every other node only knows its address, dials it and runs the
//! byte-tag handshake of the Go examples on the `handshake` stream (1 Hello, 2 PubKey + 32-byte
//! Ed25519 key, 3 Complete). Everything else a node learns through gossip on the encrypted
//! `members` stream, as JSON:
//!
//! ```text
//! {"type":"members","members":[{"peer":"12D3KooW...","addrs":["/ip4/127.0.0.1/tcp/40123"],
//!   "public_key":"<64 hex>"}, ...],"left":["12D3KooW...", ...]}
//! {"type":"leave"}
//! ```
//!
//! A node sends its whole table (itself included) to each peer once Established, and to every
//! established peer whenever the table changes; it adds each new member to its address book, so
//! the node dials it. A node that leaves says so (`leave`), its peers forget it, close its
//! connection and gossip a tombstone (`left`) so that nobody dials it again. Broadcasts go on the
//! `broadcast` stream to every Established peer at once, each send with its own timeout, so one
//! slow peer never holds up the others.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use glueberry::identity::{self, ed25519};
use glueberry::wire::HANDSHAKE;
use glueberry::{
    Config, Event, Filter, IncomingMessage, Messages, Multiaddr, Node, PeerId, RecvError, State,
    Subscription,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Handshake message tags of the Go examples.
const HELLO: u8 = 1;
const PUBKEY: u8 = 2;
const COMPLETE: u8 = 3;
/// The encrypted streams of every member.
const STREAMS: [&str; 2] = ["members", "broadcast"];
/// How long a send may wait for room before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a leaving node waits for its peers to let it go.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A cluster of glueberry nodes in one process: bootstrap, membership gossip, broadcast.
#[derive(Parser)]
#[command(after_help = "Example: cluster --demo --nodes 5")]
struct Args {
    /// Nodes to start; node 0 is the bootstrap (at least 2).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Run the demo: full mesh, a broadcast round, one node leaves and one joins, another
    /// round; print the counts and exit.
    #[arg(long)]
    demo: bool,
    /// Milliseconds between two broadcast rounds (without --demo).
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Without --demo: every this many rounds one node leaves and a new one joins (0: never).
    #[arg(long, default_value_t = 5)]
    churn: u64,
    /// Seconds the demo may take before it gives up.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    let dir = std::env::temp_dir().join(format!("glueberry-cluster-{}", std::process::id()));
    let result = if args.demo {
        let limit = Duration::from_secs(args.timeout);
        tokio::time::timeout(limit, demo(&args, &dir))
            .await
            .unwrap_or_else(|_| Err(format!("demo timed out after {limit:?}").into()))
    } else {
        interactive(&args, &dir).await
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The non-interactive demo. Every wait is on the nodes' views (watch channels fed by their
/// events and messages), never a sleep; `main` puts an overall timeout around it.
async fn demo(args: &Args, dir: &Path) -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    let mut cluster = Cluster::new(dir);
    for _ in 0..args.nodes {
        cluster.spawn().await?;
    }
    cluster.settled().await?;
    println!(
        "mesh full: {} nodes, each established with {} peers ({} ms)",
        cluster.live.len(),
        cluster.live.len() - 1,
        started.elapsed().as_millis()
    );
    let delivered = cluster.round(1).await?;
    println!("round 1: {delivered} broadcasts delivered");

    let leaver = cluster.leave().await?;
    println!("{} left", leaver.name);
    let joiner = cluster.spawn().await?;
    println!("{joiner} joined");
    cluster.settled().await?;
    println!(
        "mesh full again: {} nodes ({} ms)",
        cluster.live.len(),
        started.elapsed().as_millis()
    );
    let delivered = cluster.round(2).await?;
    println!("round 2: {delivered} broadcasts delivered");

    for (n, note) in cluster
        .live
        .iter()
        .map(|n| (n, ""))
        .chain([(&leaver, " (left)")])
    {
        let v = n.view.borrow();
        println!(
            "{}{note}: {} peers, sent {}, received {}",
            n.name,
            v.established.len(),
            v.sent,
            v.received.values().map(BTreeSet::len).sum::<usize>()
        );
    }
    let nodes = cluster.live.len();
    leaver.shutdown().await;
    cluster.shutdown().await;
    println!("demo: {nodes} nodes, full mesh, 1 left, 1 joined, all broadcasts delivered");
    Ok(())
}

/// Without --demo: a broadcast round every --interval-ms and churn every --churn rounds, until
/// Ctrl-C.
async fn interactive(args: &Args, dir: &Path) -> Result<(), Box<dyn Error>> {
    let mut cluster = Cluster::new(dir);
    for _ in 0..args.nodes {
        cluster.spawn().await?;
    }
    println!("{} nodes started; Ctrl-C to stop", cluster.live.len());
    let mut ticks = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    // One future for the whole loop: a Ctrl-C that comes while the loop is busy is kept.
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    let mut round = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
        }
        round += 1;
        if args.churn > 0 && round % args.churn == 0 {
            let left = cluster.leave().await?;
            let joined = cluster.spawn().await?;
            println!("{} left, {joined} joined", left.name);
            left.shutdown().await;
        }
        for n in &cluster.live {
            n.commands.send(Command::Broadcast(round)).await?;
        }
        let status: Vec<String> = cluster
            .live
            .iter()
            .map(|n| {
                let v = n.view.borrow();
                let received = v.received.values().map(BTreeSet::len).sum::<usize>();
                format!("{} {}p/{}r", n.name, v.established.len(), received)
            })
            .collect();
        println!("round {round}: {}", status.join(", "));
    }
    cluster.shutdown().await;
    Ok(())
}

// ---- The cluster as the demo sees it ----

/// The nodes of this process.
struct Cluster {
    dir: PathBuf,
    /// Names handed out so far.
    started: usize,
    /// The bootstrap first, then the others, oldest first.
    live: Vec<ClusterNode>,
}

impl Cluster {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            started: 0,
            live: Vec::new(),
        }
    }

    /// Starts a node; every node but the first is given the bootstrap's address. Returns its
    /// name.
    async fn spawn(&mut self) -> Result<String, Box<dyn Error>> {
        let name = format!("node-{}", self.started);
        self.started += 1;
        let bootstrap = self
            .live
            .first()
            .map(|b| (b.node.peer_id(), b.node.listen_addrs()));
        let node = ClusterNode::start(&name, &self.dir, bootstrap).await?;
        self.live.push(node);
        Ok(name)
    }

    /// Makes the oldest node but the bootstrap leave. Returns it, shut down, for its counts.
    async fn leave(&mut self) -> Result<ClusterNode, Box<dyn Error>> {
        if self.live.len() < 2 {
            return Err("no node to leave".into());
        }
        let node = self.live.remove(1);
        node.leave().await;
        Ok(node)
    }

    /// Waits until every live node is Established with every other one and knows exactly the
    /// live nodes as members.
    async fn settled(&self) -> Result<(), Box<dyn Error>> {
        let ids: BTreeSet<PeerId> = self.live.iter().map(|n| n.node.peer_id()).collect();
        let settled = |n: &ClusterNode, v: &View| {
            let mut others = ids.clone();
            others.remove(&n.node.peer_id());
            v.established == others && v.members == others
        };
        self.wait_all(settled).await
    }

    /// Every live node broadcasts round `round`; waits until every node has it from every
    /// other. Returns the number of messages delivered.
    async fn round(&self, round: u64) -> Result<usize, Box<dyn Error>> {
        for n in &self.live {
            n.commands.send(Command::Broadcast(round)).await?;
        }
        let others = self.live.len() - 1;
        self.wait_all(|_, v| {
            v.rounds_sent >= round && v.received.get(&round).map_or(0, BTreeSet::len) == others
        })
        .await?;
        Ok(self.live.len() * others)
    }

    /// Waits until `done` holds for every live node at once.
    async fn wait_all(
        &self,
        done: impl Fn(&ClusterNode, &View) -> bool,
    ) -> Result<(), Box<dyn Error>> {
        loop {
            for n in &self.live {
                n.view.subscribe().wait_for(|v| done(n, v)).await?;
            }
            // One node's view may have changed while we waited for the next ones: check again.
            if self.live.iter().all(|n| done(n, &n.view.borrow())) {
                return Ok(());
            }
        }
    }

    async fn shutdown(self) {
        for n in self.live {
            n.shutdown().await;
        }
    }
}

// ---- One node ----

/// What a node's control task reports.
#[derive(Clone, Default)]
struct View {
    /// Peers Established now.
    established: BTreeSet<PeerId>,
    /// Members known through gossip (not counting itself).
    members: BTreeSet<PeerId>,
    /// Broadcasts received, by round: from whom.
    received: BTreeMap<u64, BTreeSet<PeerId>>,
    /// Broadcasts sent (queued).
    sent: usize,
    /// The last round whose sends are done.
    rounds_sent: u64,
    /// The node said it leaves.
    leaving: bool,
}

/// What the demo asks of a node.
enum Command {
    /// Send a broadcast of this round to every Established peer.
    Broadcast(u64),
    /// Leave the cluster.
    Leave,
}

/// A glueberry node and its control task.
struct ClusterNode {
    name: String,
    node: Node,
    view: Arc<watch::Sender<View>>,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl ClusterNode {
    async fn start(
        name: &str,
        dir: &Path,
        bootstrap: Option<(PeerId, Vec<Multiaddr>)>,
    ) -> Result<Self, Box<dyn Error>> {
        let config = Config::new(
            ed25519::Keypair::generate(),
            dir.join(format!("{name}.json")),
            vec!["/ip4/127.0.0.1/tcp/0".parse()?],
        );
        let node = Node::new(config)?;
        // Subscribe before `start`, so that no Connected event is missed.
        let events = node.subscribe_filtered(Filter::all().states([
            State::Connected,
            State::Established,
            State::Disconnected,
        ]));
        let view = Arc::new(watch::Sender::new(View::default()));
        let (commands, inbox) = mpsc::channel(16);
        let control = Control {
            node: node.clone(),
            members: BTreeMap::new(),
            left: BTreeSet::new(),
            established: BTreeSet::new(),
            hello_sent: HashSet::new(),
            leaving: false,
            view: view.clone(),
        };
        let task = tokio::spawn(control.run(events, node.messages(), inbox));
        node.start().await?;
        if let Some((peer, addrs)) = bootstrap {
            // In the book: the node dials it now, and again whenever it is lost.
            node.add_peer(peer, addrs, HashMap::new()).await?;
        }
        Ok(Self {
            name: name.to_owned(),
            node,
            view,
            commands,
            task,
        })
    }

    /// Says goodbye, waits (bounded) until every peer has closed its connection, and shuts down.
    async fn leave(&self) {
        if self.commands.send(Command::Leave).await.is_ok() {
            let mut view = self.view.subscribe();
            let gone = view.wait_for(|v| v.leaving && v.established.is_empty());
            let _ = tokio::time::timeout(LEAVE_TIMEOUT, gone).await;
        }
        self.node.shutdown().await;
    }

    async fn shutdown(self) {
        self.node.shutdown().await;
        let _ = self.task.await;
    }
}

// ---- Wire messages of the `members` and `broadcast` streams (JSON) ----

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Membership {
    /// What the sender knows: the members (itself included) and who left.
    Members {
        members: Vec<WireMember>,
        left: Vec<String>,
    },
    /// The sender leaves: forget it and close its connection.
    Leave,
}

#[derive(Serialize, Deserialize)]
struct WireMember {
    peer: String,
    addrs: Vec<String>,
    /// Hex Ed25519 public key; it must be the key of `peer`.
    public_key: String,
}

#[derive(Serialize, Deserialize)]
struct Broadcast {
    round: u64,
    text: String,
}

fn json(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value)
        .expect("our messages always serialise")
        .into()
}

// ---- The control task: one per node, owns the membership table ----

/// A member as this node knows it.
struct Member {
    addrs: Vec<Multiaddr>,
    public_key: [u8; 32],
}

struct Control {
    node: Node,
    members: BTreeMap<PeerId, Member>,
    /// Tombstones: members that left, never to be added again.
    left: BTreeSet<PeerId>,
    established: BTreeSet<PeerId>,
    /// Peers our Hello went to, in the handshake under way.
    hello_sent: HashSet<PeerId>,
    leaving: bool,
    view: Arc<watch::Sender<View>>,
}

impl Control {
    /// Handles events, messages and commands one at a time, so that a peer's handshake steps
    /// are handled in order. It only ever waits on the node for short steps; sends that may
    /// wait for a peer are spawned.
    async fn run(
        mut self,
        mut events: Subscription,
        messages: Messages,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(Event::Connection(e)) => self.on_state(e.peer, e.state).await,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                msg = messages.recv() => match msg {
                    Ok(msg) => self.on_message(msg).await,
                    Err(_) => break,
                },
                command = commands.recv() => match command {
                    Some(Command::Broadcast(round)) => self.broadcast(round),
                    Some(Command::Leave) => self.leave().await,
                    None => break,
                },
            }
        }
    }

    async fn on_state(&mut self, peer: PeerId, state: State) {
        match state {
            State::Connected if self.leaving || self.left.contains(&peer) => {
                let _ = self.node.disconnect(peer).await;
            }
            State::Connected => self.hello(peer).await,
            State::Established => {
                self.hello_sent.remove(&peer);
                self.established.insert(peer);
                self.publish();
                self.send_table(vec![peer]);
            }
            State::Disconnected => {
                self.hello_sent.remove(&peer);
                self.established.remove(&peer);
                self.publish();
            }
            _ => {}
        }
    }

    async fn on_message(&mut self, msg: IncomingMessage) {
        let peer = msg.peer;
        match &*msg.stream {
            HANDSHAKE => {
                if let Err(e) = self.on_handshake(peer, &msg.data).await {
                    report("handshake with", peer, &e);
                }
            }
            "members" => match serde_json::from_slice::<Membership>(&msg.data) {
                Ok(Membership::Members { members, left }) => self.merge(members, left).await,
                Ok(Membership::Leave) => {
                    self.forget(peer).await;
                    self.publish();
                    self.send_table(self.established.iter().copied().collect());
                }
                Err(_) => {}
            },
            "broadcast" => {
                if let Ok(b) = serde_json::from_slice::<Broadcast>(&msg.data) {
                    self.view.send_modify(|v| {
                        v.received.entry(b.round).or_default().insert(peer);
                    });
                }
            }
            _ => {}
        }
    }

    // -- The byte-tag handshake; both sides send Hello when the peer becomes Connected --

    /// Sends our Hello once per handshake.
    async fn hello(&mut self, peer: PeerId) {
        if self.hello_sent.insert(peer)
            && let Err(e) = self.node.send(peer, HANDSHAKE, vec![HELLO]).await
        {
            report("hello to", peer, &e);
        }
    }

    async fn on_handshake(&mut self, peer: PeerId, data: &[u8]) -> glueberry::Result<()> {
        if self.leaving || self.left.contains(&peer) {
            return self.node.disconnect(peer).await;
        }
        match (data.first(), data.len()) {
            (Some(&HELLO), 1) => {
                self.hello(peer).await; // our Hello always goes before our PubKey
                let mut pubkey = vec![PUBKEY];
                pubkey.extend_from_slice(&self.node.public_key());
                self.node.send(peer, HANDSHAKE, pubkey).await
            }
            (Some(&PUBKEY), 33) => {
                // Checks that the key is the peer's own before accepting its streams.
                self.node
                    .prepare_streams(peer, &data[1..], &STREAMS)
                    .await?;
                self.node.send(peer, HANDSHAKE, vec![COMPLETE]).await
            }
            (Some(&COMPLETE), 1) => match self.node.finalize_handshake(peer).await {
                // A duplicate Complete: already done.
                Err(glueberry::Error::InvalidState {
                    state: State::Established,
                    ..
                }) => Ok(()),
                r => r,
            },
            _ => self.node.disconnect(peer).await, // not our protocol
        }
    }

    // -- Membership --

    /// Merges a peer's table into ours: new members are dialled, tombstones applied. If
    /// anything changed, tells every established peer.
    async fn merge(&mut self, members: Vec<WireMember>, left: Vec<String>) {
        let mut changed = false;
        for peer in left.iter().filter_map(|p| p.parse::<PeerId>().ok()) {
            if peer != self.node.peer_id() && !self.left.contains(&peer) {
                self.forget(peer).await;
                changed = true;
            }
        }
        let mut new = Vec::new();
        for wire in members {
            let Some((peer, member)) = parse_member(&wire) else {
                continue; // malformed, or a key that is not the peer's: ignored
            };
            if peer != self.node.peer_id()
                && !self.left.contains(&peer)
                && !self.members.contains_key(&peer)
            {
                new.push((peer, member.addrs.clone()));
                self.members.insert(peer, member);
            }
        }
        // Into the book: the node dials them (a peer may be dialling us at the same time; the
        // node keeps one connection). Added together, so that their book writes are batched.
        let node = &self.node;
        let added = new.iter().map(|(peer, addrs)| async move {
            if let Err(e) = node.add_peer(*peer, addrs.clone(), HashMap::new()).await {
                report("add", *peer, &e);
            }
        });
        futures::future::join_all(added).await;
        changed |= !new.is_empty();
        if changed {
            self.publish();
            self.send_table(self.established.iter().copied().collect());
        }
    }

    /// A member left: tombstone it, stop dialling it, close its connection.
    async fn forget(&mut self, peer: PeerId) {
        self.left.insert(peer);
        self.members.remove(&peer);
        self.established.remove(&peer);
        let _ = self.node.remove_peer(peer).await;
        let _ = self.node.disconnect(peer).await;
    }

    /// Our table, ourselves included.
    fn table(&self) -> Membership {
        let me = WireMember {
            peer: self.node.peer_id().to_string(),
            addrs: self
                .node
                .listen_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            public_key: hex(&self.node.public_key()),
        };
        let others = self.members.iter().map(|(peer, m)| WireMember {
            peer: peer.to_string(),
            addrs: m.addrs.iter().map(|a| a.to_string()).collect(),
            public_key: hex(&m.public_key),
        });
        Membership::Members {
            members: std::iter::once(me).chain(others).collect(),
            left: self.left.iter().map(|p| p.to_string()).collect(),
        }
    }

    fn send_table(&self, to: Vec<PeerId>) {
        let table = json(&self.table());
        let node = self.node.clone();
        tokio::spawn(async move { send_all(&node, &to, "members", table).await });
    }

    /// Leaves: stop dialling anyone, and tell every peer (they close the connections).
    async fn leave(&mut self) {
        self.leaving = true;
        let removed = self.members.keys().map(|&peer| self.node.remove_peer(peer));
        futures::future::join_all(removed).await;
        let to: Vec<PeerId> = self.established.iter().copied().collect();
        send_all(&self.node, &to, "members", json(&Membership::Leave)).await;
        self.view.send_modify(|v| v.leaving = true);
    }

    // -- Broadcast --

    /// Sends round `round` to every Established peer, concurrently, off this task.
    fn broadcast(&self, round: u64) {
        let to: Vec<PeerId> = self.established.iter().copied().collect();
        let message = json(&Broadcast {
            round,
            text: format!("hello from {}", self.node.peer_id()),
        });
        let (node, view) = (self.node.clone(), self.view.clone());
        tokio::spawn(async move {
            let sent = send_all(&node, &to, "broadcast", message).await;
            view.send_modify(|v| {
                v.sent += sent;
                v.rounds_sent = v.rounds_sent.max(round);
            });
        });
    }

    /// Shows the table and the established peers to the demo.
    fn publish(&self) {
        let members = self.members.keys().copied().collect();
        let established = self.established.clone();
        self.view.send_modify(|v| {
            v.members = members;
            v.established = established;
        });
    }
}

/// Sends `data` to every peer of `to` at once, each with its own timeout, so that a slow peer
/// holds up only itself. Returns how many were queued.
async fn send_all(node: &Node, to: &[PeerId], stream: &str, data: Bytes) -> usize {
    let sends = to.iter().map(|&peer| {
        let data = data.clone(); // a Bytes clone shares the payload
        async move {
            let r = node.send_timeout(peer, stream, data, SEND_TIMEOUT).await;
            if let Err(e) = &r {
                report(&format!("{stream} to"), peer, e);
            }
            r.is_ok()
        }
    });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count()
}

/// Prints an error on stderr, unless it only says that the peer or this node is gone: with
/// nodes leaving, that is expected.
fn report(what: &str, peer: PeerId, e: &glueberry::Error) {
    if !matches!(
        e,
        glueberry::Error::NotConnected(_) | glueberry::Error::Shutdown
    ) {
        eprintln!("{what} {peer}: {e}");
    }
}

/// A gossiped member, checked: its key must be the key of its peer id, and it must have an
/// address. `None` for anything else (never panics on what a peer sends).
fn parse_member(wire: &WireMember) -> Option<(PeerId, Member)> {
    let peer: PeerId = wire.peer.parse().ok()?;
    let public_key = unhex32(&wire.public_key)?;
    let key = ed25519::PublicKey::try_from_bytes(&public_key).ok()?;
    if PeerId::from_public_key(&identity::PublicKey::from(key)) != peer {
        return None;
    }
    let addrs: Vec<Multiaddr> = wire.addrs.iter().filter_map(|a| a.parse().ok()).collect();
    (!addrs.is_empty()).then_some((peer, Member { addrs, public_key }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits to 32 bytes; `None` for anything else.
fn unhex32(s: &str) -> Option<[u8; 32]> {
    let digits = s.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}
