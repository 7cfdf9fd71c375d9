//! A node on a runtime of its own, which a test can drop the way a crash stops a process: no
//! clean close of anything (over QUIC its peers hear nothing at all).

use std::collections::HashMap;
use std::time::Duration;

use glueberry::identity::ed25519;
use glueberry::{Config, Event, Filter, IncomingMessage, Multiaddr, Node, PeerId, State};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::{Transport, handshake_everyone, started, within};

/// The node, its runtime, and the messages it received on other streams than the handshake
/// (it runs [`handshake_everyone`]).
pub struct Crashable {
    runtime: tokio::runtime::Runtime,
    /// The node.
    pub node: Node,
    /// Messages on other streams than the handshake.
    pub inbox: UnboundedReceiver<IncomingMessage>,
}

impl Crashable {
    /// Starts a node from `config` on a new one-thread runtime, handshaking with everyone on
    /// `streams`, with `peers` added to its book.
    pub async fn start(
        config: Config,
        streams: &[&str],
        peers: &[(PeerId, Vec<Multiaddr>)],
    ) -> Self {
        Self::start_with(move |_| config.clone(), streams, peers).await
    }

    /// [`start`](Self::start) with the config `make(false)`; if its listen address stays taken
    /// for 5 s (a crashed runtime's socket not closed yet), with `make(true)` instead (which
    /// should listen on a fresh port).
    pub async fn start_with(
        make: impl Fn(bool) -> Config + Send + 'static,
        streams: &[&str],
        peers: &[(PeerId, Vec<Multiaddr>)],
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let peers = peers.to_vec();
        let streams: Vec<String> = streams.iter().map(|s| s.to_string()).collect();
        let (node, inbox) = runtime
            .spawn(async move {
                crate::init_tracing();
                // A crashed process frees its ports at once; a crashed runtime closes its
                // sockets as its threads wind down: try the same address again meanwhile.
                let mut tries = 0;
                let node = loop {
                    let node = glueberry::Node::new(make(tries >= 250)).expect("node");
                    match node.start().await {
                        Ok(_) => break node,
                        Err(_) if tries < 251 => {
                            tries += 1;
                            // Frees the book's lock before the next try.
                            node.shutdown().await;
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                        Err(e) => panic!("start: {e}"),
                    }
                };
                let names: Vec<&str> = streams.iter().map(String::as_str).collect();
                let inbox = handshake_everyone(&node, &names);
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

    /// Every task of the node stops where it is.
    pub fn crash(self) {
        self.runtime.shutdown_background();
    }
}

fn node_config(
    per_peer: Option<usize>,
    timeouts: Option<Duration>,
    key: ed25519::Keypair,
    book: std::path::PathBuf,
    listen: Vec<Multiaddr>,
) -> Config {
    let c = Config::new(key, book, listen).with_max_connections_per_peer(per_peer);
    match timeouts {
        None => c,
        Some(long) => c
            .with_ping_interval(long)
            .with_ping_timeout(long)
            .with_idle_connection_timeout(long)
            .with_reconnect_base_delay(long)
            .with_reconnect_max_delay(long)
            .with_handshake_timeout(Some(long)),
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

/// Four nodes dial each other at once (duplicates form), the fourth crashes and restarts with the
/// same identity, address and book. Returns, for each survivor, the time from the restart until it
/// had the peer Established again. Every timeout of every node is `timeouts` when given (the
/// defaults otherwise), and `max_connections_per_peer` is `per_peer`. Panics if any step does not happen within [`WAIT`](crate::WAIT), or if
/// the survivors' messages do not reach the restarted node.
pub async fn crash_and_restart(
    t: Transport,
    timeouts: Option<Duration>,
    per_peer: Option<usize>,
) -> Vec<Duration> {
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
        let node = started(node_config(
            per_peer,
            timeouts,
            key.clone(),
            book(i),
            vec![t.listen_addr()],
        ))
        .await;
        let inbox = handshake_everyone(&node, &["data"]);
        survivors.push((node, inbox));
    }
    let addrs: Vec<(PeerId, Vec<Multiaddr>)> = survivors
        .iter()
        .map(|(n, _)| (n.peer_id(), n.listen_addrs()))
        .collect();
    let victim = Crashable::start(
        node_config(
            per_peer,
            timeouts,
            keys[3].clone(),
            book(3),
            vec![t.listen_addr()],
        ),
        &["data"],
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
    let key = keys[3].clone();
    let book4 = book(4);
    let mut reborn = Crashable::start_with(
        move |fresh| {
            let listen = if fresh {
                vec![t.listen_addr()]
            } else {
                victim_listen.clone()
            };
            node_config(per_peer, timeouts, key.clone(), book4.clone(), listen)
        },
        &["data"],
        &[],
    )
    .await;

    // Every survivor has it Established again (on a new connection), and it has them all.
    let mut back = Vec::new();
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
        back.push(t0.elapsed());
        let _ = i;
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
    back
}
