//! A toy blockchain network: a chain-aware handshake that refuses peers of another network, then
//! `consensus`, `mempool` and `sync` streams consumed by a pool of worker tasks.
//!
//! ```text
//! cargo run --example blockchain -- --demo      # 3 nodes on one chain, 1 on another; exits
//!
//! # two processes: a proposer, and a follower that dials it
//! cargo run --example blockchain -- --listen /ip4/127.0.0.1/tcp/4001 --propose
//! cargo run --example blockchain -- --peer /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
//! # a node of another chain is refused
//! cargo run --example blockchain -- --peer /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... --chain-id other
//! ```
//!
//! # Handshake (unencrypted `handshake` stream, one JSON object per message)
//!
//! ```text
//! {"type":"hello","chain_id":"glueberry-devnet","genesis_hash":"<64 hex>",
//!  "protocol_version":"1.2","public_key":"<64 hex: Ed25519>"}
//! {"type":"ready"}
//! ```
//!
//! Both sides send Hello when the peer becomes Connected (and answer a Hello with theirs if they
//! have not sent it yet). A received Hello is checked: another chain id or genesis hash gets the
//! peer blacklisted, another major protocol version gets it disconnected. An accepted Hello leads
//! to `prepare_streams` and Ready; the peer's Ready, once we have prepared, to
//! `finalize_handshake`. The two conditions are tracked per peer, so the order in which Hello
//! and Ready are handled does not matter.
//!
//! # After the handshake (encrypted streams, JSON)
//!
//! - `mempool`: transactions `{id, payload}`, `id` the hex SHA-256 of the payload.
//! - `consensus`: a proposal carrying a block, then the proposer's prevote and precommit for it.
//!   A block is committed once its proposal and both votes are in, in whatever order they came.
//! - `sync`: `get_blocks {from}` on every new peer; the answer is the blocks it has from there.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use glueberry::identity::ed25519;
use glueberry::wire::HANDSHAKE;
use glueberry::{
    Config, Event, Filter, IncomingMessage, Messages, Multiaddr, Node, PeerId, RecvError, State,
    Subscription,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// The encrypted streams every accepted peer gets.
const STREAMS: [&str; 3] = ["consensus", "mempool", "sync"];
/// Blocks the demo proposer has before the others join (they fetch them on `sync`).
const HISTORY: u64 = 3;
/// Transactions per block.
const TXS_PER_BLOCK: usize = 3;
/// How long a send may wait for room before it is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// The most blocks in one `sync` answer.
const MAX_SYNC_BLOCKS: usize = 64;

/// A toy blockchain on glueberry: chain-aware handshake, consensus/mempool/sync streams, and a
/// worker pool reading the message queue.
#[derive(Parser)]
#[command(after_help = "Example: blockchain --demo")]
struct Args {
    /// Run the self-contained demo (3 nodes on one chain, 1 on another), print a summary, exit.
    #[arg(long)]
    demo: bool,
    /// Address to listen on (two-process mode).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Multiaddr,
    /// A peer to dial, with its id: /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW... (two-process mode).
    #[arg(long)]
    peer: Option<PeerAddr>,
    /// Chain id sent in the Hello; peers on another chain are refused and blacklisted.
    #[arg(long, default_value = "glueberry-devnet")]
    chain_id: String,
    /// Genesis block contents; peers must have the same SHA-256 of it.
    #[arg(long, default_value = "glueberry genesis block")]
    genesis: String,
    /// Protocol version sent in the Hello, as major.minor; peers of another major are refused.
    #[arg(long, default_value = "1.2")]
    protocol_version: Version,
    /// Produce blocks (two-process mode): one every --block-ms to every established peer.
    #[arg(long)]
    propose: bool,
    /// Milliseconds between two blocks with --propose.
    #[arg(long, default_value_t = 1000)]
    block_ms: u64,
    /// Blocks the proposer produces in the demo.
    #[arg(long, default_value_t = 5)]
    blocks: u64,
    /// Worker tasks reading each node's message queue.
    #[arg(long, default_value_t = 4)]
    workers: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    init_logging();
    let args = Args::parse();
    if args.workers == 0 {
        return Err("--workers must be at least 1".into());
    }
    let dir = std::env::temp_dir().join(format!("glueberry-blockchain-{}", std::process::id()));
    let result = if args.demo {
        tokio::time::timeout(Duration::from_secs(30), demo(&args, &dir))
            .await
            .unwrap_or_else(|_| Err("demo timed out".into()))
    } else {
        run(&args, &dir).await
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Library logs on stderr, filtered by `RUST_LOG` (errors only by default).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// One process, four nodes: a proposer and two followers on the chain, and one node of another
/// chain. Every wait is on an event (the nodes' tallies), under the overall timeout of `main`.
async fn demo(args: &Args, dir: &Path) -> Result<(), Box<dyn Error>> {
    let ours = Chain::new(&args.chain_id, &args.genesis, args.protocol_version);
    let theirs = Chain::new("other-chain", &args.genesis, args.protocol_version);
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
    let start = |name: &'static str, chain: &Chain, history: u64| {
        ChainNode::start(
            name,
            chain.clone(),
            listen.clone(),
            args.workers,
            history,
            dir,
        )
    };
    let proposer = start("proposer", &ours, HISTORY).await?;
    let alice = start("alice", &ours, 0).await?;
    let bob = start("bob", &ours, 0).await?;
    let odd = start("odd", &theirs, 0).await?;
    for n in [&proposer, &alice, &bob, &odd] {
        println!(
            "{:>8} {} on {}",
            n.ctx.name,
            n.ctx.node.peer_id(),
            n.ctx.chain.id
        );
    }

    // The followers know the proposer and each other; the odd node knows the proposer. Adding a
    // peer to the book of a started node makes it dial.
    alice.add(&proposer).await?;
    bob.add(&proposer).await?;
    bob.add(&alice).await?;
    odd.add(&proposer).await?;

    // The three of the chain are established with each other; the odd one was refused (by the
    // proposer, or by itself if the proposer's Hello reached it first).
    for n in [&proposer, &alice, &bob] {
        n.wait_until(|t| t.established == 2).await?;
    }
    let refused = |t: &Tally| t.refused > 0;
    tokio::select! {
        r = proposer.wait_until(refused) => r?,
        r = odd.wait_until(refused) => r?,
    }

    for height in HISTORY + 1..=HISTORY + args.blocks {
        proposer.propose(height).await;
    }
    let chain_len = (HISTORY + args.blocks) as usize;
    let txs = args.blocks as usize * TXS_PER_BLOCK;
    for n in [&alice, &bob] {
        n.wait_until(|t| t.blocks == chain_len && t.txs == txs)
            .await?;
    }

    let (mut blocks, mut txs) = (0, 0);
    for n in [&proposer, &alice, &bob, &odd] {
        let t = n.ctx.tally.borrow().clone();
        println!(
            "{:>8}: tip {}, {} blocks and {} txs received, messages per worker {:?}",
            n.ctx.name,
            n.ctx.tip(),
            t.blocks,
            t.txs,
            t.per_worker
        );
        blocks += t.blocks;
        txs += t.txs;
    }
    let established = [&proposer, &alice, &bob]
        .iter()
        .filter(|n| n.ctx.tally.borrow().established == 2)
        .count();
    // The odd node never got in.
    let refused = usize::from(odd.ctx.tally.borrow().established == 0);
    for n in [proposer, alice, bob, odd] {
        n.shutdown().await;
    }
    println!(
        "demo: {established} nodes established, {refused} refused, {blocks} blocks, {txs} txs processed by {} workers",
        args.workers
    );
    Ok(())
}

/// Two-process mode: one node, optionally dialling `--peer` and proposing blocks, until Ctrl-C.
async fn run(args: &Args, dir: &Path) -> Result<(), Box<dyn Error>> {
    let chain = Chain::new(&args.chain_id, &args.genesis, args.protocol_version);
    let history = if args.propose { HISTORY } else { 0 };
    let n = ChainNode::start(
        "node",
        chain,
        args.listen.clone(),
        args.workers,
        history,
        dir,
    )
    .await?;
    let node = &n.ctx.node;
    for addr in node.listen_addrs() {
        println!("listening on {addr}/p2p/{}", node.peer_id());
    }
    if let Some(peer) = &args.peer {
        node.add_peer(peer.id, vec![peer.addr.clone()], HashMap::new())
            .await?;
    }
    let mut ticks = tokio::time::interval(Duration::from_millis(args.block_ms.max(1)));
    ticks.tick().await;
    let mut height = history;
    println!("Ctrl-C to stop");
    // One future for the whole loop: a Ctrl-C that comes while a block goes out is kept.
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick(), if args.propose => {
                height += 1;
                n.propose(height).await;
            }
        }
    }
    let t = n.ctx.tally.borrow().clone();
    println!(
        "tip {}, {} blocks and {} txs received, {} refused, messages per worker {:?}",
        n.ctx.tip(),
        t.blocks,
        t.txs,
        t.refused,
        t.per_worker
    );
    n.shutdown().await;
    Ok(())
}

