//! The one-way and round-trip scenarios with the receiving peer in a second process (this
//! binary run with `--serve-flow`), so that sender and receiver do not share one runtime.
//!
//! The child prints `addr <address> [<peer id>]` once it listens, `ready` once the warm-up
//! message arrived (the stream is open and, for glueberry, both handshakes are done), and, as a
//! sink, `done` once the measured messages all arrived. As an echo it sends every message back.
//! It exits when its stdin closes.

use std::io::Write as _;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use glueberry::{Event, Filter, Multiaddr, Node, PeerId, State};
use tokio_util::compat::TokioAsyncReadCompatExt as _;

use crate::framed::{Duplex, FrameReader, frame, write_frames};
use crate::{glue, raw};

/// What carries the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A tokio `TcpStream`.
    Tcp,
    /// libp2p-stream over TCP + Noise + yamux, or QUIC.
    Libp2p,
    /// Two glueberry nodes.
    Glue,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Libp2p => "libp2p",
            Kind::Glue => "glue",
        }
    }

    /// The kind a `--serve-flow` argument names.
    pub fn parse(s: &str) -> Kind {
        match s {
            "tcp" => Kind::Tcp,
            "libp2p" => Kind::Libp2p,
            "glue" => Kind::Glue,
            other => panic!("unknown --serve-flow kind {other}"),
        }
    }
}

/// Prints one line for the parent and flushes it.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The child's side: receives (`echo` false: counts `count` messages after the warm-up) or
/// echoes every message back, until its stdin closes.
pub async fn serve(kind: Kind, quic: bool, echo: bool, count: usize) {
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    let work = async {
        match kind {
            Kind::Tcp => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                say(&format!("addr {}", listener.local_addr().unwrap()));
                let (s, _) = listener.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                serve_stream(Box::new(s.compat()), echo, count).await;
            }
            Kind::Libp2p => {
                let node = raw::RawNode::listen(quic).await;
                let mut incoming = node.incoming();
                say(&format!("addr {} {}", node.addr, node.peer_id));
                let (_, s) = incoming.next().await.unwrap();
                serve_stream(Box::new(s), echo, count).await;
            }
            Kind::Glue => serve_glue(quic, echo, count).await,
        }
        // Served: wait to be told to go.
        std::future::pending::<()>().await;
    };
    tokio::select! {
        _ = work => {}
        _ = stdin_closed => {}
    }
}

async fn serve_glue(quic: bool, echo: bool, count: usize) {
    let node = glue::started(glue::config(quic)).await;
    let mut sub = node.subscribe_filtered(Filter::all().states([State::Connected]));
    say(&format!(
        "addr {} {}",
        node.listen_addrs()[0],
        node.peer_id()
    ));
    let peer = loop {
        if let Ok(Event::Connection(e)) = sub.recv().await {
            break e.peer;
        }
    };
    let key = glue::key_of(&peer).expect("an Ed25519 peer id");
    node.complete_handshake(peer, key, &[glue::STREAM])
        .await
        .unwrap();
    let messages = node.messages();
    messages.recv().await.unwrap();
    say("ready");
    if echo {
        while let Ok(m) = messages.recv().await {
            if node.send(m.peer, glue::STREAM, m.data).await.is_err() {
                break;
            }
        }
    } else {
        for _ in 0..count {
            messages.recv().await.unwrap();
        }
        say("done");
    }
    // Kept (not shut down) until the process ends, so the peer sees no early close.
    std::future::pending::<()>().await;
}

async fn serve_stream(s: Box<dyn Duplex>, echo: bool, count: usize) {
    let (r, mut w) = s.split();
    let mut r = FrameReader::new(r);
    r.next().await.unwrap();
    say("ready");
    if echo {
        crate::framed::echo(&mut r, &mut w).await;
    } else {
        for _ in 0..count {
            r.next().await.unwrap();
        }
        say("done");
    }
}

/// The parent's handle on a child.
struct Remote {
    child: Child,
    lines: tokio::sync::mpsc::Receiver<String>,
}

impl Remote {
    fn spawn(kind: Kind, quic: bool, echo: bool, count: usize) -> Remote {
        let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
        cmd.args([
            "--serve-flow",
            kind.name(),
            "--serve-count",
            &count.to_string(),
        ]);
        if quic {
            cmd.arg("--quic");
        }
        if echo {
            cmd.arg("--serve-echo");
        }
        let (child, lines) = crate::two_process::spawn(cmd);
        Remote { child, lines }
    }

