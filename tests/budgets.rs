//! Receive budgets and fair receiving (docs/concurrency.md, "Receiving"): what peers make a node
//! hold never passes its byte budgets, whatever they send at an application that does not read;
//! nothing is dropped; a peer's backlog delays another's message by a message, not the backlog;
//! a stream received apart or given priority does not wait behind others.

use std::time::Duration;

use futures::AsyncWriteExt as _;
use glueberry::{Node, Priority};
use glueberry_tests::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Waits (polling) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    within(async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Two frame headers' worth of a handshake frame that announces `len` body bytes, with `sent` of
/// them: a frame left half done.
fn partial_frame(len: usize, sent: usize) -> Vec<u8> {
    let mut out = Vec::new();
    glueberry::unstable::wire::put_header(len, &mut out);
    out.extend(std::iter::repeat_n(7u8, sent));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_pinning_frames_and_flooding_a_stalled_application_stay_within_budget() {
    const STRANGER: usize = 64 * KIB;
    const STRANGERS: usize = 256 * KIB;
    const STREAMS: usize = 4;
    const EACH: usize = 16;
    // Partial frames are reset after 1 s (the default is 20 s), which frees their budget for
    // the others.
    let node = started(
        config(Transport::Tcp)
            .with_stranger_receive_budget(STRANGER)
            .with_strangers_receive_budget(STRANGERS)
            .with_max_inbound_per_ip(None)
            .with_handshake_timeout(None)
            .with_frame_timeout(Some(Duration::from_secs(1))),
    )
    .await;
    let addr = node.listen_addrs()[0].clone();
    let mut peers = Vec::new();
    let mut streams = Vec::new();
    // Pinners: every handshake stream starts a 16 KiB frame, sends half of it and stops.
    for _ in 0..6 {
        let mut raw = RawPeer::dial(addr.clone());
        raw.outcome().await.unwrap();
        for _ in 0..STREAMS {
            let mut s = raw.open(node.peer_id(), "handshake").await;
            s.write_all(&partial_frame(16 * KIB, 8 * KIB))
                .await
                .unwrap();
            s.flush().await.unwrap();
            streams.push(s);
        }
        peers.push(raw);
    }
    // Flooders: whole 16 KiB handshake messages, far more than the budgets, at an application
    // that reads nothing.
    let mut flooders = Vec::new();
    for _ in 0..6 {
        let mut raw = RawPeer::dial(addr.clone());
        raw.outcome().await.unwrap();
        for _ in 0..STREAMS {
            let mut s = raw.open(node.peer_id(), "handshake").await;
            flooders.push(tokio::spawn(async move {
                let msg = frame(&[9u8; 16 * KIB]);
                for _ in 0..EACH {
                    s.write_all(&msg).await.unwrap();
                }
                s.flush().await.unwrap();
                s
            }));
        }
        peers.push(raw);
    }
    // The budgets are reached: readers wait.
    until(|| node.inbox_stats().read_waits >= 12).await;
    let stats = node.inbox_stats();
    println!("{stats:?}");
    assert!(stats.stranger_peak_bytes <= STRANGER, "{stats:?}");
    assert!(stats.strangers_peak_bytes <= STRANGERS, "{stats:?}");
    assert!(stats.peak_bytes <= STRANGERS, "{stats:?}");
    assert!(
        stats.strangers_peak_bytes > STRANGERS - STRANGER,
        "{stats:?}"
    );

    // The application reads again: every whole message arrives (once the partial frames are
    // reset at their deadline), none of the partial frames.
    let messages = node.messages();
    for _ in 0..6 * STREAMS * EACH {
        let m = within(messages.recv()).await.unwrap();
        assert_eq!(m.data.len(), 16 * KIB);
        assert!(m.data.iter().all(|&b| b == 9));
    }
    for f in flooders {
        within(f).await.unwrap();
    }
    let stats = node.inbox_stats();
    assert!(stats.stranger_peak_bytes <= STRANGER, "{stats:?}");
    assert!(stats.strangers_peak_bytes <= STRANGERS, "{stats:?}");
    assert_eq!(stats.queued_messages, 0);
    drop(streams);
    node.shutdown().await;
}

/// `a` and `b` established with `streams` prepared; `a`'s application reads nothing until the
/// test says so.
async fn pair(a: glueberry::Config, streams: &[&str]) -> (Node, Node) {
    let (a, b, _, _) = established_pair(a, config(Transport::Tcp), streams).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshaked_peer_is_held_to_its_budget_and_loses_nothing() {
    const PEER: usize = 4 * MIB;
    const N: usize = 24;
    let (a, b) = pair(
        config(Transport::Tcp)
            .with_peer_receive_budget(PEER)
            .with_receive_budget(16 * MIB),
        &["data"],
    )
    .await;
    // 24 MiB at an application that reads nothing.
    let sender = {
        let (b, to) = (b.clone(), a.peer_id());
        tokio::spawn(async move {
            for i in 0..N {
                let mut m = vec![i as u8; MIB];
                m[0] = i as u8;
                b.send(to, "data", m).await.unwrap();
            }
        })
    };
    until(|| a.inbox_stats().read_waits > 0).await;
    let stats = a.inbox_stats();
    assert!(stats.peer_peak_bytes <= PEER, "{stats:?}");
    assert!(stats.held_bytes > PEER / 2, "{stats:?}");
    let messages = a.messages();
    for i in 0..N {
        let m = within(messages.recv()).await.unwrap();
        assert_eq!(m.data.len(), MIB);
        assert!(m.data.iter().all(|&x| x == i as u8), "message {i}");
    }
    within(sender).await.unwrap();
    let stats = a.inbox_stats();
    assert!(stats.peer_peak_bytes <= PEER, "{stats:?}");
    assert_eq!(
        a.peer_stats(&b.peer_id()).unwrap().dropped,
        Default::default()
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_delays_another_by_one_message() {
    const FLOOD: usize = 300;
    let a = started(config(Transport::Tcp)).await;
    let flooder = started(config(Transport::Tcp)).await;
    let other = started(config(Transport::Tcp)).await;
    for peer in [&flooder, &other] {
        connect(peer, &a).await;
        tokio::join!(
            handshake(peer, a.peer_id(), true, &["data"]),
            handshake(&a, peer.peer_id(), false, &["data"])
        );
    }
    for i in 0..FLOOD {
        flooder
            .send(a.peer_id(), "data", format!("flood {i}"))
            .await
            .unwrap();
    }
    until(|| a.inbox_stats().queued_messages == FLOOD).await;
    other.send(a.peer_id(), "data", "hello").await.unwrap();
    until(|| a.inbox_stats().queued_messages == FLOOD + 1).await;
    // The other peer's message comes second: after one of the flood's, not after 300.
    let messages = a.messages();
    let mut taken = 0;
    let mut flood = 0;
    loop {
        let m = messages.try_recv().unwrap();
        taken += 1;
        if m.peer == other.peer_id() {
            break;
        }
        assert_eq!(&*m.data, format!("flood {flood}").as_bytes());
        flood += 1;
    }
    assert!(taken <= 2, "taken {taken}");
    for node in [a, flooder, other] {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_messages_can_be_received_apart_and_votes_go_first() {
    let (a, b) = pair(
        config(Transport::Tcp).with_stream_priority("votes", Priority::High),
        &["blocks", "votes"],
    )
    .await;
    let to = a.peer_id();
    let handshakes = a.messages_for("handshake");
    for i in 0..100 {
        b.send(to, "blocks", format!("block {i}")).await.unwrap();
    }
    b.send(to, "handshake", "hello again").await.unwrap();
    b.send(to, "votes", "vote").await.unwrap();
    until(|| a.inbox_stats().queued_messages == 102).await;
    let messages = a.messages();
    // The vote first, though 100 blocks came before it.
    let first = messages.try_recv().unwrap();
    assert_eq!((&*first.stream, &*first.data), ("votes", &b"vote"[..]));
    // The handshake message is in its own queue only.
    assert_eq!(messages.len(), 100);
    assert_eq!(handshakes.len(), 1);
    assert_eq!(&*handshakes.try_recv().unwrap().data, b"hello again");
    for i in 0..100 {
        let m = messages.try_recv().unwrap();
        assert_eq!(&*m.data, format!("block {i}").as_bytes());
    }
    // Once its queue is dropped, the stream goes back to `messages()`.
    b.send(to, "handshake", "and again").await.unwrap();
    until(|| a.inbox_stats().queued_messages == 1).await;
    assert!(messages.is_empty());
    drop(handshakes);
    assert_eq!(&*messages.try_recv().unwrap().data, b"and again");
    a.shutdown().await;
    b.shutdown().await;
}