// ---- The network a node belongs to, and the Hello check ----

/// What a node's Hello announces.
#[derive(Clone)]
struct Chain {
    id: String,
    /// Hex SHA-256 of the genesis string.
    genesis_hash: String,
    version: Version,
}

impl Chain {
    fn new(id: &str, genesis: &str, version: Version) -> Self {
        Self {
            id: id.to_owned(),
            genesis_hash: sha256_hex(genesis),
            version,
        }
    }

    /// Checks a peer's Hello. Returns the peer's public key, or why it is refused.
    fn check(&self, hello: &Hello) -> Result<[u8; 32], Refusal> {
        if hello.chain_id != self.id {
            return Err(Refusal::WrongChain("chain id mismatch"));
        }
        if hello.genesis_hash != self.genesis_hash {
            return Err(Refusal::WrongChain("genesis hash mismatch"));
        }
        let Ok(theirs) = hello.protocol_version.parse::<Version>() else {
            return Err(Refusal::Incompatible("malformed protocol version".into()));
        };
        if theirs.major != self.version.major {
            return Err(Refusal::Incompatible(format!(
                "protocol version mismatch (ours {}, theirs {theirs})",
                self.version
            )));
        }
        unhex32(&hello.public_key).ok_or(Refusal::Incompatible("malformed public key".into()))
    }
}