    async fn line(&mut self, word: &str) -> String {
        let line = self
            .lines
            .recv()
            .await
            .expect("the receiving process ended");
        assert!(line.starts_with(word), "expected `{word}`, got `{line}`");
        line
    }

    /// The address (and peer id, for libp2p and glueberry) the child listens on.
    async fn addr(&mut self) -> (String, Option<PeerId>) {
        let line = self.line("addr").await;
        let mut parts = line.split_whitespace().skip(1);
        let addr = parts.next().expect("an address").to_owned();
        (addr, parts.next().and_then(|p| p.parse().ok()))
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// What the parent holds: a raw stream to the child, or a glueberry node connected to it.
enum Client {
    Stream(Box<dyn Duplex>, Option<raw::RawNode>),
    Glue(Node, PeerId),
}

async fn connect(remote: &mut Remote, kind: Kind, quic: bool) -> Client {
    let (addr, peer) = remote.addr().await;
    match kind {
        Kind::Tcp => {
            let s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            Client::Stream(Box::new(s.compat()), None)
        }
        Kind::Libp2p => {
            let addr: Multiaddr = addr.parse().unwrap();
            let node = raw::RawNode::dial(&addr).await;
            let s = node.open(peer.expect("a peer id")).await;
            Client::Stream(Box::new(s), Some(node))
        }
        Kind::Glue => {
            let peer = peer.expect("a peer id");
            let node = glue::started(glue::config(quic)).await;
            let addr: Multiaddr = addr.parse().unwrap();
            node.add_peer(peer, vec![addr], Default::default())
                .await
                .unwrap();
            node.connect(peer).await.unwrap();
            let key = glue::key_of(&peer).expect("an Ed25519 peer id");
            node.complete_handshake(peer, key, &[glue::STREAM])
                .await
                .unwrap();
            Client::Glue(node, peer)
        }
    }
}

/// Sends the warm-up message and waits for the child's `ready`.
async fn warm_up(remote: &mut Remote, client: &mut Client, size: usize) {
    match client {
        Client::Stream(s, _) => {
            s.write_all(&frame(size)).await.unwrap();
            s.flush().await.unwrap();
        }
        Client::Glue(node, peer) => {
            // The child may not have finished its handshake yet: retry until the stream opens.
            let payload = Bytes::from(vec![0x5a; size]);
            loop {
                match node.send(*peer, glue::STREAM, payload.clone()).await {
                    Ok(()) => break,
                    Err(e) if e.is_retriable() => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }
    }
    remote.line("ready").await;
}

/// `count` messages of `size` bytes to a receiver in another process; the time until it has
/// them all. `buffered`: the raw kinds write through a 64 KiB `BufWriter`.
pub async fn one_way(
    kind: Kind,
    quic: bool,
    count: usize,
    size: usize,
    buffered: bool,
) -> Duration {
    let mut remote = Remote::spawn(kind, quic, false, count);
    let mut client = connect(&mut remote, kind, quic).await;
    warm_up(&mut remote, &mut client, size).await;
    let started = Instant::now();
    match &mut client {
        Client::Stream(s, _) if buffered => {
            let mut w = futures::io::BufWriter::with_capacity(64 * 1024, s);
            write_frames(&mut w, count, size).await.unwrap();
        }
        Client::Stream(s, _) => write_frames(s, count, size).await.unwrap(),
        Client::Glue(node, peer) => {
            let payload = Bytes::from(vec![0x5a; size]);
            for _ in 0..count {
                node.send(*peer, glue::STREAM, payload.clone())
                    .await
                    .unwrap();
            }
        }
    }
    remote.line("done").await;
    let elapsed = started.elapsed();
    if let Client::Glue(node, _) = client {
        node.shutdown().await;
    }
    elapsed
}

/// Sequential `size`-byte requests echoed by a peer in another process; each round trip.
pub async fn round_trips(kind: Kind, quic: bool, count: usize, size: usize) -> Vec<Duration> {
    let mut remote = Remote::spawn(kind, quic, true, 0);
    let mut client = connect(&mut remote, kind, quic).await;
    warm_up(&mut remote, &mut client, size).await;
    match client {
        Client::Stream(s, _node) => crate::framed::round_trips(s, count, size).await,
        Client::Glue(node, peer) => {
            let payload = Bytes::from(vec![0x5a; size]);
            let messages = node.messages();
            let mut rtts = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                node.send(peer, glue::STREAM, payload.clone())
                    .await
                    .unwrap();
                messages.recv().await.unwrap();
                rtts.push(t.elapsed());
            }
            node.shutdown().await;
            rtts
        }
    }
}
