//! Chat between two terminals: each side runs a node with a persistent identity, the byte-tag
//! handshake of the Go `simple-chat` example runs on the `handshake` stream (1 Hello + display
//! name, 2 PubKey + 32-byte Ed25519 key, 3 Complete), then every line typed goes to every
//! Established peer on the encrypted stream `chat`.
//!
//! ```text
//! # terminal 1: prints the address to dial, e.g. /ip4/127.0.0.1/tcp/9000/p2p/12D3KooW…
//! cargo run --example chat -- --listen /ip4/127.0.0.1/tcp/9000 --name alice
//! # terminal 2
//! cargo run --example chat -- --peer /ip4/127.0.0.1/tcp/9000/p2p/<id> --name bob
//! # no second terminal: alice and bob in one process, four lines, exit
//! cargo run --example chat -- --demo
//! ```
//!
//! Type a line and press Enter to send it; Ctrl-C or Ctrl-D (end of input) quits. The identity
//! (`<name>.key`) and the address book (`<name>.book.json`) live in `--data-dir` (by default
//! `glueberry-chat` in the system's temporary directory) unless `--identity` and `--book` say
//! otherwise; a dialled peer stays in the book and is dialled again on the next start. The node
//! listens on loopback unless `--listen` says otherwise.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use glueberry::identity::ed25519;
use glueberry::{
    Config, ConnectionEvent, Event, IncomingMessage, Multiaddr, Node, PeerId, RecvError, State,
};
use tokio::sync::mpsc;

/// Handshake tags of the Go examples.
const HELLO: u8 = 1;
const PUBKEY: u8 = 2;
const COMPLETE: u8 = 3;
/// The unencrypted handshake stream and the encrypted chat stream.
const HANDSHAKE: &str = "handshake";
const CHAT: &str = "chat";

type Result<T, E = Box<dyn Error>> = std::result::Result<T, E>;

/// Chat between terminals over glueberry (encrypted, wire-compatible with Go's simple-chat).
#[derive(Parser)]
#[command(
    after_help = "Two terminals:\n  chat --listen /ip4/127.0.0.1/tcp/9000 --name alice\n  \
chat --peer /ip4/127.0.0.1/tcp/9000/p2p/<id printed by alice> --name bob"
)]
struct Args {
    /// Your display name, sent to peers in the handshake's Hello.
    #[arg(long, default_value = "anon")]
    name: String,
    /// Address to listen on; /ip4/0.0.0.0/tcp/9000 for every interface, as the Go example does.
    /// Port 0 picks a free one.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
    listen: Multiaddr,
    /// A peer to dial: a multiaddr ending with /p2p/<peer-id>, as the other side prints it.
    #[arg(long, value_parser = parse_peer)]
    peer: Option<PeerAddr>,
    /// Where the identity and the address book are kept, created if missing [default: a
    /// directory glueberry-chat in the system's temporary directory]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Identity file holding the 32-byte Ed25519 secret seed, created if missing (a 64-byte Go
    /// key file also loads) [default: <data-dir>/<name>.key]
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Address-book file [default: next to the identity, with extension .book.json]
    #[arg(long)]
    book: Option<PathBuf>,
    /// Run alice and bob in this process with temporary identities, exchange four lines, exit.
    #[arg(long, conflicts_with_all = ["peer", "script"])]
    demo: bool,
    /// Non-interactive: read every stdin line first, send them to the first peer the handshake
    /// completes with, wait for --expect messages, exit.
    #[arg(long)]
    script: bool,
    /// With --script: how many chat messages to receive before leaving [default: 0]
    #[arg(long, requires = "script")]
    expect: Option<usize>,
    /// With --script: answer instead; send the lines only once --expect messages arrived, then
    /// stay until the peer leaves (so that nothing queued is lost at shutdown).
    #[arg(long, requires = "script")]
    reply: bool,
}

