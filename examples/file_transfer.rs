//! Sends a large file to a peer in chunks, on an encrypted stream of its own (`file`), under
//! glueberry's flow control, with progress bars and a SHA-256 check at the end.
//!
//! ```text
//! cargo run --release --example file_transfer -- --demo                 # 16 MiB, one process
//! cargo run --release --example file_transfer -- --demo --size 256 --drop-after 100
//! cargo run --release --example file_transfer -- receive --listen /ip4/127.0.0.1/tcp/4001 --out copy.iso
//! cargo run --release --example file_transfer -- send --peer /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW… big.iso
//! ```
//!
//! `--demo` runs a sender node and a receiver node in one process on a generated file; both
//! public keys are known there, so each node simply calls `complete_handshake`. In the
//! two-process mode the nodes run the byte-tag handshake of the Go examples on the `handshake`
//! stream instead (the sender dials and speaks first). Progress bars go to stderr, and are
//! hidden when stdout is not a terminal or with `--quiet`.
//!
//! # Protocol on stream `file`
//!
//! One transfer per connection; each step is one glueberry message:
//!
//! 1. sender → receiver, the header, JSON:
//!    `{"name":"big.iso","size":1048576,"sha256":"<64 hex digits>","chunk_size":65536}`;
//! 2. sender → receiver, the content, in `ceil(size / chunk_size)` messages of `chunk_size`
//!    bytes (the last one shorter if need be). A stream delivers in order: chunks carry no
//!    offset;
//! 3. receiver → sender, the result, JSON: `{"ok":true,"bytes":1048576,"sha256":"<hex>"}` or
//!    `{"ok":false,"error":"…"}`.
//!
//! The receiver writes to the path it is given: the name in the header is only displayed.
//!
//! Flow control is glueberry's own: `send` waits while `high_watermark` messages are queued on
//! the (peer, `file`) stream, so the sender holds at most that many chunks (64 here: 4 MiB)
//! whatever the size of the file, and the receiver's incoming queue is bounded the same way.
//! If the peer disconnects mid-transfer, either side stops with `peer went away` and exit
//! code 2.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use glueberry::identity::ed25519;
use glueberry::{
    Config, Event, Filter, IncomingMessage, Messages, Multiaddr, Node, PeerId, RecvError, State,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The stream of the transfer.
const FILE: &str = "file";
/// Bytes per chunk message (the default `max_message_size` is 1 MiB).
const CHUNK_SIZE: usize = 64 * 1024;
/// Handshake message tags of the Go examples.
const HELLO: u8 = 1;
const PUBKEY: u8 = 2;
const COMPLETE: u8 = 3;

/// Sends a file to a peer in chunks on an encrypted stream, verified with SHA-256.
#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    /// Runs a sender and a receiver in this process on a generated file, then exits.
    #[arg(long)]
    demo: bool,
    /// Size of the generated file of --demo, in MiB.
    #[arg(long, default_value_t = 16, value_name = "MIB", requires = "demo")]
    size: u64,
    /// With --demo: the receiver shuts down after this many chunks, to show how the sender
    /// reports a peer that went away (exit code 2).
    #[arg(long, value_name = "CHUNKS", requires = "demo")]
    drop_after: Option<u64>,
    /// Hides the progress bars (they are hidden anyway when stdout is not a terminal).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Waits for one file, writes it, verifies it and exits.
    Receive {
        /// Address to listen on (port 0 picks a free one; /ip4/0.0.0.0/tcp/<port> for every
        /// interface).
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
        listen: Multiaddr,
        /// Where to write the received file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sends a file to a receiver.
    Send {
        /// The receiver's address, as it printed it (ending in /p2p/<peer id>).
        #[arg(long)]
        peer: Multiaddr,
        /// The file to send.
        file: PathBuf,
    },
}

/// Step 1: what the receiver is about to get.
#[derive(Serialize, Deserialize)]
struct Header {
    name: String,
    size: u64,
    sha256: String,
    chunk_size: usize,
}

/// Step 3: the receiver's verdict.
#[derive(Serialize, Deserialize)]
struct Outcome {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The peer disconnected before the transfer was over (exit code 2).
#[derive(Debug)]
struct PeerGone(String);

impl std::fmt::Display for PeerGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer went away: {}", self.0)
    }
}

