//! The consensus-node API: the built-in handshake (against itself and against the manual
//! two-phase API, byte for byte), rejection with a cooldown, one-off dials, persistent peers.

use std::time::Duration;

use glueberry::handshake;
use glueberry::multiaddr::Protocol;
use glueberry::{DisconnectReason, Error, Event, Filter, Node, State};
use glueberry_tests::*;

const STREAMS: [&str; 2] = ["consensus", "mempool"];

fn chain(id: &str) -> handshake::Config {
    handshake::Config::new(id.as_bytes().to_vec(), STREAMS).require_same_hello()
}

fn with_p2p(node: &Node) -> glueberry::Multiaddr {
    node.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(node.peer_id()))
}

async fn both_established(a: &Node, b: &Node) {
    let mut ea = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    let mut eb = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    if a.connection_state(&b.peer_id()) != State::Established {
        wait_state(&mut ea, b.peer_id(), State::Established).await;
    }
    if b.connection_state(&a.peer_id()) != State::Established {
        wait_state(&mut eb, a.peer_id(), State::Established).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_with_the_built_in_handshake_establish_and_talk() {
    for t in [Transport::Tcp, Transport::Quic] {
        let a = started(config(t).with_handshake(chain("chain-7"))).await;
        let b = started(config(t).with_handshake(chain("chain-7"))).await;
        let mut eb = b.subscribe_filtered(Filter::all().states([State::Established]));
        assert_eq!(a.dial(with_p2p(&b)).await.unwrap(), b.peer_id());
        wait_state(&mut eb, a.peer_id(), State::Established).await;
        both_established(&a, &b).await;
        // Both sides prepared the streams: messages go both ways, and no handshake message
        // reaches the application.
        let (ma, mb) = (a.messages(), b.messages());
        a.send(b.peer_id(), "consensus", b"prevote".to_vec())
            .await
            .unwrap();
        b.send(a.peer_id(), "mempool", b"tx".to_vec())
            .await
            .unwrap();
        let m = within(mb.recv()).await.unwrap();
        assert_eq!((&*m.stream, &m.data[..]), ("consensus", &b"prevote"[..]));
        let m = within(ma.recv()).await.unwrap();
        assert_eq!((&*m.stream, &m.data[..]), ("mempool", &b"tx"[..]));
        a.shutdown().await;
        b.shutdown().await;
    }
}

/// A node with the built-in handshake and one running the protocol by hand with
/// `prepare_streams` and `finalize_handshake`: the same bytes on the wire, both Established.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_handshake_meets_the_manual_two_phase_api() {
    for built_in_dials in [true, false] {
        let auto = started(config(Transport::Tcp).with_handshake(chain("chain-7"))).await;
        let manual = started(config(Transport::Tcp)).await;
        let (peer, hs) = (auto.peer_id(), manual.messages_for("handshake"));
        if built_in_dials {
            let mut em = manual.subscribe_filtered(Filter::all().states([State::Connected]));
            auto.dial(with_p2p(&manual)).await.unwrap();
            wait_state(&mut em, peer, State::Connected).await;
        } else {
            manual.dial(with_p2p(&auto)).await.unwrap();
        }
        // The manual side: Hello with the chain id, PubKey on the peer's Hello, prepare and
        // Complete on its PubKey, finalize on its Complete; it records what it receives.
        let mut received = Vec::new();
        manual
            .send(peer, "handshake", b"\x01chain-7".to_vec())
            .await
            .unwrap();
        loop {
            let m = within(hs.recv()).await.unwrap();
            received.push(m.data.clone());
            match m.data[0] {
                HELLO => {
                    let mut k = vec![PUBKEY];
                    k.extend_from_slice(&manual.public_key());
                    manual.send(peer, "handshake", k).await.unwrap();
                }
                PUBKEY => {
                    manual
                        .prepare_streams(peer, &m.data[1..], &STREAMS)
                        .await
                        .unwrap();
                    manual
                        .send(peer, "handshake", vec![COMPLETE])
                        .await
                        .unwrap();
                }
                COMPLETE => {
                    manual.finalize_handshake(peer).await.unwrap();
                    break;
                }
                t => panic!("tag {t}"),
            }
        }
        let mut pubkey = vec![PUBKEY];
        pubkey.extend_from_slice(&auto.public_key());
        assert_eq!(
            received,
            [b"\x01chain-7".to_vec(), pubkey, vec![COMPLETE]],
            "Go's byte tags, each once"
        );
        both_established(&auto, &manual).await;
        manual
            .send(peer, "consensus", b"vote".to_vec())
            .await
            .unwrap();
        let m = within(auto.messages().recv()).await.unwrap();
        assert_eq!(&m.data[..], b"vote");
        auto.shutdown().await;
        manual.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_another_chain_is_rejected_and_kept_out() {
    let a = started(config(Transport::Tcp).with_handshake(chain("chain-7"))).await;
    // b does not check (it would accept anyone), and keeps a in its book: it redials.
    let b = started(
        config(Transport::Tcp)
            .with_handshake(handshake::Config::new(b"chain-8".to_vec(), STREAMS))
            .with_reconnect_base_delay(Duration::from_millis(50)),
    )
    .await;
    let mut ea = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    let mut eb = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    b.add_peer(a.peer_id(), a.listen_addrs(), Default::default())
        .await
        .unwrap();
    let e = wait_state(&mut ea, b.peer_id(), State::Cooldown).await;
    let Some(DisconnectReason::Rejected(reason)) = e.reason else {
        panic!("{e:?}");
    };
    assert!(
        reason.contains("chain-8") && reason.contains("chain-7"),
        "{reason}"
    );
    assert_eq!(a.admission_stats().rejected, 1);
    // Kept out for the cooldown (5 min by default): a does not dial b, and b's redials are
    // closed at once, never Established, not counted as new rejections.
    assert!(matches!(
        a.dial(with_p2p(&b)).await,
        Err(Error::InvalidState {
            state: State::Cooldown,
            ..
        })
    ));
    for _ in 0..2 {
        wait_state(&mut eb, a.peer_id(), State::Connecting).await;
        wait_state(&mut eb, a.peer_id(), State::Reconnecting).await;
    }
    assert_ne!(b.connection_state(&a.peer_id()), State::Established);
    assert_eq!(a.connection_state(&b.peer_id()), State::Cooldown);
    assert_eq!(
        a.admission_stats().rejected,
        1,
        "refused, not rejected again"
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_peer_keeps_a_peer_out_for_the_cooldown() {
    let a =
        started(config(Transport::Tcp).with_rejection_cooldown(Duration::from_millis(300))).await;
    let b = started(config(Transport::Tcp)).await;
    let mut ea = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    a.dial(with_p2p(&b)).await.unwrap();
    a.reject_peer(b.peer_id(), "not a validator").await.unwrap();
    let e = wait_state(&mut ea, b.peer_id(), State::Cooldown).await;
    assert_eq!(
        e.reason,
        Some(DisconnectReason::Rejected("not a validator".into()))
    );
    // Not in the book: Disconnected when the cooldown ends, and welcome again.
    wait_state(&mut ea, b.peer_id(), State::Disconnected).await;
    a.dial(with_p2p(&b)).await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_connects_once_without_the_address_book() {
    let a = started(config(Transport::Tcp).with_handshake(chain("c"))).await;
    let b = started(config(Transport::Tcp).with_handshake(chain("c"))).await;
    let bare = b.listen_addrs()[0].clone();
    assert!(matches!(a.dial(bare).await, Err(Error::NoPeerId(_))));
    let mut ea = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    a.dial(with_p2p(&b)).await.unwrap();
    both_established(&a, &b).await;
    assert!(
        a.list_peers().await.unwrap().is_empty(),
        "the book is untouched"
    );
    // Lost: not reconnected (it is not in the book): the state that follows Established is
    // Disconnected, not Reconnecting.
    b.shutdown().await;
    let next = within(async {
        let mut established = false;
        loop {
            if let Ok(Event::Connection(e)) = ea.recv().await {
                if e.state == State::Established {
                    established = true;
                } else if established {
                    return e;
                }
            }
        }
    })
    .await;
    assert_eq!(next.state, State::Disconnected, "{next:?}");
    assert!(next.reason.is_some());
    a.shutdown().await;
}

/// A persistent peer is written into the book, dialled at start, and reconnected after its
/// restart, though reconnection attempts are set to none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_peer_is_kept_connected_across_its_restart() {
    let b_key = glueberry::identity::ed25519::Keypair::generate();
    let b_config = |addr: glueberry::Multiaddr| {
        glueberry::Config::new(b_key.clone(), book_path(), vec![addr]).with_handshake(chain("c"))
    };
    let b = started(b_config(Transport::Tcp.listen_addr())).await;
    let b_addr = b.listen_addrs()[0].clone();
    let b_id = b.peer_id();
    let a = started(
        config(Transport::Tcp)
            .with_handshake(chain("c"))
            .with_reconnect_max_attempts(Some(0))
            .with_reconnect_base_delay(Duration::from_millis(100))
            .with_persistent_max_delay(Duration::from_millis(500))
            .with_persistent_peer(b_id, vec![b_addr.clone()]),
    )
    .await;
    let entry = a.get_peer(b_id).await.unwrap().expect("in the book");
    assert_eq!(entry.addrs, std::slice::from_ref(&b_addr));
    both_established(&a, &b).await;
    let mut ea = a.subscribe_filtered(Filter::all().peers([b_id]));
    b.shutdown().await;
    wait_state(&mut ea, b_id, State::Reconnecting).await;
    // Back on the same address: a reconnects, whatever the attempt limit says.
    let b = started(b_config(b_addr)).await;
    wait_state(&mut ea, b_id, State::Established).await;
    both_established(&a, &b).await;
    a.shutdown().await;
    b.shutdown().await;
}