/// A `--peer` value: the peer's id and the multiaddr to dial.
#[derive(Clone, Debug)]
struct PeerAddr {
    id: PeerId,
    addr: Multiaddr,
}

fn parse_peer(s: &str) -> Result<PeerAddr, String> {
    let addr: Multiaddr = s.parse().map_err(|e| format!("not a multiaddr: {e}"))?;
    // The id is the last component, `/p2p/<id>`.
    let id = s
        .rsplit_once("/p2p/")
        .and_then(|(_, id)| id.parse().ok())
        .ok_or("the multiaddr must end with /p2p/<peer-id>")?;
    Ok(PeerAddr { id, addr })
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let args = Args::parse();
    if args.demo {
        return demo().await;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("glueberry-chat"));
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| data_dir.join(format!("{}.key", args.name)));
    let book = args
        .book
        .clone()
        .unwrap_or_else(|| identity.with_extension("book.json"));
    let listen = args.listen.clone();
    let mut chat = ChatNode::start(&args.name, &identity, &book, listen, "", args.script).await?;

    let id = chat.node.peer_id();
    println!("chat: you are {} ({id})", args.name);
    let mut addrs = chat.node.listen_addrs();
    addrs.sort_by_key(|a| !a.to_string().starts_with("/ip4/127."));
    for a in addrs {
        println!("address: {a}/p2p/{id}");
    }

    let stdin = stdin_lines();
    let ctrl_c = tokio::signal::ctrl_c();
    let run = async {
        if let Some(peer) = &args.peer {
            let addrs = vec![peer.addr.clone()];
            chat.node.add_peer(peer.id, addrs, HashMap::new()).await?;
            // On failure the node keeps reconnecting by itself; the handshake starts when it
            // connects (see `Chat::on_connection`).
            if let Err(e) = chat.node.connect(peer.id).await {
                println!("* could not connect yet: {e}");
            }
        }
        if args.script {
            script(&mut chat, stdin, args.expect.unwrap_or(0), args.reply).await
        } else {
            println!("type a line and press Enter to send it; Ctrl-C or Ctrl-D quits");
            interactive(&chat, stdin).await
        }
    };
    let result = tokio::select! {
        r = run => r,
        _ = ctrl_c => Ok(()),
    };
    chat.shutdown().await?;
    result
}

/// Sends every stdin line until end of input.
async fn interactive(chat: &ChatNode, mut stdin: mpsc::UnboundedReceiver<String>) -> Result<()> {
    while let Some(line) = stdin.recv().await {
        chat.lines.send(line)?;
    }
    Ok(())
}

/// The `--script` mode: lines from stdin, sent to the first peer the handshake completes with,
/// before or (`reply`) after receiving `expect` messages.
async fn script(
    chat: &mut ChatNode,
    mut stdin: mpsc::UnboundedReceiver<String>,
    expect: usize,
    reply: bool,
) -> Result<()> {
    let mut lines = Vec::new();
    while let Some(line) = stdin.recv().await {
        lines.push(line);
    }
    let (mut established, mut received, mut sent) = (false, 0, false);
    loop {
        match chat.notes.recv().await.ok_or("the node stopped")? {
            Note::Established => established = true,
            Note::Message => received += 1,
            Note::Left(_) if reply && sent => return Ok(()),
            Note::Left(peer) => return Err(format!("{peer} left before the script ended").into()),
        }
        if established && !sent && (!reply || received >= expect) {
            for line in lines.drain(..) {
                chat.lines.send(line)?;
            }
            sent = true;
        }
        if sent && !reply && received >= expect {
            return Ok(());
        }
    }
}

