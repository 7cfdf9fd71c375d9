//! Peer scoring (docs/scoring.md): `report` moves the score; at the thresholds the peer is
//! disconnected, then banned: refused both ways until the ban ends, also across a restart.

use std::time::Duration;

use glueberry::handshake;
use glueberry::scoring;
use glueberry::{Config, DisconnectReason, Error, Filter, Node, Severity, State};
use glueberry_tests::*;

fn hs() -> handshake::Config {
    handshake::Config::new(b"c".to_vec(), ["votes"])
}

async fn established(a: &Node, b: &Node) {
    for (x, y) in [(a, b), (b, a)] {
        let mut e = x.subscribe_filtered(Filter::all().peers([y.peer_id()]));
        if x.connection_state(&y.peer_id()) != State::Established {
            wait_state(&mut e, y.peer_id(), State::Established).await;
        }
    }
}

/// Two nodes, each with the other in its book, Established.
async fn pair(a: Config, b: Config) -> (Node, Node) {
    let a = started(a.with_handshake(hs())).await;
    let b = started(b.with_handshake(hs())).await;
    b.add_peer(a.peer_id(), a.listen_addrs(), Default::default())
        .await
        .unwrap();
    a.add_peer(b.peer_id(), b.listen_addrs(), Default::default())
        .await
        .unwrap();
    established(&a, &b).await;
    (a, b)
}

/// `b` dials `a`, which has it banned: the connection is refused (or closed at once), and `a`
/// never lets `b` in. Waits for the end of b's attempt, not for a time.
async fn assert_kept_out(a: &Node, b: &Node) {
    let to_a = a.listen_addrs()[0]
        .clone()
        .with(glueberry::multiaddr::Protocol::P2p(a.peer_id()));
    let mut a_events = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    let mut b_events = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    if b.dial(to_a).await.is_ok() {
        // b got a connection up, which a closes at once.
        within(async {
            loop {
                if let Ok(glueberry::Event::Connection(e)) = b_events.recv().await {
                    assert_ne!(e.state, State::Established, "a banned peer got in");
                    if !matches!(e.state, State::Connecting | State::Connected) {
                        return;
                    }
                }
            }
        })
        .await;
    }
    assert_ne!(a.connection_state(&b.peer_id()), State::Established);
    while let Ok(Some(e)) = a_events.try_recv() {
        if let glueberry::Event::Connection(e) = e {
            assert_ne!(e.state, State::Established, "a banned peer got in");
        }
    }
    assert!(matches!(
        a.connect(b.peer_id()).await,
        Err(Error::Banned { .. }) | Err(Error::UnknownPeer(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lowers_the_score_and_the_disconnect_threshold_acts() {
    let (a, b) = pair(config(Transport::Tcp), config(Transport::Tcp)).await;
    let peer = b.peer_id();
    assert_eq!(a.peer_score(peer).await.unwrap(), 0.0);
    assert_eq!(a.report(peer, Severity::Medium).await.unwrap(), -10.0);
    let now = a.peer_score(peer).await.unwrap();
    assert!((-10.0..-9.9).contains(&now), "{now}");
    assert_eq!(a.connection_state(&peer), State::Established, "not yet");
    let mut events = a.subscribe_filtered(Filter::all().peers([peer]));
    // (-10 decayed a little: just above the threshold.)
    let score = a.report(peer, Severity::High).await.unwrap();
    assert!((-50.0..-49.9).contains(&score), "{score}");
    assert_eq!(a.connection_state(&peer), State::Established);
    let score = a.report(peer, Severity::High).await.unwrap();
    assert!(score <= -89.9, "{score}");
    let e = wait_state(&mut events, peer, State::Cooldown).await;
    let Some(DisconnectReason::Rejected(reason)) = e.reason else {
        panic!("{e:?}");
    };
    assert!(reason.contains("score -90 at or below -50"), "{reason}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_peer_is_refused_both_ways_until_the_ban_ends() {
    let short = scoring::Config {
        ban_duration: Duration::from_secs(2),
        ..scoring::Config::default()
    };
    let (a, b) = pair(
        config(Transport::Tcp).with_scoring(short),
        config(Transport::Tcp).with_reconnect_base_delay(Duration::from_millis(50)),
    )
    .await;
    let peer = b.peer_id();
    let mut events = a.subscribe_filtered(Filter::all().peers([peer]));
    let mut b_events = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    assert_eq!(a.report(peer, Severity::Fatal).await.unwrap(), 0.0);
    let e = wait_state(&mut events, peer, State::Disconnected).await;
    assert!(
        matches!(e.reason, Some(DisconnectReason::Banned { .. })),
        "{e:?}"
    );
    assert_eq!(a.admission_stats().banned, 1);
    // Refused both ways: a does not dial b, and b's redials do not get through.
    assert!(matches!(a.connect(peer).await, Err(Error::Banned { .. })));
    wait_state(&mut b_events, a.peer_id(), State::Reconnecting).await;
    assert_ne!(b.connection_state(&a.peer_id()), State::Established);
    // The ban ends: b is in a's book, so a dials it again.
    wait_state(&mut events, peer, State::Established).await;
    assert_eq!(a.peer_score(peer).await.unwrap(), 0.0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_survives_a_restart_of_the_node() {
    let key = glueberry::identity::ed25519::Keypair::generate();
    let book = book_path();
    let a_config = || {
        Config::new(
            key.clone(),
            book.clone(),
            vec![Transport::Tcp.listen_addr()],
        )
    };
    let (a, b) = pair(a_config(), config(Transport::Tcp)).await;
    let peer = b.peer_id();
    a.report(peer, Severity::Fatal).await.unwrap();
    a.shutdown().await;
    // A new process with the same book: b is still banned.
    let a = started(a_config().with_handshake(hs())).await;
    assert_eq!(a.admission_stats().banned, 1, "enforced at start");
    assert!(matches!(a.connect(peer).await, Err(Error::Banned { .. })));
    // b dials a: the connection is refused (or closed at once), never Established.
    assert_kept_out(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// Taking a banned peer off the blacklist does not lift its ban.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unblacklisting_does_not_lift_a_ban() {
    let (a, b) = pair(config(Transport::Tcp), config(Transport::Tcp)).await;
    let peer = b.peer_id();
    a.report(peer, Severity::Fatal).await.unwrap();
    a.blacklist_peer(peer).await.unwrap();
    a.unblacklist_peer(peer).await.unwrap();
    assert!(matches!(a.connect(peer).await, Err(Error::Banned { .. })));
    assert_kept_out(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
}
