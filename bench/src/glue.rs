//! glueberry's side of every scenario.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use glueberry::identity::ed25519;
use glueberry::{Config, Event, Filter, Multiaddr, Node, PeerId, State};

pub const STREAM: &str = "bench";

fn listen(quic: bool) -> Multiaddr {
    if quic {
        "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()
    } else {
        "/ip4/127.0.0.1/tcp/0".parse().unwrap()
    }
}

/// A config on loopback with a throwaway address book.
pub fn config(quic: bool) -> Config {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "glueberry-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    Config::new(
        ed25519::Keypair::generate(),
        dir.join("book.json"),
        vec![listen(quic)],
    )
}

pub async fn started(config: Config) -> Node {
    let node = Node::new(config).unwrap();
    node.start().await.unwrap();
    node
}

/// Waits until `node` sees `peer` in `state`.
async fn wait(sub: &mut glueberry::Subscription, peer: PeerId, state: State) {
    loop {
        if let Ok(Event::Connection(e)) = sub.recv().await
            && e.peer == peer
            && e.state == state
        {
            return;
        }
    }
}

/// Two nodes, `a` dialled `b`, both Established with the bench stream prepared.
pub async fn pair(quic: bool) -> (Node, Node) {
    let a = started(config(quic)).await;
    let b = started(config(quic)).await;
    let mut sub = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    a.add_peer(b.peer_id(), b.listen_addrs(), HashMap::new())
        .await
        .unwrap();
    a.connect(b.peer_id()).await.unwrap();
    wait(&mut sub, a.peer_id(), State::Connected).await;
    let (ra, rb) = tokio::join!(
        a.complete_handshake(b.peer_id(), b.public_key(), &[STREAM]),
        b.complete_handshake(a.peer_id(), a.public_key(), &[STREAM])
    );
    ra.unwrap();
    rb.unwrap();
    (a, b)
}

/// `a` sends `count` messages of `size` bytes to `b`; returns when `b` has them all.
pub async fn one_way(a: &Node, b: &Node, count: usize, size: usize) {
    let payload = Bytes::from(vec![0x5a; size]);
    let to = b.peer_id();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for _ in 0..count {
                a.send(to, STREAM, payload.clone()).await.unwrap();
            }
        })
    };
    let messages = b.messages();
    for _ in 0..count {
        messages.recv().await.unwrap();
    }
    sender.await.unwrap();
}

/// Sequential 256-byte request and echo; returns each round trip.
pub async fn round_trips(
    a: &Node,
    b: &Node,
    count: usize,
    size: usize,
) -> Vec<std::time::Duration> {
    let echo = {
        let b = b.clone();
        tokio::spawn(async move {
            let messages = b.messages();
            while let Ok(m) = messages.recv().await {
                if b.send(m.peer, STREAM, m.data).await.is_err() {
                    break;
                }
            }
        })
    };
    let payload = Bytes::from(vec![0x5a; size]);
    let messages = a.messages();
    let mut rtts = Vec::with_capacity(count);
    for _ in 0..count {
        let t = std::time::Instant::now();
        a.send(b.peer_id(), STREAM, payload.clone()).await.unwrap();
        messages.recv().await.unwrap();
        rtts.push(t.elapsed());
    }
    echo.abort();
    rtts
}

