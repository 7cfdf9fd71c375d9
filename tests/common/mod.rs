//! Helpers for multi-node tests: nodes on loopback, the byte-tag handshake of the Go
//! examples, and a raw libp2p peer that can send anything.

mod attack;
mod bigframes;
mod blackhole;
mod crash;
mod gorule;
mod pinger;
mod proxy;

pub use attack::{Flood, hosts};
pub use bigframes::send_in_window_sized_frames;
pub use blackhole::{Blackhole, LostPath, lose_path};
pub use crash::{Crashable, crash_and_restart};
pub use gorule::{Arrival, GoPeer};
pub use pinger::{pinger, pinger_answered};
pub use proxy::Proxy;

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use glueberry::identity::ed25519;
use glueberry::{Config, Event, IncomingMessage, Multiaddr, Node, PeerId, State, Subscription};
use libp2p::StreamProtocol;

/// Liveness bound for any single wait in a test (a hang becomes a failure, never a pass).
pub const WAIT: Duration = Duration::from_secs(30);

/// Handshake tags of the Go examples.
pub const HELLO: u8 = 1;
/// PubKey tag: followed by the 32-byte Ed25519 key.
pub const PUBKEY: u8 = 2;
/// Complete tag.
pub const COMPLETE: u8 = 3;

/// Which transport a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP + Noise + yamux.
    Tcp,
    /// QUIC v1.
    Quic,
}

impl Transport {
    /// A loopback listen address with a free port.
    pub fn listen_addr(self) -> Multiaddr {
        match self {
            Transport::Tcp => "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap(),
        }
    }
}

/// A config listening on loopback, with an address book in a fresh temporary path.
pub fn config(t: Transport) -> Config {
    Config::new(
        ed25519::Keypair::generate(),
        book_path(),
        vec![t.listen_addr()],
    )
}

/// A fresh address-book path in a temporary directory of its own.
pub fn book_path() -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!(
            "glueberry-test-{}-{}",
            std::process::id(),
            rand_suffix()
        ))
        .join("book.json")
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Logs to the test output when `RUST_LOG` is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A started node.
pub async fn started(config: Config) -> Node {
    init_tracing();
    let node = Node::new(config).expect("node");
    node.start().await.expect("start");
    node
}

/// `a` adds `b` to its book and dials it.
pub async fn connect(a: &Node, b: &Node) {
    a.add_peer(b.peer_id(), b.listen_addrs(), HashMap::new())
        .await
        .unwrap();
    a.connect(b.peer_id()).await.expect("connect");
}

/// Waits for a value with the liveness bound.
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