/// `--demo`: alice and bob in one process; bob dials alice, both handshake, each says two lines.
async fn demo() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("glueberry-chat-demo-{}", std::process::id()));
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
    let mut nodes = Vec::new();
    for name in ["alice", "bob"] {
        let identity = dir.join(format!("{name}.key"));
        let book = identity.with_extension("book.json");
        let tag = format!("[{name}] ");
        nodes.push(ChatNode::start(name, &identity, &book, listen.clone(), &tag, true).await?);
    }
    let [mut alice, mut bob] = <[ChatNode; 2]>::try_from(nodes).map_err(|_| "two nodes")?;
    let alice_id = alice.node.peer_id();
    bob.node
        .add_peer(alice_id, alice.node.listen_addrs(), HashMap::new())
        .await?;
    bob.node.connect(alice_id).await?;
    // Bob's chat loop sends Hello when it sees its outbound `Connected`; alice answers.
    for chat in [&mut alice, &mut bob] {
        while !matches!(chat.next_note().await?, Note::Established) {}
    }
    for line in ["hi bob, alice here", "how is the weather?"] {
        alice.lines.send(line.into())?;
    }
    for line in ["hello alice!", "sunny, thanks"] {
        bob.lines.send(line.into())?;
    }
    let mut exchanged = 0;
    for chat in [&mut alice, &mut bob] {
        let mut got = 0;
        while got < 2 {
            if let Note::Message = chat.next_note().await? {
                got += 1;
            }
        }
        exchanged += got;
    }
    alice.shutdown().await?;
    bob.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("demo: {exchanged} messages exchanged");
    Ok(())
}

/// A started node with its chat loop.
struct ChatNode {
    node: Node,
    /// Lines to send to every Established peer.
    lines: mpsc::UnboundedSender<String>,
    /// What the chat loop reports.
    notes: mpsc::UnboundedReceiver<Note>,
    task: tokio::task::JoinHandle<()>,
}

impl ChatNode {
    /// Loads (or creates) the identity, starts a node listening on `listen` and its chat loop.
    /// `tag` prefixes every line it prints; with `echo` it also prints the lines it sends.
    async fn start(
        name: &str,
        identity: &Path,
        book: &Path,
        listen: Multiaddr,
        tag: &str,
        echo: bool,
    ) -> Result<Self> {
        let keypair = load_or_create_identity(identity)?;
        let node = Node::new(Config::new(keypair, book, vec![listen]))?;
        // Subscribe before starting: a peer of the book may be dialled at once.
        let events = node.subscribe_events();
        node.start().await?;
        let (lines, lines_rx) = mpsc::unbounded_channel();
        let (notes_tx, notes) = mpsc::unbounded_channel();
        let chat = Chat {
            node: node.clone(),
            name: name.to_owned(),
            tag: tag.to_owned(),
            echo,
            peers: HashMap::new(),
            notes: notes_tx,
        };
        let task = tokio::spawn(chat.run(events, lines_rx));
        Ok(Self {
            node,
            lines,
            notes,
            task,
        })
    }

    /// The next note of the chat loop, within 20 s (the demo must not hang).
    async fn next_note(&mut self) -> Result<Note> {
        tokio::time::timeout(Duration::from_secs(20), self.notes.recv())
            .await
            .map_err(|_| "no progress for 20 s")?
            .ok_or_else(|| "the node stopped".into())
    }

    /// Stops the node (peers see a clean close), then waits for the chat loop to end.
    async fn shutdown(self) -> Result<()> {
        self.node.shutdown().await;
        self.task.await?;
        Ok(())
    }
}

/// What the chat loop tells the code driving it.
#[derive(Debug)]
enum Note {
    /// The handshake with this peer finished: chat lines reach it.
    Established,
    /// A chat message arrived (and was printed).
    Message,
    /// An Established peer went away.
    Left(PeerId),
}

/// Handshake progress with one peer. Every step happens once, whatever the peer repeats (the
/// Go example answers each Hello with Hello + PubKey, so it sends them twice).
#[derive(Default)]
struct Peer {
    name: Option<String>,
    sent_hello: bool,
    sent_key: bool,
    prepared: bool,
    /// Complete arrived before the PubKey was processed.
    early_complete: bool,
    established: bool,
}

