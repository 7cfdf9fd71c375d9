//! Interop with a peer that handles streams as Go Glueberry does (upstream-glueberry.md §4.4:
//! keep your own stream for a name, reset any second inbound one): every message gets through in
//! every interleaving of a simultaneous first send, and the reset is reported
//! (docs/protocol.md, "Streams").

use std::time::Duration;

use glueberry::{Event, State};
use glueberry_tests::*;

const N: usize = 100;

/// A node and a Go-rule peer connected to it, both with the key of the other (the handshake
/// done): the node, its events since it started, the peer.
async fn pair(
    t: Transport,
    arrival: Arrival,
) -> (glueberry::Node, glueberry::Subscription, GoPeer) {
    let node = started(config(t)).await;
    let mut events = node.subscribe_events();
    let peer = GoPeer::dial(
        node.listen_addrs()[0].clone(),
        node.peer_id(),
        &node.public_key(),
        &["messages"],
        arrival,
    )
    .await;
    wait_state(&mut events, peer.peer_id(), State::Connected).await;
    node.complete_handshake(peer.peer_id(), peer.public_key(), &["messages"])
        .await
        .unwrap();
    (node, events, peer)
}

async fn simultaneous_first_send(t: Transport, arrival: Arrival) {
    let (node, mut events, mut peer) = pair(t, arrival).await;

    // Both sides send at once.
    let sender = {
        let (node, to) = (node.clone(), peer.peer_id());
        tokio::spawn(async move {
            for i in 0..N {
                node.send(to, "messages", format!("node {i}"))
                    .await
                    .unwrap();
            }
        })
    };
    if matches!(arrival, Arrival::ResetFirst) {
        // The peer's own stream comes after its reset of the node's.
        within(peer.reset_seen()).await;
    }
    for i in 0..N {
        peer.send("messages", format!("peer {i}").as_bytes()).await;
    }

    // Everything arrives, in order, both ways.
    let messages = node.messages();
    for i in 0..N {
        let m = within(messages.recv()).await.unwrap();
        assert_eq!(std::str::from_utf8(&m.data).unwrap(), format!("peer {i}"));
    }
    for i in 0..N {
        let Ok(got) = tokio::time::timeout(Duration::from_secs(10), peer.received.recv()).await
        else {
            panic!(
                "the peer got {i} of the node's messages: {:#?} resets {}",
                node.peer_stats(&peer.peer_id()),
                peer.resets()
            );
        };
        let (name, data) = got.unwrap();
        assert_eq!(name, "messages");
        assert_eq!(String::from_utf8(data).unwrap(), format!("node {i}"));
    }
    within(sender).await.unwrap();

    // Nothing was dropped, and the reset was reported. (There may be none: when the peer's
    // stream reaches the node before the node's first send, the node writes on it.)
    let stats = node.peer_stats(&peer.peer_id()).unwrap();
    assert_eq!(stats.dropped, Default::default(), "{stats:?}");
    // Each message counted written once, however often a reset made it written again.
    let st = &stats.streams["messages"];
    assert_eq!(
        (st.messages_sent, st.messages_written),
        (N as u64, N as u64),
        "{st:?}"
    );
    if peer.resets() == 0 {
        println!("{t:?} {arrival:?}: the node wrote on the peer's stream from the start");
    }
    // (One at least: a peer that resets every inbound stream may also reset one that no
    // writer is on any more.)
    if peer.resets() > 0 {
        let reset = within(async {
            loop {
                if let Ok(Event::StreamReset(r)) = events.recv().await {
                    return r;
                }
            }
        })
        .await;
        println!("{t:?} {arrival:?}: {reset:?}");
        assert_eq!(
            (reset.peer, reset.stream.as_str()),
            (peer.peer_id(), "messages")
        );
        // (`resent` is the messages that changed streams: all of them in the runs seen, none
        // when the reset came before the first was queued.)
        assert!(reset.resent <= N as u64);
        assert_eq!(reset.lost, 0);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_the_peer_s_stream_is_there_when_it_resets_ours() {
    let arrival = Arrival::GoRule {
        delay: Duration::from_millis(200),
    };
    simultaneous_first_send(Transport::Tcp, arrival).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_the_peer_s_stream_is_there_when_it_resets_ours() {
    let arrival = Arrival::GoRule {
        delay: Duration::from_millis(200),
    };
    simultaneous_first_send(Transport::Quic, arrival).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_the_peer_resets_ours_before_its_stream_comes() {
    simultaneous_first_send(Transport::Tcp, Arrival::ResetFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_the_peer_resets_ours_before_its_stream_comes() {
    simultaneous_first_send(Transport::Quic, Arrival::ResetFirst).await;
}

/// The node sends and shuts down at once, while the peer (Go's rule, 100 ms to accept) has not
/// reset the node's stream yet: the writer waits a few round trips (at least 250 ms) from the
/// stream's opening for a reset, moves onto the peer's stream, and what `send` returned for
/// still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sends_right_before_shutdown_reach_a_go_rule_peer() {
    let arrival = Arrival::GoRule {
        delay: Duration::from_millis(100),
    };
    let (node, _, mut peer) = pair(Transport::Tcp, arrival).await;
    for i in 0..N {
        node.send(peer.peer_id(), "messages", format!("node {i}"))
            .await
            .unwrap();
    }
    // The peer's own stream of the name, before the node's reaches its handler.
    peer.send("messages", b"peer").await;
    within(node.shutdown()).await;
    for i in 0..N {
        let (_, data) = within(peer.received.recv()).await.unwrap();
        assert_eq!(String::from_utf8(data).unwrap(), format!("node {i}"));
    }
}