impl std::error::Error for PeerGone {}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let progress = Progress::new(args.quiet);
    let result = match args.command {
        None if args.demo => demo(args.size, args.drop_after, &progress).await,
        None => Err("give --demo, or a `receive` or `send` command (see --help)".into()),
        Some(Command::Receive { listen, out }) => receive(listen, &out, &progress).await,
        Some(Command::Send { peer, file }) => send(peer, &file, &progress).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is::<PeerGone>() { 2 } else { 1 })
        }
    }
}

/// Two nodes in this process: the sender sends a generated file, the receiver verifies it.
async fn demo(size_mib: u64, drop_after: Option<u64>, progress: &Progress) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("glueberry-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (source, copy) = (dir.join("random.bin"), dir.join("received.bin"));
    write_random_file(&source, size_mib * 1024 * 1024)?;
    let sender = make_node(&dir, "sender", "/ip4/127.0.0.1/tcp/0")?;
    let receiver = make_node(&dir, "receiver", "/ip4/127.0.0.1/tcp/0")?;
    let result = async {
        sender.start().await?;
        receiver.start().await?;
        pair(&sender, &receiver).await?;
        let (sent, received) = tokio::join!(
            send_file(
                &sender,
                Inbox::new(&sender),
                receiver.peer_id(),
                &source,
                progress
            ),
            receive_file(
                &receiver,
                Inbox::new(&receiver),
                sender.peer_id(),
                &copy,
                drop_after,
                progress,
            ),
        );
        // The sender's error first: with --drop-after, it is the one that matters.
        sent?;
        let (bytes, sha256) = received?;
        println!("verified: {bytes} bytes, sha256 {sha256}");
        Ok(())
    }
    .await;
    sender.shutdown().await;
    receiver.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Listens, waits for a sender, receives one file into `out`.
async fn receive(listen: Multiaddr, out: &Path, progress: &Progress) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("glueberry-file-{}", std::process::id()));
    let node = make_node(&dir, "receiver", &listen.to_string())?;
    let result = async {
        for addr in node.start().await? {
            println!("listening on {addr}/p2p/{}", node.peer_id());
        }
        let mut inbox = Inbox::new(&node);
        let peer = handshake(&node, &mut inbox, None).await?;
        println!("sender {peer} connected");
        let received = receive_file(&node, inbox, peer, out, None, progress).await;
        // The sender hangs up once it has our verdict: wait for that (a while at most), so
        // that the verdict is not lost in our own shutdown.
        let _ = tokio::time::timeout(Duration::from_secs(5), peer_gone(&node, peer)).await;
        let (bytes, sha256) = received?;
        println!("verified: {bytes} bytes, sha256 {sha256}");
        Ok(())
    }
    .await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Dials the receiver at `addr` and sends it `file`.
