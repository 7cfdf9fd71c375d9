//! The lifecycle with real nodes: lost connections are seen and reconnected, restarted peers
//! are established again, handshake timeouts lead to cooldown, blacklisted peers stay out.

use std::time::Duration;

use glueberry::{Config, DisconnectReason, Error, Node, State};
use glueberry_tests::*;

/// Fast timers so that the lifecycle runs in well under a second.
fn quick(t: Transport) -> Config {
    config(t)
        .with_reconnect_base_delay(Duration::from_millis(50))
        .with_reconnect_max_delay(Duration::from_millis(400))
}

async fn handshake_pair(a: &Node, b: &Node) {
    tokio::join!(
        handshake(a, b.peer_id(), true, &["data"]),
        handshake(b, a.peer_id(), false, &["data"])
    );
}

async fn exchange(a: &Node, b: &Node, what: &str) {
    a.send(b.peer_id(), "data", what.to_owned()).await.unwrap();
    let m = within(b.messages().recv()).await.unwrap();
    assert_eq!(m.data.as_ref(), what.as_bytes());
}

/// After `a` reconnected to `b` (`ev`: a's events about b): both connected, the application's
/// handshake runs again, `a` sees Established, and messages flow both ways.
async fn established_again(a: &Node, b: &Node, ev: &mut glueberry::Subscription) {
    wait_state(ev, b.peer_id(), State::Connected).await;
    handshake_pair(a, b).await;
    wait_state(ev, b.peer_id(), State::Established).await;
    exchange(a, b, "after").await;
    exchange(b, a, "back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_reconnected_and_established_again() {
    let t = Transport::Tcp;
    let a = started(quick(t)).await;
    let b = started(quick(t)).await;
    let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
    connect(&a, &b).await;
    handshake_pair(&a, &b).await;
    exchange(&a, &b, "before").await;

    // b drops the connection: a sees it, with the reason, and reconnects by itself.
    b.disconnect(a.peer_id()).await.unwrap();
    let e = wait_state(&mut ev, b.peer_id(), State::Disconnected).await;
    assert_eq!(e.reason, Some(DisconnectReason::RemoteClosed));
    let e = wait_state(&mut ev, b.peer_id(), State::Reconnecting).await;
    assert_eq!(e.attempt, Some(1));
    assert!(e.delay.is_some());
    let e = wait_state(&mut ev, b.peer_id(), State::Connecting).await;
    assert_eq!(e.attempt, Some(1));
    established_again(&a, &b, &mut ev).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// `from` adds `to` to its book at the proxy's address and dials it.
async fn connect_through(from: &Node, to: &Node, proxy: &Proxy) {
    from.add_peer(to.peer_id(), vec![proxy.addr.clone()], Default::default())
        .await
        .unwrap();
    from.connect(to.peer_id()).await.unwrap();
}

/// Whether `reason` says the connection was lost (reset), not closed on purpose.
fn lost(reason: &Option<DisconnectReason>) -> bool {
    matches!(reason, Some(DisconnectReason::Error(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_is_reconnected_and_established_again() {
    let t = Transport::Tcp;
    let a = started(quick(t)).await;
    // b (a dialled it) does not reconnect by itself: a's recovery alone is under test.
    let b = started(quick(t)).await;
    let proxy = Proxy::to(&b.listen_addrs()[0]).await;
    let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
    connect_through(&a, &b, &proxy).await;
    handshake_pair(&a, &b).await;
    exchange(&a, &b, "before").await;

    // The connection is reset under both nodes.
    proxy.kill_all();
    let e = wait_state(&mut ev, b.peer_id(), State::Disconnected).await;
    assert!(lost(&e.reason), "{:?}", e.reason);
    let e = wait_state(&mut ev, b.peer_id(), State::Reconnecting).await;
    assert_eq!(e.attempt, Some(1));
    established_again(&a, &b, &mut ev).await;
    let stats = a.peer_stats(&b.peer_id()).unwrap();
    assert_eq!(stats.connection_count, 2);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_established_peer_outside_the_book_is_reconnected_with_learned_addresses() {
    let t = Transport::Tcp;
    let a = started(quick(t).with_reconnect_learned_peers(true)).await;
    let b = started(quick(t)).await;
    // b dials a through the proxy; a learns b's listen address through identify.
    let proxy = Proxy::to(&a.listen_addrs()[0]).await;
    let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
    connect_through(&b, &a, &proxy).await;
    tokio::join!(
        handshake(&b, a.peer_id(), true, &["data"]),
        handshake(&a, b.peer_id(), false, &["data"])
    );
    // b forgets a: only a can bring the connection back.
    b.remove_peer(a.peer_id()).await.unwrap();
    assert!(a.get_peer(b.peer_id()).await.unwrap().is_none());

    proxy.kill_all();
    let e = wait_state(&mut ev, b.peer_id(), State::Disconnected).await;
    assert!(lost(&e.reason), "{:?}", e.reason);
    wait_state(&mut ev, b.peer_id(), State::Reconnecting).await;
    wait_state(&mut ev, b.peer_id(), State::Connected).await;
    assert_eq!(
        a.is_outbound(&b.peer_id()),
        Some(true),
        "a dialled b this time"
    );
    handshake_pair(&a, &b).await;
    exchange(&a, &b, "found you").await;
    exchange(&b, &a, "hello").await;
    a.shutdown().await;
    b.shutdown().await;
}

async fn restart(t: Transport) {
    let a = started(quick(t)).await;
    let b_config = quick(t);
    let b = started(b_config.clone()).await;
    let b_addr = b.listen_addrs()[0].clone();
    let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
    connect(&a, &b).await;
    handshake_pair(&a, &b).await;
    exchange(&a, &b, "first life").await;

    // b stops and comes back with the same identity on the same address.
    let b_id = b.peer_id();
    b.shutdown().await;
    wait_state(&mut ev, b_id, State::Disconnected).await;
    let b = restart_on(&b_config, b_addr).await;
    assert_eq!(b.peer_id(), b_id);
    wait_state(&mut ev, b_id, State::Connected).await;
    handshake_pair(&a, &b).await;
    assert_eq!(a.connection_state(&b_id), State::Established);
    exchange(&a, &b, "second life").await;
    exchange(&b, &a, "hello again").await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Starts a node with `config`'s identity on `addr`. The old node's UDP socket is released by
/// quinn's endpoint task after its connections drain, a moment after shutdown returns, so
/// binding the same port is retried (bounded) as an operator's restart would be.
async fn restart_on(config: &Config, addr: glueberry::Multiaddr) -> Node {
    for _ in 0..100 {
        let node = Node::new(
            Config::new(
                config.keypair().clone(),
                config.address_book_path(),
                vec![addr.clone()],
            )
            .with_reconnect_base_delay(Duration::from_millis(50)),
        )
        .unwrap();
        match node.start().await {
            Ok(_) => return node,
            Err(Error::Listen { .. }) => {
                node.shutdown().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("could not listen on {addr} again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_restarted_peer_is_established_again() {
    restart(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_restarted_peer_is_established_again() {
    restart(Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_cooldown_then_reconnection() {
    let t = Transport::Tcp;
    let a = started(
        quick(t)
            .with_handshake_timeout(Some(Duration::from_millis(200)))
            .with_failed_handshake_cooldown(Duration::from_millis(300)),
    )
    .await;
    let b = started(config(t).with_handshake_timeout(None)).await;
    let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
    connect(&a, &b).await;
    // Nobody handshakes.
    wait_state(&mut ev, b.peer_id(), State::Connected).await;
    let e = wait_state(&mut ev, b.peer_id(), State::Cooldown).await;
    assert_eq!(e.reason, Some(DisconnectReason::HandshakeTimeout));
    // During cooldown the peer may not be dialled.
    assert!(matches!(
        a.connect(b.peer_id()).await,
        Err(Error::InvalidState {
            state: State::Cooldown,
            ..
        })
    ));
    wait_state(&mut ev, b.peer_id(), State::Reconnecting).await;
    wait_state(&mut ev, b.peer_id(), State::Connecting).await;
    wait_state(&mut ev, b.peer_id(), State::Connected).await;
    // This time the handshake is done in time.
    handshake_pair(&a, &b).await;
    assert_eq!(a.connection_state(&b.peer_id()), State::Established);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklisted_peer_cannot_connect_either_way() {
    let t = Transport::Tcp;
    let a = started(quick(t)).await;
    let b = started(quick(t)).await;
    let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
    let mut evb = b.subscribe_filtered(glueberry::Filter::all().peers([a.peer_id()]));
    connect(&a, &b).await;
    b.add_peer(a.peer_id(), a.listen_addrs(), Default::default())
        .await
        .unwrap();
    handshake_pair(&a, &b).await;

    // Blacklisting closes the connection at once, and no reconnection follows.
    a.blacklist_peer(b.peer_id()).await.unwrap();
    let e = wait_state(&mut ev, b.peer_id(), State::Disconnected).await;
    assert_eq!(e.reason, Some(DisconnectReason::Blacklisted));
    assert!(matches!(
        a.connect(b.peer_id()).await,
        Err(Error::Blacklisted(_))
    ));
    // b, which has a in its book, tries to reconnect and is refused every time.
    wait_state(&mut evb, a.peer_id(), State::Disconnected).await;
    loop {
        let e = wait_state(&mut evb, a.peer_id(), State::Reconnecting).await;
        if e.attempt == Some(3) {
            break;
        }
    }
    assert_eq!(a.connection_state(&b.peer_id()), State::Disconnected);
    // a never saw b connect again.
    while let Ok(Some(e)) = ev.try_recv() {
        if let glueberry::Event::Connection(e) = e {
            assert_eq!(e.state, State::Disconnected, "{e:?}");
        }
    }

    // Off the blacklist, a can connect again.
    b.cancel_reconnection(a.peer_id()).await.unwrap();
    a.unblacklist_peer(b.peer_id()).await.unwrap();
    a.connect(b.peer_id()).await.unwrap();
    assert_eq!(a.connection_state(&b.peer_id()), State::Connected);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnection_gives_up_after_max_attempts() {
    let t = Transport::Tcp;
    let a = started(quick(t).with_reconnect_max_attempts(Some(3))).await;
    let b = started(config(t)).await;
    let b_id = b.peer_id();
    let b_addrs = b.listen_addrs();
    b.shutdown().await;
    let mut ev = a.subscribe_events();
    // A started node dials the peers it is given, and reconnects when that fails.
    a.add_peer(b_id, b_addrs, Default::default()).await.unwrap();
    wait_state(&mut ev, b_id, State::Connecting).await;
    for attempt in 1..=3 {
        let e = wait_state(&mut ev, b_id, State::Reconnecting).await;
        assert_eq!(e.attempt, Some(attempt));
        let e = wait_state(&mut ev, b_id, State::Connecting).await;
        assert_eq!(e.attempt, Some(attempt));
    }
    let e = wait_state(&mut ev, b_id, State::Disconnected).await;
    assert!(
        matches!(e.reason, Some(DisconnectReason::ReconnectExhausted(_))),
        "{e:?}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_end_with_one_connection_established_on_both_sides() {
    let t = Transport::Tcp;
    for round in 0..3 {
        let short = |c: Config| c.with_idle_connection_timeout(Duration::from_millis(100));
        let a = started(short(quick(t))).await;
        let b = started(short(quick(t))).await;
        a.add_peer(b.peer_id(), b.listen_addrs(), Default::default())
            .await
            .unwrap();
        b.add_peer(a.peer_id(), a.listen_addrs(), Default::default())
            .await
            .unwrap();
        let (ra, rb) = tokio::join!(a.connect(b.peer_id()), b.connect(a.peer_id()));
        ra.unwrap();
        rb.unwrap();
        // Both run the handshake; whoever speaks first, it completes.
        handshake_pair(&a, &b).await;
        // Both open "data" at once with their first message: neither message is lost.
        let (sa, sb) = tokio::join!(
            a.send(b.peer_id(), "data", format!("first from a {round}")),
            b.send(a.peer_id(), "data", format!("first from b {round}"))
        );
        sa.unwrap();
        sb.unwrap();
        let at_b = within(b.messages().recv()).await.unwrap();
        let at_a = within(a.messages().recv()).await.unwrap();
        assert_eq!(at_b.data, format!("first from a {round}").as_bytes());
        assert_eq!(at_a.data, format!("first from b {round}").as_bytes());
        for i in 0..20 {
            exchange(&a, &b, &format!("a{round}-{i}")).await;
            exchange(&b, &a, &format!("b{round}-{i}")).await;
        }
        // Both keep the same connection: exactly one of them dialled it.
        let (oa, ob) = (a.is_outbound(&b.peer_id()), b.is_outbound(&a.peer_id()));
        assert!(oa.is_some() && oa != ob, "round {round}: {oa:?} {ob:?}");
        // A duplicate, if there was one, closes once its streams are done.
        within(async {
            while a.connection_count(&b.peer_id()) != 1 || b.connection_count(&a.peer_id()) != 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert_eq!(a.connection_state(&b.peer_id()), State::Established);
        assert_eq!(b.connection_state(&a.peer_id()), State::Established);
        exchange(&a, &b, "after").await;
        a.shutdown().await;
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_behind_a_lingering_connection_handshakes_again() {
    // b "crashes" without its connection closing (as a killed QUIC peer's connection lingers
    // until its idle timeout): the old node keeps running, silent, while a new node with the
    // same identity dials a and handshakes. a must recognise it and finalize again.
    for t in [Transport::Tcp, Transport::Quic] {
        let a = started(quick(t)).await;
        let b_config = quick(t);
        let b = started(b_config.clone()).await;
        let mut ev = a.subscribe_filtered(glueberry::Filter::all().peers([b.peer_id()]));
        connect(&a, &b).await;
        handshake_pair(&a, &b).await;
        wait_state(&mut ev, b.peer_id(), State::Established).await;

        let mut old_b = b.subscribe_filtered(glueberry::Filter::all().peers([a.peer_id()]));
        // The same identity, as another process would run it (with its own book).
        let b2 = started(Config::new(
            b_config.keypair().clone(),
            config(t).address_book_path(),
            vec![t.listen_addr()],
        ))
        .await;
        connect(&b2, &a).await;
        assert_eq!(a.connection_state(&b2.peer_id()), State::Established);
        handshake_pair(&b2, &a).await;
        // a went back to Connected for the new handshake, then Established again.
        wait_state(&mut ev, b.peer_id(), State::Connected).await;
        wait_state(&mut ev, b.peer_id(), State::Established).await;
        exchange(&a, &b2, "to the new b").await;
        exchange(&b2, &a, "from the new b").await;
        // The stale connection was closed: the old b lost its peer.
        wait_state(&mut old_b, a.peer_id(), State::Disconnected).await;
        a.shutdown().await;
        b.shutdown().await;
        b2.shutdown().await;
    }
}