/// Why a peer is refused, which decides what is done with it.
enum Refusal {
    /// Another network: blacklisted, never to be dialled or accepted again.
    WrongChain(&'static str),
    /// Cannot talk to it now (old software, garbage): disconnected only.
    Incompatible(String),
}

/// A protocol version, `major.minor`. Peers must share the major.
#[derive(Clone, Copy, Debug)]
struct Version {
    major: u16,
    minor: u16,
}

impl FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (major, minor) = s.split_once('.').ok_or("expected major.minor")?;
        let number = |n: &str| n.parse::<u16>().map_err(|e| format!("{n:?}: {e}"));
        Ok(Self {
            major: number(major)?,
            minor: number(minor)?,
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

// ---- Wire messages (JSON) ----

/// Messages of the `handshake` stream.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Handshake {
    Hello(Hello),
    Ready,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    chain_id: String,
    genesis_hash: String,
    protocol_version: String,
    /// Hex Ed25519 public key, for `prepare_streams`.
    public_key: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct Block {
    height: u64,
    parent: String,
    /// Transaction ids.
    txs: Vec<String>,
    hash: String,
}

impl Block {
    fn new(height: u64, parent: String, txs: Vec<String>) -> Self {
        let hash = Self::hash(height, &parent, &txs);
        Self {
            height,
            parent,
            txs,
            hash,
        }
    }

    /// The hash of a block's contents: SHA-256 of `height:parent:tx,tx,...`, in hex.
    fn hash(height: u64, parent: &str, txs: &[String]) -> String {
        sha256_hex(format!("{height}:{parent}:{}", txs.join(",")))
    }

    fn is_valid(&self) -> bool {
        self.height > 0 && self.hash == Self::hash(self.height, &self.parent, &self.txs)
    }
}

/// A transaction of the `mempool` stream.
#[derive(Serialize, Deserialize)]
struct Tx {
    /// Hex SHA-256 of the payload.
    id: String,
    payload: String,
}

/// Messages of the `consensus` stream.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Consensus {
    Proposal {
        block: Block,
    },
    Vote {
        height: u64,
        hash: String,
        step: Step,
    },
}

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Step {
    Prevote,
    Precommit,
}

/// Messages of the `sync` stream.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Sync {
    GetBlocks { from: u64 },
    Blocks { blocks: Vec<Block> },
}

fn json(value: &impl Serialize) -> Bytes {
    serde_json::to_vec(value)
        .expect("our messages always serialise")
        .into()
}

// ---- A node of the chain ----

/// What a node's tasks report, watched by the demo (a `watch` channel: waits are event-driven).
#[derive(Clone, Default)]
struct Tally {
    /// Peers Established now.
    established: usize,
    /// Peers refused by the Hello check.
    refused: usize,
    /// Blocks received from peers (by `sync` or committed by consensus) and new to the ledger.
    blocks: usize,
    /// Transactions received and new to the mempool.
    txs: usize,
    /// Messages each worker took from the queue.
    per_worker: Vec<usize>,
}

/// What every task of a node shares.
struct Ctx {
    name: String,
    node: Node,
    chain: Chain,
    ledger: Mutex<BTreeMap<u64, Block>>,
    mempool: Mutex<HashSet<String>>,
    /// Established peers: who the proposer sends to.
    peers: Mutex<BTreeSet<PeerId>>,
    tally: watch::Sender<Tally>,
}

/// A glueberry node with its handshake task, consensus task and worker pool.
struct ChainNode {
    ctx: Arc<Ctx>,
    tasks: JoinSet<()>,
}

impl ChainNode {
    /// Starts a node with `history` blocks already in its ledger.
    async fn start(
        name: &str,
        chain: Chain,
        listen: Multiaddr,
        workers: usize,
        history: u64,
        dir: &Path,
    ) -> Result<Self, Box<dyn Error>> {
        let book: PathBuf = dir.join(format!("{name}.json"));
        let node = Node::new(Config::new(
            ed25519::Keypair::generate(),
            book,
            vec![listen],
        ))?;
        let mut ledger = BTreeMap::new();
        let mut parent = chain.genesis_hash.clone();
        for height in 1..=history {
            let block = Block::new(height, parent, Vec::new());
            parent = block.hash.clone();
            ledger.insert(height, block);
        }
        let ctx = Arc::new(Ctx {
            name: name.to_owned(),
            node: node.clone(),
            chain,
            ledger: Mutex::new(ledger),
            mempool: Mutex::default(),
            peers: Mutex::default(),
            tally: watch::Sender::new(Tally {
                per_worker: vec![0; workers],
                ..Tally::default()
            }),
        });

        // Subscribe before `start`, so that no Connected event is missed.
        let events = node.subscribe_filtered(Filter::all().states([
            State::Connected,
            State::Established,
            State::Disconnected,
        ]));
        let (handshakes, handshake_inbox) = mpsc::channel(64);
        let (consensus, consensus_inbox) = mpsc::channel(256);
        let mut tasks = JoinSet::new();
        tasks.spawn(handshake_task(ctx.clone(), events, handshake_inbox));
        tasks.spawn(consensus_task(ctx.clone(), consensus_inbox));
        for id in 0..workers {
            let lanes = (handshakes.clone(), consensus.clone());
            tasks.spawn(worker(id, ctx.clone(), node.messages(), lanes));
        }
        node.start().await?;
        Ok(Self { ctx, tasks })
    }