/// The chat loop: one task owns the handshake state of every peer, reads messages and events,
/// and sends the lines it is given.
struct Chat {
    node: Node,
    name: String,
    tag: String,
    echo: bool,
    peers: HashMap<PeerId, Peer>,
    notes: mpsc::UnboundedSender<Note>,
}

impl Chat {
    async fn run(
        mut self,
        mut events: glueberry::Subscription,
        mut lines: mpsc::UnboundedReceiver<String>,
    ) {
        let messages = self.node.messages();
        loop {
            tokio::select! {
                msg = messages.recv() => match msg {
                    Ok(msg) => self.on_message(msg).await,
                    Err(_) => break, // shut down
                },
                event = events.recv() => match event {
                    Ok(Event::Connection(e)) => self.on_connection(e).await,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                Some(line) = lines.recv() => self.say(&line).await,
            }
        }
    }

    async fn on_connection(&mut self, e: ConnectionEvent) {
        let who = self.display(&e.peer);
        let detail = match (e.state, &e.reason) {
            (_, Some(reason)) => format!(" ({reason})"),
            (State::Connected, _) => match self.node.is_outbound(&e.peer) {
                Some(true) => " (outbound: saying hello)".into(),
                _ => " (inbound: waiting for hello)".into(),
            },
            (State::Established, _) => " (encrypted chat ready)".into(),
            _ => String::new(),
        };
        println!("{}* {who} {}{detail}", self.tag, e.state);
        match e.state {
            // The dialler speaks first. This also covers reconnections and peers of the book
            // dialled at start. The listener waits for the Hello (it may see its own
            // `Connected` after the dialler's Hello arrived).
            State::Connected if self.node.is_outbound(&e.peer) == Some(true) => {
                let peer = self.peers.entry(e.peer).or_default();
                if !peer.sent_hello {
                    peer.sent_hello = true;
                    let hello = tagged(HELLO, self.name.as_bytes());
                    self.send_or_report(e.peer, HANDSHAKE, hello).await;
                }
            }
            // Gone: the next connection handshakes afresh (the name is kept for display).
            State::Disconnected | State::Reconnecting | State::Cooldown => {
                if let Some(p) = self.peers.get_mut(&e.peer) {
                    let left = p.established;
                    *p = Peer {
                        name: p.name.take(),
                        ..Peer::default()
                    };
                    if left {
                        let _ = self.notes.send(Note::Left(e.peer));
                    }
                }
            }
            _ => {}
        }
    }

    async fn on_message(&mut self, msg: IncomingMessage) {
        match &*msg.stream {
            CHAT => {
                let text = clean(&msg.data, usize::MAX);
                println!("{}{}: {text}", self.tag, self.display(&msg.peer));
                let _ = self.notes.send(Note::Message);
            }
            HANDSHAKE => self.on_handshake(msg).await,
            _ => {}
        }
    }

    /// One step of the byte-tag handshake.
    async fn on_handshake(&mut self, msg: IncomingMessage) {
        let id = msg.peer;
        let node = self.node.clone();
        let peer = self.peers.entry(id).or_default();
        match msg.data.first() {
            Some(&HELLO) => {
                let name = clean(&msg.data[1..], 32);
                if !name.is_empty() {
                    peer.name = Some(name);
                }
                let (hello, key) = (!peer.sent_hello, !peer.sent_key);
                (peer.sent_hello, peer.sent_key) = (true, true);
                if hello {
                    let m = tagged(HELLO, self.name.as_bytes());
                    self.send_or_report(id, HANDSHAKE, m).await;
                }
                if key {
                    let m = tagged(PUBKEY, &node.public_key());
                    self.send_or_report(id, HANDSHAKE, m).await;
                }
            }
            Some(&PUBKEY) if !peer.prepared => {
                // Checks that the key is the peer's and derives the stream key.
                if let Err(e) = node.prepare_streams(id, &msg.data[1..], &[CHAT]).await {
                    println!("{}* handshake with {id} failed: {e}", self.tag);
                    let _ = node.disconnect(id).await;
                    return;
                }
                peer.prepared = true;
                let early = peer.early_complete;
                self.send_or_report(id, HANDSHAKE, vec![COMPLETE]).await;
                if early {
                    self.finalize(id).await;
                }
            }
            Some(&COMPLETE) if !peer.established => {
                if peer.prepared {
                    self.finalize(id).await;
                } else {
                    peer.early_complete = true;
                }
            }
            Some(&(PUBKEY | COMPLETE)) => {} // a repeat
            other => println!("{}* ignoring handshake message {other:?}", self.tag),
        }
    }

    async fn finalize(&mut self, id: PeerId) {
        match self.node.finalize_handshake(id).await {
            Ok(()) => {
                self.peers.entry(id).or_default().established = true;
                let _ = self.notes.send(Note::Established);
            }
            Err(e) => println!("{}* handshake with {id} failed: {e}", self.tag),
        }
    }

    /// Sends a typed line to every Established peer.
    async fn say(&mut self, line: &str) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = (self.peers.iter())
            .filter(|(id, p)| p.established && self.node.connection_state(id) == State::Established)
            .map(|(id, _)| *id)
            .collect();
        if peers.is_empty() {
            println!("{}* nobody to send to yet", self.tag);
            return;
        }
        if self.echo {
            println!("{}> {line}", self.tag);
        }
        for id in peers {
            self.send_or_report(id, CHAT, line.to_owned()).await;
        }
    }