/// Polls `probe` every 20 ms until it gives a value, within the liveness bound: for what the
/// node shows in its stats or score but announces with no event.
pub async fn eventually<T>(mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    within(async {
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// The byte-tag handshake (1 Hello, 2 PubKey + key, 3 Complete) with one peer. Returns the
/// non-handshake messages that arrived meanwhile, oldest first.
pub async fn handshake(
    node: &Node,
    peer: PeerId,
    dialer: bool,
    streams: &[&str],
) -> Vec<IncomingMessage> {
    let messages = node.messages();
    let mut early = Vec::new();
    let mut sent_hello = false;
    if dialer {
        node.send(peer, "handshake", vec![HELLO]).await.unwrap();
        sent_hello = true;
    }
    loop {
        let msg = within(messages.recv()).await.expect("message queue open");
        if &*msg.stream != "handshake" {
            early.push(msg);
            continue;
        }
        assert_eq!(msg.peer, peer);
        match msg.data.first() {
            Some(&HELLO) => {
                if !sent_hello {
                    node.send(peer, "handshake", vec![HELLO]).await.unwrap();
                    sent_hello = true;
                }
                let mut m = vec![PUBKEY];
                m.extend_from_slice(&node.public_key());
                node.send(peer, "handshake", m).await.unwrap();
            }
            Some(&PUBKEY) => {
                assert_eq!(msg.data.len(), 33);
                node.prepare_streams(peer, &msg.data[1..], streams)
                    .await
                    .unwrap();
                node.send(peer, "handshake", vec![COMPLETE]).await.unwrap();
            }
            Some(&COMPLETE) => {
                node.finalize_handshake(peer).await.unwrap();
                return early;
            }
            other => panic!("unexpected handshake message {other:?}"),
        }
    }
}

/// Two started nodes, `a` dialling `b`, both Established with `streams` prepared.
/// Returns the messages that arrived during the handshake at `a` and at `b`.
pub async fn established_pair(
    a_config: Config,
    b_config: Config,
    streams: &[&str],
) -> (Node, Node, Vec<IncomingMessage>, Vec<IncomingMessage>) {
    let a = started(a_config).await;
    let b = started(b_config).await;
    connect(&a, &b).await;
    let (ea, eb) = tokio::join!(
        handshake(&a, b.peer_id(), true, streams),
        handshake(&b, a.peer_id(), false, streams)
    );
    assert_eq!(a.connection_state(&b.peer_id()), State::Established);
    assert_eq!(b.connection_state(&a.peer_id()), State::Established);
    (a, b, ea, eb)
}

/// Waits for the next event about `peer` entering `state`.
pub async fn wait_state(
    sub: &mut Subscription,
    peer: PeerId,
    state: State,
) -> glueberry::ConnectionEvent {
    within(async {
        loop {
            if let Event::Connection(e) = sub.recv().await.expect("subscription open")
                && e.peer == peer
                && e.state == state
            {
                return e;
            }
        }
    })
    .await
}

/// Waits for the next stream fault from `peer`.
pub async fn wait_fault(sub: &mut Subscription, peer: PeerId) -> glueberry::StreamFault {
    within(async {
        loop {
            if let Event::StreamFault(f) = sub.recv().await.expect("subscription open")
                && f.peer == peer
            {
                return f;
            }
        }
    })
    .await
}

/// How a [`RawPeer`] secures TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Noise, as every Glueberry node.
    Noise,
    /// TLS 1.3 only (a go-libp2p node configured for it).
    Tls,
}

/// A bare libp2p peer (TCP + Noise + yamux, and QUIC; libp2p-stream) that writes whatever
/// bytes a test wants on Glueberry streams.
pub struct RawPeer {
    /// Its identity.
    pub keypair: ed25519::Keypair,
    /// Its `PeerId`.
    pub peer_id: PeerId,
    /// Opens streams.
    pub control: libp2p_stream::Control,
    task: tokio::task::JoinHandle<()>,
    /// Connection outcomes, as [`RawPeer::outcome`] returns them.
    pub events: tokio::sync::mpsc::Receiver<Result<(), String>>,
}

impl RawPeer {
    /// Dials `addr` (a node's listen address) and keeps the swarm running.
    pub fn dial(addr: Multiaddr) -> Self {
        Self::dial_as(ed25519::Keypair::generate(), addr)
    }

    /// [`RawPeer::dial`] with a given identity.
    pub fn dial_as(keypair: ed25519::Keypair, addr: Multiaddr) -> Self {
        Self::dial_with(keypair, addr, Security::Noise)
    }

    /// A swarm of this peer's kind over TCP secured by `security` only (and QUIC).
    pub fn swarm(
        keypair: &ed25519::Keypair,
        security: Security,
    ) -> libp2p::Swarm<libp2p_stream::Behaviour> {
        macro_rules! swarm {
            ($security:expr) => {
                libp2p::SwarmBuilder::with_existing_identity(keypair.clone().into())
                    .with_tokio()
                    .with_tcp(
                        libp2p::tcp::Config::default(),
                        $security,
                        libp2p::yamux::Config::default,
                    )
                    .unwrap()
                    .with_quic()
                    .with_behaviour(|_| libp2p_stream::Behaviour::new())
                    .unwrap()
                    .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
                    .build()
            };
        }
        match security {
            Security::Noise => swarm!(libp2p::noise::Config::new),
            Security::Tls => swarm!(libp2p::tls::Config::new),
        }
    }

    /// [`RawPeer::dial_as`], its TCP secured by `security` only.
    pub fn dial_with(keypair: ed25519::Keypair, addr: Multiaddr, security: Security) -> Self {
        let mut swarm = Self::swarm(&keypair, security);
        let control = swarm.behaviour().new_control();
        let peer_id = *swarm.local_peer_id();
        swarm.dial(addr).unwrap();
        let (tx, events) = tokio::sync::mpsc::channel(16);
        let task = tokio::spawn(async move {
            loop {
                let event = swarm.select_next_some().await;
                let result = match event {
                    libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => Some(Ok(())),
                    libp2p::swarm::SwarmEvent::ConnectionClosed { cause, .. } => {
                        Some(Err(format!("closed: {cause:?}")))
                    }
                    libp2p::swarm::SwarmEvent::OutgoingConnectionError { error, .. } => {
                        Some(Err(error.to_string()))
                    }
                    _ => None,
                };
                if let Some(r) = result {
                    let _ = tx.try_send(r);
                }
            }
        });
        Self {
            keypair,
            peer_id,
            control,
            task,
            events,
        }
    }

    /// The next connection outcome: `Ok` when a connection is established, `Err` when a dial
    /// fails or a connection closes.
    pub async fn outcome(&mut self) -> Result<(), String> {
        within(self.events.recv()).await.expect("swarm task alive")
    }

    /// Its Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.keypair.public().to_bytes()
    }

    /// Opens the Glueberry stream `name` to `peer`.
    pub async fn open(&self, peer: PeerId, name: &str) -> libp2p::Stream {
        let protocol =
            StreamProtocol::try_from_owned(format!("/glueberry/stream/{name}/1.0.0")).unwrap();
        within(self.control.clone().open_stream(peer, protocol))
            .await
            .expect("open stream")
    }

    /// Opens streams of `protocol` to `peer` one after the other, at most `max`, and hands each
    /// to `each`, which returns whether it did its part. Stops at the first stream that cannot
    /// be opened within 5 s or that `each` fails. Returns how many streams `each` did its part
    /// on.
    pub async fn churn(
        &self,
        peer: PeerId,
        protocol: &StreamProtocol,
        max: usize,
        mut each: impl AsyncFnMut(libp2p::Stream) -> bool,
    ) -> usize {
        let mut opened = 0;
        let mut control = self.control.clone();
        while opened < max {
            let open = control.open_stream(peer, protocol.clone());
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), open).await else {
                break;
            };
            if !each(s).await {
                break;
            }
            opened += 1;
        }
        opened
    }

    /// The v1 stream key this peer shares with a node whose public key is `node_key`.
    pub fn cipher(&self, node_key: &[u8; 32]) -> glueberry::unstable::crypto::Cipher {
        let seed: [u8; 32] = self.keypair.secret().as_ref().try_into().unwrap();
        let key = glueberry::unstable::crypto::LocalKey::from_ed25519_seed(&seed)
            .stream_key(node_key)
            .unwrap();
        glueberry::unstable::crypto::Cipher::new(&key)
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One v1 frame around `body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    glueberry::unstable::wire::put_header(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// An encrypted v1 body of `plaintext`.
pub fn seal(cipher: &glueberry::unstable::crypto::Cipher, plaintext: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8; glueberry::unstable::crypto::NONCE_LEN];
    body.extend_from_slice(plaintext);
    let tag = cipher.seal_in_place(&mut body);
    body.extend_from_slice(&tag);
    body
}

/// Runs the byte-tag handshake with every peer that connects, for as long as the node runs
/// (both sides send Hello when the peer becomes Connected, as the cluster example does).
/// Messages on other streams are handed to the returned receiver. The task is spawned on the
/// current runtime.
pub fn handshake_everyone(
    node: &Node,
    streams: &[&str],
) -> tokio::sync::mpsc::UnboundedReceiver<IncomingMessage> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let node = node.clone();
    let streams: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
    let mut events = node.subscribe_filtered(glueberry::Filter::all().states([State::Connected]));
    let messages = node.messages();
    tokio::spawn(async move {
        let names: Vec<&str> = streams.iter().map(String::as_str).collect();
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Ok(Event::Connection(e)) => {
                        let _ = node.send(e.peer, "handshake", vec![HELLO]).await;
                    }
                    Ok(_) | Err(glueberry::RecvError::Lagged(_)) => {}
                    Err(glueberry::RecvError::Closed) => return,
                },
                m = messages.recv() => {
                    let Ok(msg) = m else { return };
                    if &*msg.stream != "handshake" {
                        let _ = tx.send(msg);
                        continue;
                    }
                    let peer = msg.peer;
                    match msg.data.first() {
                        Some(&HELLO) => {
                            let mut m = vec![PUBKEY];
                            m.extend_from_slice(&node.public_key());
                            let _ = node.send(peer, "handshake", m).await;
                        }
                        Some(&PUBKEY) if msg.data.len() == 33 => {
                            let prepared = node.prepare_streams(peer, &msg.data[1..], &names).await;
                            if prepared.is_ok() {
                                let _ = node.send(peer, "handshake", vec![COMPLETE]).await;
                            }
                        }
                        Some(&COMPLETE) => {
                            let _ = node.finalize_handshake(peer).await;
                        }
                        _ => {}
                    }
                }
            }
        }
    });
    rx
}