    /// Adds `other` to this node's address book: the node dials it (and redials it if lost).
    async fn add(&self, other: &ChainNode) -> glueberry::Result<()> {
        let other = &other.ctx.node;
        self.ctx
            .node
            .add_peer(other.peer_id(), other.listen_addrs(), HashMap::new())
            .await
    }

    /// Waits until the tally satisfies `done`.
    async fn wait_until(&self, done: impl FnMut(&Tally) -> bool) -> Result<(), Box<dyn Error>> {
        self.ctx.tally.subscribe().wait_for(done).await?;
        Ok(())
    }

    /// Produces block `height`: its transactions on `mempool`, then the proposal and the votes
    /// on `consensus`, to every established peer.
    async fn propose(&self, height: u64) {
        let ctx = &self.ctx;
        let txs: Vec<Tx> = (0..TXS_PER_BLOCK)
            .map(|i| {
                let payload = format!("{} pays {i} coins at height {height}", ctx.name);
                Tx {
                    id: sha256_hex(&payload),
                    payload,
                }
            })
            .collect();
        let parent = ctx.ledger().get(&(height - 1)).map_or_else(
            || ctx.chain.genesis_hash.clone(),
            |block| block.hash.clone(),
        );
        let block = Block::new(height, parent, txs.iter().map(|t| t.id.clone()).collect());
        ctx.ledger().insert(height, block.clone());
        let vote = |step| Consensus::Vote {
            height,
            hash: block.hash.clone(),
            step,
        };
        let consensus = [
            json(&Consensus::Proposal {
                block: block.clone(),
            }),
            json(&vote(Step::Prevote)),
            json(&vote(Step::Precommit)),
        ];
        let mempool: Vec<Bytes> = txs.iter().map(json).collect();
        let peers = ctx.peers.lock().expect("lock").clone();
        // Every peer concurrently, each with its own timeout: a slow peer holds up only itself.
        let batches = [("mempool", &mempool[..]), ("consensus", &consensus[..])];
        futures::future::join_all(peers.iter().map(|&peer| async move {
            for (stream, msgs) in batches {
                for msg in msgs {
                    if let Err(e) = ctx
                        .node
                        .send_timeout(peer, stream, msg.clone(), SEND_TIMEOUT)
                        .await
                    {
                        println!("[{}] {stream} to {}: {e}", ctx.name, short(&peer));
                    }
                }
            }
        }))
        .await;
        println!(
            "[{}] proposed block {height} to {} peer(s)",
            ctx.name,
            peers.len()
        );
    }

