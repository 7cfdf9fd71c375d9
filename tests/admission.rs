//! Admission (docs/admission.md): floods of connections that never finish a handshake lock
//! nobody out, the limits refuse or evict what they should, and every refusal is counted,
//! reported and visible.

use std::net::SocketAddr;

use glueberry::{AdmissionCause, Event, Multiaddr, State};
use glueberry_tests::*;
use libp2p::multiaddr::Protocol;

fn socket_addr(addr: &Multiaddr) -> SocketAddr {
    let (mut ip, mut port) = (None, None);
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.unwrap(), port.unwrap()))
}

/// Waits until an admission event of every cause in `causes` has been seen.
async fn wait_admission(sub: &mut glueberry::Subscription, causes: &[AdmissionCause]) {
    let mut seen = Vec::new();
    within(async {
        while !causes.iter().all(|c| seen.contains(c)) {
            if let Ok(Event::Admission(a)) = sub.recv().await {
                assert!(a.count >= 1);
                seen.push(a.cause);
            }
        }
    })
    .await;
}

/// The two floods at once, refilled as the node closes them: silent TCP connections
/// from eight hosts (more per host than the per-IP limit, more in all than the pending places)
/// and idle Noise connections from fresh identities on two more (more than the strangers'
/// budget). Meanwhile a new well-behaved peer connects and finishes its handshake, and the
/// node's own dial to an address-book peer succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_lock_nobody_out() {
    let node = started(config(Transport::Tcp).with_max_strangers(Some(16))).await;
    let mut sub = node.subscribe_events();
    let target = socket_addr(&node.listen_addrs()[0]);
    // 8 hosts × 20 silent connections: 4 per host over the per-IP limit (16), and 160 in all
    // for 128 pending places.
    let silent = Flood::silent_tcp(target, &hosts(1, 8), 20);
    // 2 hosts × 12 idle identities for 16 strangers' places.
    let idle = Flood::idle_noise(target, &hosts(2, 2), 12);
    wait_admission(
        &mut sub,
        &[
            AdmissionCause::PerIp,
            AdmissionCause::PendingEvicted,
            AdmissionCause::StrangerEvicted,
        ],
    )
    .await;

    // A stranger that does the handshake gets in.
    let good = started(config(Transport::Tcp)).await;
    connect(&good, &node).await;
    tokio::join!(
        handshake(&good, node.peer_id(), true, &["data"]),
        handshake(&node, good.peer_id(), false, &["data"])
    );
    assert_eq!(node.connection_state(&good.peer_id()), State::Established);

    // The node's own dial to a book peer gets out and in.
    let book_peer = started(config(Transport::Tcp)).await;
    connect(&node, &book_peer).await;
    tokio::join!(
        handshake(&node, book_peer.peer_id(), true, &["data"]),
        handshake(&book_peer, node.peer_id(), false, &["data"])
    );
    assert_eq!(
        node.connection_state(&book_peer.peer_id()),
        State::Established
    );

    // Both are served while the floods go on.
    good.send(node.peer_id(), "data", b"hi".to_vec())
        .await
        .unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!((m.peer, &*m.data), (good.peer_id(), &b"hi"[..]));

    let stats = node.admission_stats();
    println!(
        "admission: {stats:?}; flood connections: {} silent, {} idle",
        silent.connects.load(std::sync::atomic::Ordering::Relaxed),
        idle.connects.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(stats.per_ip > 0 && stats.pending_evicted > 0 && stats.stranger_evicted > 0);
    // Nobody we trust was refused or evicted.
    assert_eq!(stats.total + stats.inbound, 0);
    drop((silent, idle));
    good.shutdown().await;
    book_peer.shutdown().await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_counts_connections_not_yet_trusted() {
    let node = started(config(Transport::Tcp).with_max_inbound_per_ip(Some(2))).await;
    let mut sub = node.subscribe_events();
    let addr = node.listen_addrs()[0].clone();
    let mut first = RawPeer::dial(addr.clone());
    first.outcome().await.unwrap();
    wait_state(&mut sub, first.peer_id, State::Connected).await;
    let mut second = RawPeer::dial(addr.clone());
    second.outcome().await.unwrap();
    wait_state(&mut sub, second.peer_id, State::Connected).await;
    // Two strangers from 127.0.0.1: a third connection is refused before its handshake.
    let mut third = RawPeer::dial(addr.clone());
    assert!(third.outcome().await.is_err());
    wait_admission(&mut sub, &[AdmissionCause::PerIp]).await;
    assert_eq!(node.admission_stats().per_ip, 1);
    // Room again once one goes.
    let first_id = first.peer_id;
    drop(first);
    wait_state(&mut sub, first_id, State::Disconnected).await;
    let mut fourth = RawPeer::dial(addr.clone());
    fourth.outcome().await.unwrap();
    node.shutdown().await;

    // Peers that finished the handshake do not count: many validators behind one NAT get in,
    // one after the other, with a limit of one.
    let node = started(config(Transport::Tcp).with_max_inbound_per_ip(Some(1))).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        let p = started(config(Transport::Tcp)).await;
        connect(&p, &node).await;
        tokio::join!(
            handshake(&p, node.peer_id(), true, &["data"]),
            handshake(&node, p.peer_id(), false, &["data"])
        );
        peers.push(p);
    }
    assert_eq!(node.established_peers().len(), 3);
    for p in peers {
        p.shutdown().await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_and_inbound_limits_refuse_strangers_only() {
    for inbound_limit in [false, true] {
        let mut c = config(Transport::Tcp);
        c = if inbound_limit {
            c.with_max_inbound_connections(Some(2))
        } else {
            c.with_conn_high_watermark(2).with_conn_low_watermark(1)
        };
        let node = started(c).await;
        let addr = node.listen_addrs()[0].clone();
        let mut sub = node.subscribe_events();
        let mut peers = Vec::new();
        for _ in 0..2 {
            let mut p = RawPeer::dial(addr.clone());
            p.outcome().await.unwrap();
            wait_state(&mut sub, p.peer_id, State::Connected).await;
            peers.push(p);
        }
        // A third stranger is refused after its security handshake: the dialler sees its
        // connection up, then closed at once.
        let mut extra = RawPeer::dial(addr.clone());
        let closed = match extra.outcome().await {
            Err(_) => true,
            Ok(()) => extra.outcome().await.is_err(),
        };
        assert!(closed, "a third stranger is refused");
        for p in &mut peers {
            assert!(p.events.try_recv().is_err(), "the first two stay up");
        }
        let cause = if inbound_limit {
            AdmissionCause::Inbound
        } else {
            AdmissionCause::Total
        };
        wait_admission(&mut sub, &[cause]).await;
        assert_eq!(node.admission_stats().get(cause), 1);
        // A book peer is let in all the same (the node dials it too, as a started node does
        // with the peers it is given: either connection may be the one kept).
        let friend = started(config(Transport::Tcp)).await;
        node.add_peer(friend.peer_id(), friend.listen_addrs(), Default::default())
            .await
            .unwrap();
        connect(&friend, &node).await;
        wait_state(&mut sub, friend.peer_id(), State::Connected).await;
        assert!(node.connection_count(&friend.peer_id()) >= 1);
        assert_eq!(node.admission_stats().get(cause), 1, "nothing more refused");
        friend.shutdown().await;
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_of_an_established_peer_at_its_limit_supersedes_the_oldest() {
    // One connection per peer. The peer, Established, comes back from a second process with
    // the same identity (as after a restart, the first still running here): the new connection
    // is let in and the old one closed.
    let node = started(config(Transport::Tcp).with_max_connections_per_peer(Some(1))).await;
    let mut sub = node.subscribe_events();
    let key = glueberry::identity::ed25519::Keypair::generate();
    let as_key = |key: &glueberry::identity::ed25519::Keypair| {
        let c = config(Transport::Tcp);
        glueberry::Config::new(
            key.clone(),
            c.address_book_path(),
            c.listen_addrs().to_vec(),
        )
    };
    let first = started(as_key(&key)).await;
    let mut first_events = first.subscribe_events();
    connect(&first, &node).await;
    tokio::join!(
        handshake(&first, node.peer_id(), true, &["data"]),
        handshake(&node, first.peer_id(), false, &["data"])
    );
    let twin = started(as_key(&key)).await;
    connect(&twin, &node).await;
    tokio::join!(
        handshake(&twin, node.peer_id(), true, &["data"]),
        handshake(&node, twin.peer_id(), false, &["data"])
    );
    wait_admission(&mut sub, &[AdmissionCause::Superseded]).await;
    wait_state(&mut first_events, node.peer_id(), State::Disconnected).await;
    assert_eq!(node.connection_count(&twin.peer_id()), 1);
    assert_eq!(node.connection_state(&twin.peer_id()), State::Established);
    assert_eq!(node.admission_stats().superseded, 1);
    // The twin is the one served.
    twin.send(node.peer_id(), "data", b"new".to_vec())
        .await
        .unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!(&*m.data, b"new");
    for n in [first, twin, node] {
        n.shutdown().await;
    }
}

/// A TCP connection to `addr` that never starts its security handshake: it stays pending.
async fn silent_tcp(addr: &Multiaddr) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(socket_addr(addr))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pending_stage_evicts_its_oldest() {
    let node = started(config(Transport::Tcp).with_max_pending_inbound(Some(1))).await;
    let mut sub = node.subscribe_events();
    let addr = node.listen_addrs()[0].clone();
    let mut silent = silent_tcp(&addr).await;
    // The silent one holds the only place; a new peer takes it and gets in.
    let mut p = RawPeer::dial(addr.clone());
    p.outcome().await.unwrap();
    // The silent one was closed.
    let mut buf = [0u8; 64];
    let closed = within(async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut silent, &mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed);
    wait_admission(&mut sub, &[AdmissionCause::PendingEvicted]).await;
    assert_eq!(node.admission_stats().pending_evicted, 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_handshake_has_a_deadline() {
    let node = started(
        config(Transport::Tcp)
            .with_security_handshake_timeout(std::time::Duration::from_millis(300)),
    )
    .await;
    let addr = node.listen_addrs()[0].clone();
    let mut silent = silent_tcp(&addr).await;
    let mut buf = [0u8; 64];
    within(async {
        loop {
            match tokio::io::AsyncReadExt::read(&mut silent, &mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    node.shutdown().await;
}
