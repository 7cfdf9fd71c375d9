//! Delivery outcomes: `send_written` resolves once the message is written, or fails with
//! `NotWritten`; every message a send accepted is counted written or dropped, under churn;
//! `broadcast` gives one result per peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use glueberry::handshake;
use glueberry::multiaddr::Protocol;
use glueberry::{Error, Filter, Node, Recipients, State};
use glueberry_tests::*;

const STREAMS: [&str; 2] = ["consensus", "mempool"];

fn hs() -> handshake::Config {
    handshake::Config::new(b"c".to_vec(), STREAMS)
}

fn with_p2p(node: &Node) -> glueberry::Multiaddr {
    node.listen_addrs()[0]
        .clone()
        .with(Protocol::P2p(node.peer_id()))
}

async fn established(a: &Node, b: &Node) {
    for (x, y) in [(a, b), (b, a)] {
        let mut e = x.subscribe_filtered(Filter::all().peers([y.peer_id()]));
        if x.connection_state(&y.peer_id()) != State::Established {
            wait_state(&mut e, y.peer_id(), State::Established).await;
        }
    }
}

/// For every stream of `peer` at `node`: everything accepted was written or dropped.
fn assert_accounted(node: &Node, peer: &glueberry::PeerId) -> (u64, u64, u64) {
    let s = node.peer_stats(peer).expect("stats");
    for (name, st) in &s.streams {
        assert_eq!(
            st.messages_sent,
            st.messages_written + st.dropped.stream_closed,
            "{name}: {st:?}"
        );
    }
    (s.messages_sent, s.messages_written, s.dropped.stream_closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_written_returns_once_the_message_is_written() {
    let a = started(config(Transport::Tcp).with_handshake(hs())).await;
    let b = started(config(Transport::Tcp).with_handshake(hs())).await;
    a.dial(with_p2p(&b)).await.unwrap();
    established(&a, &b).await;
    for i in 0..10u8 {
        a.send_written(b.peer_id(), "consensus", vec![i])
            .await
            .unwrap();
        let st = &a.peer_stats(&b.peer_id()).unwrap().streams["consensus"];
        assert_eq!(
            st.messages_written,
            u64::from(i) + 1,
            "counted when it returns"
        );
    }
    let m = b.messages();
    for i in 0..10u8 {
        assert_eq!(within(m.recv()).await.unwrap().data[..], [i]);
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Messages queued behind a peer that stopped reading are not written when the connection
/// goes: `send_written` says so, and the stats count them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_queued_when_the_connection_goes_are_not_written_and_counted() {
    let small = |c: glueberry::Config| {
        c.with_handshake(hs())
            .with_max_message_size(64 * 1024)
            .with_peer_receive_budget(512 * 1024)
    };
    let a = started(small(config(Transport::Tcp))).await;
    let b = started(small(config(Transport::Tcp))).await;
    a.dial(with_p2p(&b)).await.unwrap();
    established(&a, &b).await;
    // b's application reads nothing: b stops reading at its budget, and a's queue backs up
    // behind the yamux window.
    let peer = b.peer_id();
    for _ in 0..200 {
        a.send(peer, "mempool", vec![7u8; 32 * 1024]).await.unwrap();
    }
    let last = tokio::spawn({
        let a = a.clone();
        async move { a.send_written(peer, "mempool", vec![1u8; 10]).await }
    });
    within(async {
        while b.inbox_stats().read_waits == 0 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    a.disconnect(peer).await.unwrap();
    let r = within(last).await.unwrap();
    assert!(matches!(r, Err(Error::NotWritten { .. })), "{r:?}");
    assert!(r.unwrap_err().is_retriable());
    assert_accounted(&a, &peer);
    let st = a.peer_stats(&peer).unwrap().streams["mempool"].clone();
    assert_eq!(st.messages_sent, 201);
    assert!(
        st.dropped.stream_closed >= 1 && st.messages_written < 201,
        "{st:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// The accounting invariant under churn: sends from two tasks (queueing and waiting for the
/// write) while the connection is closed by either side again and again. Every message a
/// send accepted is counted written or dropped; every `send_written` that returned Ok was
/// written; the peer received no more than was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_message_is_written_or_counted_under_churn() {
    let a = started(config(Transport::Tcp).with_handshake(hs())).await;
    let b = started(
        config(Transport::Tcp)
            .with_handshake(hs())
            .with_reconnect_base_delay(Duration::from_millis(20)),
    )
    .await;
    let peer = b.peer_id();
    // b keeps a: it redials when a closes; a redials when b closes (connect below).
    b.add_peer(a.peer_id(), a.listen_addrs(), Default::default())
        .await
        .unwrap();
    established(&a, &b).await;

    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let written_ok = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let queueing = tokio::spawn({
        let (a, stop, accepted) = (a.clone(), stop.clone(), accepted.clone());
        async move {
            while !stop.load(Relaxed) {
                match a.send(peer, "consensus", vec![0u8; 512]).await {
                    Ok(()) => {
                        accepted.fetch_add(1, Relaxed);
                    }
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        }
    });
    let waiting = tokio::spawn({
        let (a, stop, accepted, written_ok) = (
            a.clone(),
            stop.clone(),
            accepted.clone(),
            written_ok.clone(),
        );
        async move {
            while !stop.load(Relaxed) {
                match a.send_written(peer, "mempool", vec![1u8; 2048]).await {
                    Ok(()) => {
                        accepted.fetch_add(1, Relaxed);
                        written_ok.fetch_add(1, Relaxed);
                    }
                    Err(Error::NotWritten { .. }) => {
                        accepted.fetch_add(1, Relaxed);
                    }
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        }
    });
    let reader = tokio::spawn({
        let (m, received) = (b.messages(), received.clone());
        async move {
            while m.recv().await.is_ok() {
                received.fetch_add(1, Relaxed);
            }
        }
    });

    for round in 0..6 {
        established(&a, &b).await;
        // Let traffic flow: wait for some messages to arrive, then cut.
        let seen = received.load(Relaxed);
        let flowing = tokio::time::timeout(WAIT, async {
            while received.load(Relaxed) < seen + 200 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        if flowing.is_err() {
            panic!(
                "round {round}: stalled at {} received; a: {:?} {:?}; b: {:?}",
                received.load(Relaxed),
                a.connection_state(&peer),
                a.peer_stats(&peer),
                b.connection_state(&a.peer_id()),
            );
        }
        if round % 2 == 0 {
            // b redials (a is in its book).
            let mut ea = a.subscribe_filtered(Filter::all().peers([peer]));
            a.disconnect(peer).await.unwrap();
            wait_state(&mut ea, peer, State::Disconnected).await;
        } else {
            let mut eb = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
            b.disconnect(a.peer_id()).await.unwrap();
            wait_state(&mut eb, a.peer_id(), State::Disconnected).await;
            b.connect(a.peer_id()).await.unwrap();
        }
    }
    established(&a, &b).await;
    stop.store(true, Relaxed);
    let _ = within(queueing).await;
    let _ = within(waiting).await;
    a.shutdown().await;
    b.shutdown().await;
    let _ = within(reader).await;

    assert_accounted(&a, &peer);
    let streams = a.peer_stats(&peer).unwrap().streams;
    let (consensus, mempool) = (&streams["consensus"], &streams["mempool"]);
    let sent = consensus.messages_sent + mempool.messages_sent;
    let written = consensus.messages_written + mempool.messages_written;
    let dropped = consensus.dropped.stream_closed + mempool.dropped.stream_closed;
    println!("accepted {sent}: written {written}, dropped {dropped}");
    assert_eq!(
        sent,
        accepted.load(Relaxed),
        "every accepted send is counted"
    );
    assert!(mempool.messages_written >= written_ok.load(Relaxed));
    assert!(received.load(Relaxed) <= written);
    assert!(written > 0 && dropped > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_gives_every_peer_its_result() {
    let a = started(config(Transport::Tcp).with_handshake(hs())).await;
    let mut peers = Vec::new();
    for _ in 0..3 {
        let p = started(config(Transport::Tcp).with_handshake(hs())).await;
        a.dial(with_p2p(&p)).await.unwrap();
        established(&a, &p).await;
        peers.push(p);
    }
    let results = a
        .broadcast(
            Recipients::Established,
            "consensus",
            b"vote".to_vec(),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    for p in &peers {
        let m = within(p.messages().recv()).await.unwrap();
        assert_eq!(&m.data[..], b"vote");
    }
    // A given set: a stranger gets its own error, the others their message.
    let stranger = glueberry::PeerId::random();
    let results = a
        .broadcast(
            Recipients::Peers(vec![peers[0].peer_id(), stranger, peers[0].peer_id()]),
            "consensus",
            b"again".to_vec(),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(results.len(), 2, "each peer once");
    assert!(results[0].1.is_ok());
    assert_eq!(results[1].0, stranger);
    assert!(matches!(results[1].1, Err(Error::NotConnected(_))));
    a.shutdown().await;
    for p in peers {
        p.shutdown().await;
    }
}
