//! A validator that crashes and restarts with the same identity is back at once with every
//! peer, whatever duplicate connections linger (docs/admission.md, "Restarts").
//!
//! Four nodes dial each other at once, so pairs get duplicate connections. One is killed the
//! way a crash kills it (its runtime is dropped: no clean close, and over QUIC its peers hear
//! nothing) and started again with the same identity and address book. Every timeout that could
//! otherwise bring it back (pings, QUIC idle, reconnection delays, the retired-duplicate grace,
//! the handshake timeout) is set far beyond the test's own bound, so the test passes only if the
//! node re-establishes the peer without waiting for one.

use std::collections::HashMap;
use std::time::Duration;

use glueberry::identity::ed25519;
use glueberry::{Config, Event, Filter, Node, PeerId, State};
use glueberry_tests::*;

const LONG: Duration = Duration::from_secs(600);

fn patient(
    key: ed25519::Keypair,
    book: std::path::PathBuf,
    listen: Vec<glueberry::Multiaddr>,
) -> Config {
    Config::new(key, book, listen)
        .with_ping_interval(LONG)
        .with_ping_timeout(LONG)
        .with_idle_connection_timeout(LONG)
        .with_reconnect_base_delay(LONG)
        .with_reconnect_max_delay(LONG)
        .with_handshake_timeout(Some(LONG))
}

/// A node on a runtime of its own, which a test can drop as a crash would.
struct Crashable {
    runtime: tokio::runtime::Runtime,
    node: Node,
    /// Messages on other streams than the handshake.
    inbox: tokio::sync::mpsc::UnboundedReceiver<glueberry::IncomingMessage>,
}

impl Crashable {
    async fn start(config: Config, peers: &[(PeerId, Vec<glueberry::Multiaddr>)]) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let peers = peers.to_vec();
        let (node, inbox) = runtime
            .spawn(async move {
                let node = started(config).await;
                let inbox = handshake_everyone(&node, &["data"]);
                for (peer, addrs) in peers {
                    node.add_peer(peer, addrs, HashMap::new()).await.unwrap();
                }
                (node, inbox)
            })
            .await
            .unwrap();
        Self {
            runtime,
            node,
            inbox,
        }
    }

    /// Every task of the node stops where it is: no clean close of anything.
    fn crash(self) {
        self.runtime.shutdown_background();
    }
}

/// Waits until `node` has `peers` Established (from the events of `sub`).
async fn all_established(sub: &mut glueberry::Subscription, node: &Node, peers: &[PeerId]) {
    within(async {
        while !peers
            .iter()
            .all(|p| node.connection_state(p) == State::Established)
        {
            let _ = sub.recv().await;
        }
    })
    .await;
}

async fn restarted_peer_is_back_at_once(t: Transport) {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<ed25519::Keypair> = (0..4).map(|_| ed25519::Keypair::generate()).collect();
    let ids: Vec<PeerId> = keys
        .iter()
        .map(|k| PeerId::from_public_key(&k.public().into()))
        .collect();
    let book = |i: usize| dir.path().join(format!("book-{i}.json"));

    // Three survivors on the test's runtime.
    let mut survivors = Vec::new();
    for (i, key) in keys.iter().take(3).enumerate() {
        let node = started(patient(key.clone(), book(i), vec![t.listen_addr()])).await;
        let inbox = handshake_everyone(&node, &["data"]);
        survivors.push((node, inbox));
    }
    let addrs: Vec<(PeerId, Vec<glueberry::Multiaddr>)> = survivors
        .iter()
        .map(|(n, _)| (n.peer_id(), n.listen_addrs()))
        .collect();
    let victim = Crashable::start(
        patient(keys[3].clone(), book(3), vec![t.listen_addr()]),
        &addrs,
    )
    .await;
    let victim_id = ids[3];
    for (n, _) in &survivors {
        for (p, a) in addrs
            .iter()
            .chain([&(victim_id, victim.node.listen_addrs())])
        {
            if *p != n.peer_id() {
                n.add_peer(*p, a.clone(), HashMap::new()).await.unwrap();
            }
        }
    }
    // Everyone dials everyone at once: simultaneous dials leave duplicates.
    let everyone: Vec<Node> = survivors
        .iter()
        .map(|(n, _)| n.clone())
        .chain([victim.node.clone()])
        .collect();
    let dials = everyone.iter().flat_map(|n| {
        ids.iter()
            .filter(move |p| **p != n.peer_id())
            .map(move |p| n.connect(*p))
    });
    let _ = futures::future::join_all(dials).await;
    for (i, n) in everyone.iter().enumerate() {
        let others: Vec<PeerId> = ids.iter().copied().filter(|p| *p != ids[i]).collect();
        let mut sub = n.subscribe_events();
        all_established(&mut sub, n, &others).await;
    }
    let duplicates: usize = survivors
        .iter()
        .map(|(n, _)| ids.iter().map(|p| n.connection_count(p)).sum::<usize>())
        .sum();
    println!("{t:?}: connections held by the survivors: {duplicates}");

    // Crash and restart with the same identity, address and book.
    let mut subs: Vec<_> = survivors
        .iter()
        .map(|(n, _)| n.subscribe_filtered(Filter::all().peers([victim_id])))
        .collect();
    let victim_listen = victim.node.listen_addrs();
    victim.crash();
    let t0 = std::time::Instant::now();
    // The same book (a copy: the crashed runtime may still hold the lock of the old file for a
    // moment, where a crashed process would have released it).
    std::fs::copy(book(3), book(4)).unwrap();
    let mut reborn = Crashable::start(patient(keys[3].clone(), book(4), victim_listen), &[]).await;

    // Every survivor has it Established again (on a new connection), and it has them all.
    for (i, sub) in subs.iter_mut().enumerate() {
        within(async {
            loop {
                if let Ok(Event::Connection(e)) = sub.recv().await
                    && e.state == State::Established
                {
                    return;
                }
            }
        })
        .await;
        println!("{t:?}: survivor {i} has it back after {:?}", t0.elapsed());
    }
    let mut sub = reborn.node.subscribe_events();
    all_established(&mut sub, &reborn.node, &ids[..3]).await;

    // Sends reach the restarted node, not its dead predecessor.
    for (n, _) in &survivors {
        n.send(victim_id, "data", n.peer_id().to_bytes())
            .await
            .unwrap();
    }
    let mut from = Vec::new();
    for _ in 0..3 {
        let m = within(reborn.inbox.recv()).await.unwrap();
        assert_eq!(&*m.stream, "data");
        from.push(m.peer);
    }
    from.sort();
    let mut expected = ids[..3].to_vec();
    expected.sort();
    assert_eq!(from, expected);
    for (n, _) in &survivors {
        n.shutdown().await;
    }
    reborn.node.shutdown().await;
    reborn.crash();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_a_restarted_peer_is_back_at_once() {
    restarted_peer_is_back_at_once(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_restarted_peer_is_back_at_once() {
    restarted_peer_is_back_at_once(Transport::Quic).await;
}