    /// Stops the node and waits for its tasks, which end when the queue and the events close.
    async fn shutdown(mut self) {
        self.ctx.node.shutdown().await;
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Ctx {
    fn ledger(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Block>> {
        self.ledger.lock().expect("ledger lock")
    }

    /// The highest height up to which the ledger has every block.
    fn tip(&self) -> u64 {
        let ledger = self.ledger();
        (1..)
            .take_while(|h| ledger.contains_key(h))
            .last()
            .unwrap_or(0)
    }

    /// Adds blocks received from a peer; counts the new ones.
    fn store(&self, blocks: impl IntoIterator<Item = Block>) -> usize {
        let mut ledger = self.ledger();
        let new = blocks
            .into_iter()
            .filter(|b| b.is_valid())
            .filter(|b| ledger.insert(b.height, b.clone()).is_none())
            .count();
        drop(ledger);
        self.tally.send_modify(|t| t.blocks += new);
        new
    }
}

// ---- The handshake task: one per node, owns every peer's handshake progress ----

/// Where a peer's handshake is. Hello and Ready may be handled in either order.
#[derive(Default)]
struct Progress {
    hello_sent: bool,
    prepared: bool,
    peer_ready: bool,
}

async fn handshake_task(
    ctx: Arc<Ctx>,
    mut events: Subscription,
    mut inbox: mpsc::Receiver<IncomingMessage>,
) {
    let mut progress: HashMap<PeerId, Progress> = HashMap::new();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(Event::Connection(e)) => match e.state {
                    State::Connected => {
                        send_hello(&ctx, progress.entry(e.peer).or_default(), e.peer).await;
                    }
                    State::Established => on_established(&ctx, e.peer).await,
                    State::Disconnected => {
                        progress.remove(&e.peer);
                        let peers = {
                            let mut peers = ctx.peers.lock().expect("lock");
                            peers.remove(&e.peer);
                            peers.len()
                        };
                        ctx.tally.send_modify(|t| t.established = peers);
                    }
                    _ => {}
                },
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            },
            msg = inbox.recv() => match msg {
                Some(msg) => on_handshake(&ctx, &mut progress, msg).await,
                None => break,
            },
        }
    }
}

/// Sends our Hello once per handshake.
async fn send_hello(ctx: &Ctx, p: &mut Progress, peer: PeerId) {
    if p.hello_sent {
        return;
    }
    p.hello_sent = true;
    let hello = Handshake::Hello(Hello {
        chain_id: ctx.chain.id.clone(),
        genesis_hash: ctx.chain.genesis_hash.clone(),
        protocol_version: ctx.chain.version.to_string(),
        public_key: hex(&ctx.node.public_key()),
    });
    if let Err(e) = ctx.node.send(peer, HANDSHAKE, json(&hello)).await {
        println!("[{}] hello to {}: {e}", ctx.name, short(&peer));
    }
}

async fn on_handshake(ctx: &Ctx, progress: &mut HashMap<PeerId, Progress>, msg: IncomingMessage) {
    let peer = msg.peer;
    let p = progress.entry(peer).or_default();
    let step = match serde_json::from_slice::<Handshake>(&msg.data) {
        Err(_) => Err(Refusal::Incompatible("not our handshake".into())),
        Ok(Handshake::Ready) => {
            p.peer_ready = true;
            Ok(())
        }
        Ok(Handshake::Hello(hello)) => {
            // Our Hello first, so that the peer learns who we are even if we refuse it.
            send_hello(ctx, p, peer).await;
            match ctx.chain.check(&hello) {
                Err(refusal) => Err(refusal),
                Ok(key) => match ctx.node.prepare_streams(peer, key, &STREAMS).await {
                    Ok(()) => {
                        p.prepared = true;
                        let ready = json(&Handshake::Ready);
                        if let Err(e) = ctx.node.send(peer, HANDSHAKE, ready).await {
                            println!("[{}] ready to {}: {e}", ctx.name, short(&peer));
                        }
                        Ok(())
                    }
                    // A key that is not the peer's own, or a peer already gone.
                    Err(e) => Err(Refusal::Incompatible(e.to_string())),
                },
            }
        }
    };
    match step {
        Ok(()) if p.prepared && p.peer_ready => {
            progress.remove(&peer);
            if let Err(e) = ctx.node.finalize_handshake(peer).await {
                println!("[{}] finalize {}: {e}", ctx.name, short(&peer));
            }
        }
        Ok(()) => {}
        Err(refusal) => {
            progress.remove(&peer);
            refuse(ctx, peer, refusal).await;
        }
    }
}

async fn refuse(ctx: &Ctx, peer: PeerId, refusal: Refusal) {
    let result = match &refusal {
        Refusal::WrongChain(why) => {
            println!("[{}] refused {peer}: {why}", ctx.name);
            ctx.node.blacklist_peer(peer).await
        }
        Refusal::Incompatible(why) => {
            println!("[{}] refused {peer}: {why}", ctx.name);
            ctx.node.disconnect(peer).await
        }
    };
    match result {
        // It closed the connection first (it refused us too).
        Ok(()) | Err(glueberry::Error::NotConnected(_)) => {}
        Err(e) => println!("[{}] closing {}: {e}", ctx.name, short(&peer)),
    }
    ctx.tally.send_modify(|t| t.refused += 1);
}

/// A peer is Established: the proposer will send to it, and we ask it for the blocks we lack.
async fn on_established(ctx: &Ctx, peer: PeerId) {
    let established = {
        let mut peers = ctx.peers.lock().expect("lock");
        peers.insert(peer);
        peers.len()
    };
    println!("[{}] established with {}", ctx.name, short(&peer));
    ctx.tally.send_modify(|t| t.established = established);
    let request = json(&Sync::GetBlocks {
        from: ctx.tip() + 1,
    });
    if let Err(e) = ctx
        .node
        .send_timeout(peer, "sync", request, SEND_TIMEOUT)
        .await
    {
        println!("[{}] sync request to {}: {e}", ctx.name, short(&peer));
    }
}

// ---- The worker pool ----

/// One of the workers. Each holds a clone of the node's queue, and each message goes to exactly
/// one of them, so the pool shares the load.
///
/// Order: two consecutive messages of one stream can be taken by two workers and handled in
/// either order, so per-stream order is not kept across the pool. That suits `mempool` and
/// `sync`, whose messages stand alone. Consensus state wants a single owner, so workers forward
/// consensus messages to one dedicated task over a bounded mpsc; the channel keeps the order in
/// which they were forwarded (and its bound pushes back on the workers, and so on the peers, when
/// consensus falls behind). Two workers may still forward in the other order than the peer sent,
/// so the consensus task does not rely on it: a vote that comes before its proposal waits for
/// it. Handshake messages go to the handshake task the same way, for the same reasons. To keep a
/// stream's exact order, read the queue from a single task that routes (docs/concurrency.md).
async fn worker(
    id: usize,
    ctx: Arc<Ctx>,
    messages: Messages,
    (handshakes, consensus): (mpsc::Sender<IncomingMessage>, mpsc::Sender<IncomingMessage>),
) {
    while let Ok(msg) = messages.recv().await {
        ctx.tally.send_modify(|t| t.per_worker[id] += 1);
        let routed = match &*msg.stream {
            HANDSHAKE => handshakes.send(msg).await.is_ok(),
            "consensus" => consensus.send(msg).await.is_ok(),
            "mempool" => {
                on_tx(&ctx, &msg);
                true
            }
            "sync" => {
                on_sync(&ctx, &msg).await;
                true
            }
            _ => true, // only prepared names reach the queue
        };
        if !routed {
            break; // the node is shutting down
        }
    }
}

fn on_tx(ctx: &Ctx, msg: &IncomingMessage) {
    let Ok(tx) = serde_json::from_slice::<Tx>(&msg.data) else {
        return;
    };
    if tx.id != sha256_hex(&tx.payload) {
        return;
    }
    if ctx.mempool.lock().expect("lock").insert(tx.id) {
        ctx.tally.send_modify(|t| t.txs += 1);
    }
}

async fn on_sync(ctx: &Ctx, msg: &IncomingMessage) {
    match serde_json::from_slice::<Sync>(&msg.data) {
        Ok(Sync::GetBlocks { from }) => {
            let blocks: Vec<Block> = ctx
                .ledger()
                .range(from..)
                .take(MAX_SYNC_BLOCKS)
                .map(|(_, b)| b.clone())
                .collect();
            if blocks.is_empty() {
                return;
            }
            let reply = json(&Sync::Blocks { blocks });
            // A worker must not wait without bound on a send (docs/concurrency.md, deadlocks).
            if let Err(e) = ctx
                .node
                .send_timeout(msg.peer, "sync", reply, SEND_TIMEOUT)
                .await
            {
                println!("[{}] sync reply to {}: {e}", ctx.name, short(&msg.peer));
            }
        }
        Ok(Sync::Blocks { blocks }) => {
            let new = ctx.store(blocks);
            if new == 0 {
                return;
            }
            println!(
                "[{}] synced {new} block(s) from {}",
                ctx.name,
                short(&msg.peer)
            );
        }
        Err(_) => {}
    }
}

// ---- The consensus task: the single owner of consensus state ----

/// A height's proposal and votes, gathered in whatever order they arrive.
#[derive(Default)]
struct Round {
    proposal: Option<Block>,
    prevote: Option<String>,
    precommit: Option<String>,
}

async fn consensus_task(ctx: Arc<Ctx>, mut inbox: mpsc::Receiver<IncomingMessage>) {
    let mut rounds: BTreeMap<u64, Round> = BTreeMap::new();
    while let Some(msg) = inbox.recv().await {
        let height = match serde_json::from_slice::<Consensus>(&msg.data) {
            Ok(Consensus::Proposal { block }) if block.is_valid() => {
                let height = block.height;
                rounds.entry(height).or_default().proposal = Some(block);
                height
            }
            Ok(Consensus::Vote { height, hash, step }) => {
                let round = rounds.entry(height).or_default();
                match step {
                    Step::Prevote => round.prevote = Some(hash),
                    Step::Precommit => round.precommit = Some(hash),
                }
                height
            }
            _ => continue, // an invalid block or not JSON: ignored
        };
        let Some(round) = rounds.get(&height) else {
            continue;
        };
        if let (Some(block), Some(prevote), Some(precommit)) =
            (&round.proposal, &round.prevote, &round.precommit)
        {
            if *prevote == block.hash && *precommit == block.hash {
                let txs = block.txs.len();
                ctx.store([block.clone()]);
                println!("[{}] committed block {height} ({txs} txs)", ctx.name);
            }
            rounds.remove(&height);
        }
    }
}

// ---- Small helpers ----

/// `--peer`: a multiaddress ending in `/p2p/<peer id>`.
#[derive(Clone)]
struct PeerAddr {
    id: PeerId,
    addr: Multiaddr,
}

impl FromStr for PeerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, id) = s
            .rsplit_once("/p2p/")
            .ok_or("expected <multiaddr>/p2p/<peer id>")?;
        Ok(Self {
            id: id.parse().map_err(|e| format!("peer id: {e}"))?,
            addr: addr.parse().map_err(|e| format!("multiaddr: {e}"))?,
        })
    }
}

fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(data.as_ref()))
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

fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("{}…", &s[s.len().saturating_sub(8)..])
}