    /// Sends, printing the error if any (a slow peer holds us up to 5 s, not forever).
    async fn send_or_report(&self, peer: PeerId, stream: &str, data: impl Into<bytes::Bytes>) {
        let sent = (self.node)
            .send_timeout(peer, stream, data, Duration::from_secs(5))
            .await;
        if let Err(e) = sent {
            println!(
                "{}* could not send to {}: {e}",
                self.tag,
                self.display(&peer)
            );
        }
    }

    /// The peer's name from its Hello, or a short form of its id.
    fn display(&self, peer: &PeerId) -> String {
        match self.peers.get(peer).and_then(|p| p.name.clone()) {
            Some(name) => name,
            None => {
                let s = peer.to_string();
                format!("…{}", &s[s.len().saturating_sub(8)..])
            }
        }
    }
}

/// `[tag] ++ body`.
fn tagged(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + body.len());
    m.push(tag);
    m.extend_from_slice(body);
    m
}

/// Peer text made safe to print: invalid UTF-8 and control characters (terminal escapes)
/// become U+FFFD; at most `max` characters.
fn clean(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// Lines of stdin, read on a plain thread (a blocked read must not hold up the runtime's
/// shutdown); the channel closes at end of input.
fn stdin_lines() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Loads the Ed25519 secret seed from `path`, or creates a new identity there (mode 0600).
fn load_or_create_identity(path: &Path) -> Result<ed25519::Keypair> {
    match std::fs::read(path) {
        // Go's simple-chat stores seed ++ public key (64 bytes); the seed is enough.
        Ok(mut bytes) if bytes.len() == 32 || bytes.len() == 64 => {
            let secret = ed25519::SecretKey::try_from_bytes(&mut bytes[..32])?;
            Ok(ed25519::Keypair::from(secret))
        }
        Ok(bytes) => Err(format!(
            "{}: {} bytes, expected a 32-byte Ed25519 seed",
            path.display(),
            bytes.len()
        )
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keypair = ed25519::Keypair::generate();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = std::fs::OpenOptions::new();
            file.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
            std::io::Write::write_all(&mut file.open(path)?, keypair.secret().as_ref())?;
            println!("chat: new identity saved to {}", path.display());
            Ok(keypair)
        }
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}
