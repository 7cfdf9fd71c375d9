//! The baselines: raw TCP, and raw rust-libp2p (libp2p-stream over TCP + Noise + yamux, or
//! QUIC), both running the framed application code of [`crate::framed`].

use std::time::Duration;

use futures::StreamExt as _;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, identify, identity, noise, ping, tcp, yamux,
};
use tokio::task::JoinHandle;
use tokio_util::compat::TokioAsyncReadCompatExt as _;

use crate::framed::Duplex;

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/1.0.0");

/// A raw TCP connection pair on loopback (nodelay), as futures streams.
pub async fn tcp_pair() -> (Box<dyn Duplex>, Box<dyn Duplex>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let client = client.unwrap();
    let server = server.unwrap().0;
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (Box::new(client.compat()), Box::new(server.compat()))
}

/// What a raw libp2p swarm runs: streams, identify and ping, as a typical application would.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    stream: libp2p_stream::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// A raw libp2p swarm driven by its own task.
pub struct RawNode {
    pub peer_id: PeerId,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    pub control: libp2p_stream::Control,
    pub addr: Multiaddr,
    task: JoinHandle<()>,
}

impl Drop for RawNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawNode {
    /// A swarm listening on loopback over `quic` or TCP, its task started.
    pub async fn listen(quic: bool) -> Self {
        let (mut swarm, key) = swarm();
        let listen: Multiaddr = if quic {
            "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()
        } else {
            "/ip4/127.0.0.1/tcp/0".parse().unwrap()
        };
        swarm.listen_on(listen).unwrap();
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        Self::run(swarm, addr, key)
    }

    /// A swarm that dials `addr` and returns once connected, its task started.
    pub async fn dial(addr: &Multiaddr) -> Self {
        let (mut swarm, key) = swarm();
        swarm.dial(addr.clone()).unwrap();
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
                _ => {}
            }
        }
        Self::run(swarm, Multiaddr::empty(), key)
    }

    fn run(mut swarm: Swarm<Behaviour>, addr: Multiaddr, public_key: [u8; 32]) -> Self {
        let peer_id = *swarm.local_peer_id();
        let control = swarm.behaviour().stream.new_control();
        let task = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        Self {
            peer_id,
            public_key,
            control,
            addr,
            task,
        }
    }

    /// Accepts inbound bench streams.
    pub fn incoming(&self) -> libp2p_stream::IncomingStreams {
        self.control.clone().accept(PROTOCOL).unwrap()
    }

    /// Opens a bench stream to a connected `peer`.
    pub async fn open(&self, peer: PeerId) -> libp2p::Stream {
        self.open_protocol(peer, PROTOCOL).await
    }

    /// Opens a stream of `protocol` to a connected `peer`.
    pub async fn open_protocol(&self, peer: PeerId, protocol: StreamProtocol) -> libp2p::Stream {
        self.control
            .clone()
            .open_stream(peer, protocol)
            .await
            .unwrap()
    }
}

fn swarm() -> (Swarm<Behaviour>, [u8; 32]) {
    let key = identity::ed25519::Keypair::generate();
    let public = key.public().to_bytes();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key.into())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_quic()
        .with_behaviour(|key| Behaviour {
            stream: libp2p_stream::Behaviour::new(),
            identify: identify::Behaviour::new(identify::Config::new(
                "/bench/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    (swarm, public)
}

/// A raw libp2p stream pair (client opened, server accepted) over `quic` or TCP, and the two
/// swarms that carry it (keep them alive).
pub async fn libp2p_pair(quic: bool) -> ((Box<dyn Duplex>, Box<dyn Duplex>), (RawNode, RawNode)) {
    let server = RawNode::listen(quic).await;
    let mut incoming = server.incoming();
    let client = RawNode::dial(&server.addr).await;
    let (opened, accepted) = tokio::join!(client.open(server.peer_id), incoming.next());
    let (_, accepted) = accepted.unwrap();
    ((Box::new(opened), Box::new(accepted)), (client, server))
}

/// A raw swarm that serves `peers` clients: each stream is read by its own task (so that
/// accepting never waits on reading: libp2p-stream drops inbound streams that nobody takes at
/// once), which acknowledges the first frame with one byte. The task returned ends once every
/// client was served, holding their streams.
pub async fn serve(
    quic: bool,
    peers: usize,
) -> (RawNode, JoinHandle<Vec<Box<dyn std::any::Any + Send>>>) {
    let server = RawNode::listen(quic).await;
    let mut incoming = server.incoming();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(peers.max(1));
    let acceptor = tokio::spawn(async move {
        while let Some((_, s)) = incoming.next().await {
            let done = done_tx.clone();
            tokio::spawn(async move {
                use futures::AsyncWriteExt as _;
                let (r, mut w) = futures::AsyncReadExt::split(s);
                let mut r = crate::framed::FrameReader::new(r);
                if r.next().await.is_ok()
                    && w.write_all(&[1]).await.is_ok()
                    && w.flush().await.is_ok()
                {
                    let kept: Box<dyn std::any::Any + Send> = Box::new((r, w));
                    let _ = done.send(kept).await;
                }
            });
        }
    });
    let served = tokio::spawn(async move {
        let mut streams = Vec::with_capacity(peers);
        for _ in 0..peers {
            streams.push(done_rx.recv().await.unwrap());
        }
        acceptor.abort();
        streams
    });
    (server, served)
}

/// `peers` raw swarms dial `addr`, open a stream to `to`, send a frame and wait for its
/// acknowledgement, at most `concurrency` at a time; a stream libp2p-stream dropped is retried
/// on a new one, as a raw application must.
pub async fn clients(
    addr: Multiaddr,
    to: PeerId,
    peers: usize,
    concurrency: usize,
) -> Vec<(RawNode, libp2p::Stream)> {
    use futures::AsyncWriteExt as _;
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut joins = tokio::task::JoinSet::new();
    for _ in 0..peers {
        let (gate, addr) = (gate.clone(), addr.clone());
        joins.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let client = RawNode::dial(&addr).await;
            for _ in 0..20 {
                let mut s = client.open(to).await;
                let mut ack = [0u8; 1];
                let ok = s.write_all(&crate::framed::frame(5)).await.is_ok()
                    && s.flush().await.is_ok()
                    && futures::AsyncReadExt::read_exact(&mut s, &mut ack)
                        .await
                        .is_ok();
                if ok {
                    return (client, s);
                }
            }
            panic!("no stream got through");
        });
    }
    let mut clients = Vec::with_capacity(peers);
    while let Some(c) = joins.join_next().await {
        clients.push(c.unwrap());
    }
    clients
}

/// `peers` raw swarms dial one, open a stream and send one frame each (at most `concurrency` at
/// a time), all in this process. Returns the swarms (keep them for the memory reading).
pub async fn connect_many(
    quic: bool,
    peers: usize,
    concurrency: usize,
) -> (RawNode, Vec<(RawNode, libp2p::Stream)>) {
    let (server, served) = serve(quic, peers).await;
    let clients = clients(server.addr.clone(), server.peer_id, peers, concurrency).await;
    drop(served.await.unwrap());
    (server, clients)
}