async fn send(addr: Multiaddr, file: &Path, progress: &Progress) -> Result<()> {
    let (peer, addr) = split_peer_id(addr)?;
    let dir = std::env::temp_dir().join(format!("glueberry-file-{}", std::process::id()));
    let node = make_node(&dir, "sender", "/ip4/0.0.0.0/tcp/0")?;
    let result = async {
        node.start().await?;
        node.add_peer(peer, vec![addr], HashMap::new()).await?;
        node.connect(peer).await?;
        let mut inbox = Inbox::new(&node);
        tokio::time::timeout(
            Duration::from_secs(30),
            handshake(&node, &mut inbox, Some(peer)),
        )
        .await
        .map_err(|_| "the handshake did not finish within 30 s")??;
        send_file(&node, inbox, peer, file, progress).await
    }
    .await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Sends the header, then the chunks, then waits for the receiver's verdict. Fails with
/// [`PeerGone`] if the peer disconnects first.
async fn send_file(
    node: &Node,
    mut inbox: Inbox,
    peer: PeerId,
    path: &Path,
    progress: &Progress,
) -> Result<()> {
    let gone = peer_gone(node, peer);
    let (size, sha256) = tokio::task::block_in_place(|| hash_file(path))?;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    progress.println(format!("sending {name}: {size} bytes, sha256 {sha256}"));
    let bar = progress.bar("sent", size);
    let transfer = async {
        let header = Header {
            name,
            size,
            sha256: sha256.clone(),
            chunk_size: CHUNK_SIZE,
        };
        node.send(peer, FILE, serde_json::to_vec(&header)?).await?;
        let mut file = File::open(path)?;
        let mut left = size;
        while left > 0 {
            // Disk I/O blocks: `block_in_place` lets the runtime move its other tasks away.
            let chunk = tokio::task::block_in_place(|| read_chunk(&mut file))?;
            if chunk.is_empty() {
                return Err("the file shrank while it was being sent".into());
            }
            let len = chunk.len() as u64;
            // Waits while the stream's queue is at its high watermark: the flow control.
            node.send(peer, FILE, chunk).await?;
            left = left.saturating_sub(len);
            bar.inc(len);
        }
        let outcome: Outcome = loop {
            match serde_json::from_slice(&inbox.next(peer, FILE).await?) {
                Ok(outcome) => break outcome,
                Err(e) => eprintln!("ignoring a malformed result: {e}"),
            }
        };
        Ok::<_, Box<dyn std::error::Error>>(outcome)
    };
    tokio::pin!(gone);
    let outcome = tokio::select! {
        outcome = transfer => outcome,
        why = &mut gone => Err(why.into()),
    };
    let outcome = match outcome {
        Ok(outcome) => {
            bar.finish();
            outcome
        }
        Err(e) => {
            bar.abandon();
            return Err(explain(e, gone, bar.position(), size).await);
        }
    };
    match outcome {
        Outcome {
            ok: true,
            sha256: Some(theirs),
            ..
        } if theirs == sha256 => {
            progress.println(format!(
                "sent: {size} bytes, the receiver verified sha256 {sha256}"
            ));
            Ok(())
        }
        Outcome { error, .. } => Err(format!(
            "the receiver refused the file: {}",
            error.unwrap_or_else(|| "checksum mismatch".into())
        )
        .into()),
    }
}

/// Receives the header and the chunks into `out`, checks the SHA-256 and tells the sender.
/// Returns the size and the checksum. With `drop_after`, shuts the node down after that many
/// chunks instead. Fails with [`PeerGone`] if the peer disconnects first.
async fn receive_file(
    node: &Node,
    mut inbox: Inbox,
    peer: PeerId,
    out: &Path,
    drop_after: Option<u64>,
    progress: &Progress,
) -> Result<(u64, String)> {
    let gone = peer_gone(node, peer);
    let bar = progress.bar("received", 0);
    let transfer = async {
        let header: Header = loop {
            match serde_json::from_slice(&inbox.next(peer, FILE).await?) {
                Ok(header) => break header,
                Err(e) => eprintln!("ignoring a malformed header: {e}"),
            }
        };
        progress.println(format!(
            "receiving {}: {} bytes in chunks of {}",
            header.name, header.size, header.chunk_size
        ));
        bar.set_length(header.size);
        let mut file = std::io::BufWriter::new(File::create(out)?);
        let mut hasher = Sha256::new();
        let (mut received, mut chunks) = (0u64, 0u64);
        while received < header.size {
            let chunk = inbox.next(peer, FILE).await?;
            if chunk.len() as u64 > header.size - received {
                let error = format!("more than the announced {} bytes", header.size);
                let refusal = Outcome::failed(error.clone());
                node.send(peer, FILE, serde_json::to_vec(&refusal)?).await?;
                return Err(error.into());
            }
            hasher.update(&chunk);
            tokio::task::block_in_place(|| file.write_all(&chunk))?;
            received += chunk.len() as u64;
            chunks += 1;
            bar.inc(chunk.len() as u64);
            if drop_after == Some(chunks) {
                progress.println(format!("receiver: shutting down after {chunks} chunks"));
                node.shutdown().await;
                return Err(format!("receiver dropped out after {chunks} chunks").into());
            }
        }
        tokio::task::block_in_place(|| file.flush())?;
        let sha256 = hex(&hasher.finalize());
        let ok = sha256 == header.sha256.to_ascii_lowercase();
        let outcome = if ok {
            Outcome {
                ok,
                bytes: Some(received),
                sha256: Some(sha256.clone()),
                error: None,
            }
        } else {
            Outcome::failed(format!(
                "sha256 mismatch: announced {}, received {sha256}",
                header.sha256
            ))
        };
        node.send(peer, FILE, serde_json::to_vec(&outcome)?).await?;
        match outcome.error {
            None => Ok((received, sha256)),
            Some(e) => Err(e.into()),
        }
    };
    tokio::pin!(gone);
    let received = tokio::select! {
        received = transfer => received,
        why = &mut gone => Err(why.into()),
    };
    match received {
        Ok(received) => {
            bar.finish();
            Ok(received)
        }
        Err(e) => {
            bar.abandon();
            Err(explain(e, gone, bar.position(), bar.length().unwrap_or(0)).await)
        }
    }
}

impl Outcome {
    fn failed(error: String) -> Self {
        Outcome {
            ok: false,
            bytes: None,
            sha256: None,
            error: Some(error),
        }
    }
}

/// Resolves once `peer` disconnects, saying why. Subscribes at once; the returned future only
/// waits.
fn peer_gone(node: &Node, peer: PeerId) -> impl Future<Output = PeerGone> + use<> {
    // Subscribe first, then look: a disconnection after the look is in the subscription.
    // (The node's own state, not the subscription's snapshot: that one is the event
    // forwarder's view, which can lag behind a handshake that just finished.)
    let filter = Filter::all().peers([peer]).states([State::Disconnected]);
    let mut events = node.subscribe_filtered(filter);
    let node = node.clone();
    async move {
        if !node.connection_state(&peer).is_active() {
            return PeerGone("not connected".into());
        }
        loop {
            match events.recv().await {
                Ok(Event::Connection(e)) => {
                    let reason = e.reason.map_or("disconnected".into(), |r| r.to_string());
                    return PeerGone(reason);
                }
                Ok(_) => {}
                // Events were lost: look at the state instead.
                Err(RecvError::Lagged(_)) if node.connection_state(&peer).is_active() => {}
                Err(RecvError::Lagged(_)) => return PeerGone("disconnected".into()),
                Err(RecvError::Closed) => return PeerGone("this node shut down".into()),
            }
        }
    }
}

/// Makes an error that means the connection to the peer is gone (a [`PeerGone`], or a send
/// that failed for that reason) a [`PeerGone`] that says why, and how far the transfer got.
async fn explain(
    e: Box<dyn std::error::Error>,
    gone: impl Future<Output = PeerGone>,
    done: u64,
    total: u64,
) -> Box<dyn std::error::Error> {
    use glueberry::Error::{NotConnected, OpenStream, StreamClosed};
    let why = match (
        e.downcast_ref::<PeerGone>(),
        e.downcast_ref::<glueberry::Error>(),
    ) {
        (Some(gone), _) => gone.0.clone(),
        // A send lost the race with the disconnection event: the event says why.
        (_, Some(NotConnected(_) | StreamClosed { .. } | OpenStream { .. })) => {
            match tokio::time::timeout(Duration::from_secs(5), gone).await {
                Ok(gone) => gone.0,
                Err(_) => e.to_string(),
            }
        }
        _ => return e,
    };
    PeerGone(format!("{why} (after {done} of {total} bytes)")).into()
}

/// The node's message queue, with the messages that came before they were wanted (during the
/// handshake) kept aside.
struct Inbox {
    messages: Messages,
    early: VecDeque<IncomingMessage>,
}

impl Inbox {
    fn new(node: &Node) -> Self {
        Inbox {
            messages: node.messages(),
            early: VecDeque::new(),
        }
    }

    /// The next message from `peer` on `stream`; messages from anyone else are skipped.
    async fn next(&mut self, peer: PeerId, stream: &str) -> Result<Bytes> {
        let wanted = |m: &IncomingMessage| m.peer == peer && &*m.stream == stream;
        if let Some(i) = self.early.iter().position(wanted)
            && let Some(m) = self.early.remove(i)
        {
            return Ok(m.data);
        }
        loop {
            let msg = self.messages.recv().await.map_err(|_| "node shut down")?;
            if wanted(&msg) {
                return Ok(msg.data);
            }
            eprintln!("ignoring a message from {} on {:?}", msg.peer, msg.stream);
        }
    }
}

/// The byte-tag handshake of the Go examples: 1 Hello, 2 PubKey + 32-byte key, 3 Complete.
/// The dialler passes the peer it dialled and speaks first; the listener passes `None` and
/// handshakes with whoever says Hello. Returns the peer.
async fn handshake(node: &Node, inbox: &mut Inbox, dialled: Option<PeerId>) -> Result<PeerId> {
    let mut peer = dialled;
    if let Some(peer) = peer {
        node.send(peer, "handshake", vec![HELLO]).await?;
    }
    loop {
        let msg = inbox.messages.recv().await.map_err(|_| "node shut down")?;
        if &*msg.stream != "handshake" {
            inbox.early.push_back(msg);
            continue;
        }
        // The listener takes the first peer that says Hello, and ignores the others.
        let from = match peer {
            Some(p) if p == msg.peer => p,
            None if msg.data.first() == Some(&HELLO) => *peer.insert(msg.peer),
            _ => {
                eprintln!("ignoring a handshake message from {}", msg.peer);
                continue;
            }
        };
        match msg.data.first() {
            Some(&HELLO) => {
                if dialled.is_none() {
                    node.send(from, "handshake", vec![HELLO]).await?;
                }
                let mut pubkey = vec![PUBKEY];
                pubkey.extend_from_slice(&node.public_key());
                node.send(from, "handshake", pubkey).await?;
            }
            Some(&PUBKEY) => {
                node.prepare_streams(from, &msg.data[1..], &[FILE]).await?;
                node.send(from, "handshake", vec![COMPLETE]).await?;
            }
            Some(&COMPLETE) => {
                node.finalize_handshake(from).await?;
                return Ok(from);
            }
            _ => eprintln!("ignoring an unknown handshake message from {from}"),
        }
    }
}

/// Connects `a` to `b` and completes the handshake on both (both keys are known here).
async fn pair(a: &Node, b: &Node) -> Result<()> {
    let mut events = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    a.add_peer(b.peer_id(), b.listen_addrs(), HashMap::new())
        .await?;
    a.connect(b.peer_id()).await?;
    // `connect` returns when `a` is connected; `b` sees the connection a moment later.
    while !matches!(
        events.recv().await?,
        Event::Connection(e) if e.state == State::Connected
    ) {}
    let (x, y) = tokio::join!(
        a.complete_handshake(b.peer_id(), b.public_key(), &[FILE]),
        b.complete_handshake(a.peer_id(), a.public_key(), &[FILE]),
    );
    x?;
    y?;
    Ok(())
}

/// A node whose address book lives in `dir`. At most 64 chunks are queued per stream on the
/// way out and in the incoming queue on the way in: 4 MiB each side.
fn make_node(dir: &Path, name: &str, listen: &str) -> Result<Node> {
    let config = Config::new(
        ed25519::Keypair::generate(),
        dir.join(format!("{name}.json")),
        vec![listen.parse()?],
    )
    .with_high_watermark(64)
    .with_low_watermark(16)
    .with_message_buffer_size(64);
    Ok(Node::new(config)?)
}

/// Splits `/ip4/…/tcp/…/p2p/<id>` into the peer id and the address to dial.
fn split_peer_id(mut addr: Multiaddr) -> Result<(PeerId, Multiaddr)> {
    let last = addr.pop().map(|p| p.to_string()).unwrap_or_default();
    let id = last
        .strip_prefix("/p2p/")
        .ok_or("the address must end in /p2p/<peer id>")?;
    Ok((id.parse()?, addr))
}

/// Reads the next chunk (empty at the end of the file).
fn read_chunk(file: &mut File) -> std::io::Result<Bytes> {
    let mut chunk = Vec::with_capacity(CHUNK_SIZE);
    file.take(CHUNK_SIZE as u64).read_to_end(&mut chunk)?;
    Ok(chunk.into())
}

/// The size and SHA-256 of a file.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1024 * 1024];
    let mut size = 0;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok((size, hex(&hasher.finalize())));
        }
        hasher.update(&block[..n]);
        size += n as u64;
    }
}

/// Writes `size` pseudo-random bytes (xorshift64*) to `path`.
fn write_random_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut block = vec![0u8; 1024 * 1024];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        let n = left.min(block.len() as u64);
        file.write_all(&block[..n as usize])?;
        left -= n;
    }
    file.flush()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Progress bars on stderr; hidden when stdout is not a terminal, or with `--quiet`.
struct Progress(MultiProgress);

impl Progress {
    fn new(quiet: bool) -> Self {
        let target = if quiet || !std::io::stdout().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        Progress(MultiProgress::with_draw_target(target))
    }

    fn bar(&self, label: &'static str, len: u64) -> ProgressBar {
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        self.0
            .add(ProgressBar::new(len).with_style(style).with_prefix(label))
    }

    /// Prints a line on stdout without tearing the bars.
    fn println(&self, line: String) {
        self.0.suspend(|| println!("{line}"));
    }
}