/// The Ed25519 key inside an Ed25519 `PeerId` (its multihash is the key itself).
pub fn key_of(peer: &PeerId) -> Option<[u8; 32]> {
    let digest = peer.as_ref().digest();
    let key = libp2p::identity::PublicKey::try_decode_protobuf(digest).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

/// A node that serves `peers` clients: it finishes each handshake when it sees the client
/// connected (the key comes from the client's `PeerId`).
pub async fn serve(
    quic: bool,
    peers: usize,
    concurrency: usize,
) -> (Node, tokio::task::JoinHandle<()>) {
    let server = started(
        config(quic)
            .with_conn_high_watermark(peers * 2 + 16)
            .with_conn_low_watermark(1)
            .with_max_pending_inbound(Some(concurrency * 2))
            // Every client comes from 127.0.0.1 and is a stranger until its handshake: the
            // scenario measures connection setup, not admission.
            .with_max_inbound_per_ip(None)
            .with_max_strangers(None),
    )
    .await;
    let acceptor = {
        let server = server.clone();
        let mut sub = server.subscribe_filtered(Filter::all().states([State::Connected]));
        tokio::spawn(async move {
            while let Ok(e) = sub.recv().await {
                if let Event::Connection(e) = e
                    && let Some(key) = key_of(&e.peer)
                {
                    let server = server.clone();
                    tokio::spawn(async move {
                        let _ = server.complete_handshake(e.peer, key, &[STREAM]).await;
                    });
                }
            }
        })
    };
    (server, acceptor)
}

/// Waits for the first message of each of `peers` clients.
pub async fn first_messages(server: &Node, peers: usize) {
    let messages = server.messages();
    for _ in 0..peers {
        messages.recv().await.unwrap();
    }
}

/// `peers` client nodes connect to the server at `addrs`, handshake and send one encrypted
/// message each, at most `concurrency` at a time.
pub async fn clients(
    quic: bool,
    addrs: Vec<Multiaddr>,
    server_id: PeerId,
    peers: usize,
    concurrency: usize,
) -> Vec<Node> {
    let server_key = key_of(&server_id).expect("an Ed25519 peer id");
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut joins = tokio::task::JoinSet::new();
    for _ in 0..peers {
        let (gate, addrs) = (gate.clone(), addrs.clone());
        joins.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let client = started(config(quic)).await;
            client
                .add_peer(server_id, addrs, HashMap::new())
                .await
                .unwrap();
            client.connect(server_id).await.unwrap();
            client
                .complete_handshake(server_id, server_key, &[STREAM])
                .await
                .unwrap();
            // The server may not have prepared yet: retry until the stream opens.
            loop {
                match client.send(server_id, STREAM, &b"hello"[..]).await {
                    Ok(()) => break,
                    Err(e) if e.is_retriable() => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
            client
        });
    }
    let mut clients = Vec::with_capacity(peers);
    while let Some(c) = joins.join_next().await {
        clients.push(c.unwrap());
    }
    clients
}

/// `peers` nodes connect to one, handshake and send one encrypted message each (at most
/// `concurrency` at a time), all in this process.
pub async fn connect_many(quic: bool, peers: usize, concurrency: usize) -> (Node, Vec<Node>) {
    let (server, acceptor) = serve(quic, peers, concurrency).await;
    let clients = {
        let c = clients(
            quic,
            server.listen_addrs(),
            server.peer_id(),
            peers,
            concurrency,
        );
        let (clients, ()) = tokio::join!(c, first_messages(&server, peers));
        clients
    };
    acceptor.abort();
    (server, clients)
}

/// A raw peer sends `count` undecryptable bodies on the bench stream; each is one
/// `StreamFault` event for every one of `subscribers` subscriptions. Returns the time until
/// every subscription has seen them all, and how many it missed in total (`Lagged`).
pub async fn events(count: usize, subscribers: usize) -> (std::time::Duration, u64) {
    use futures::AsyncWriteExt as _;
    let node = started(
        config(false)
            .with_max_stream_failures(None)
            // Every fault an event, and no cooldown: the faults are only a source of events.
            .with_fault_report_interval(std::time::Duration::ZERO)
            .with_max_faults(None)
            .with_event_buffer_size(1024),
    )
    .await;
    let mut sub = node.subscribe_events();
    let raw = crate::raw::RawNode::dial(&node.listen_addrs()[0]).await;
    wait(&mut sub, raw.peer_id, State::Connected).await;
    node.prepare_streams(raw.peer_id, raw.public_key, &[STREAM])
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..subscribers {
        let mut s = node.subscribe_filtered(Filter::all().peers([raw.peer_id]));
        tasks.push(tokio::spawn(async move {
            let (mut seen, mut lagged) = (0u64, 0u64);
            while seen + lagged < count as u64 {
                match s.recv().await {
                    Ok(Event::StreamFault(_)) => seen += 1,
                    Err(glueberry::RecvError::Lagged(n)) => lagged += n,
                    Err(glueberry::RecvError::Closed) => break,
                    Ok(_) => {}
                }
            }
            lagged
        }));
    }
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/bench/1.0.0");
    let mut s = raw.open_protocol(node.peer_id(), protocol).await;
    let mut bad = Vec::new();
    glueberry::unstable::wire::put_header(27, &mut bad);
    bad.extend_from_slice(&[7u8; 27]);
    let chunk = bad.repeat(1000);
    let started = std::time::Instant::now();
    let mut left = count;
    while left > 0 {
        let n = left.min(1000);
        s.write_all(&chunk[..n * bad.len()]).await.unwrap();
        left -= n;
    }
    s.flush().await.unwrap();
    let mut lagged = 0;
    for t in tasks {
        lagged += t.await.unwrap();
    }
    let elapsed = started.elapsed();
    node.shutdown().await;
    (elapsed, lagged)
}
