//! Backpressure end to end: a slow consumer loses nothing, a stalled peer delays no other
//! peer, and `try_send` fails at once when a queue is full.

use glueberry::{Error, Node};
use glueberry_tests::*;

/// a sends to b; b's application reads nothing: b's message queue fills, b's readers stop,
/// the muxer window fills, a's queue for b reaches its high watermark.
async fn stalled_pair(high: usize) -> (Node, Node) {
    let t = Transport::Tcp;
    let (a, b, _, _) = established_pair(
        config(t)
            .with_high_watermark(high)
            .with_low_watermark(high / 4),
        config(t).with_message_buffer_size(2),
        &["data"],
    )
    .await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_fails_at_once_when_the_queue_is_full() {
    let (a, b) = stalled_pair(8).await;
    let to = b.peer_id();
    assert!(matches!(
        a.try_send(to, "data", vec![0u8; 16]),
        Err(Error::StreamNotOpen { .. })
    ));
    a.send(to, "data", vec![0u8; 16]).await.unwrap();
    // Fill until full; each attempt returns at once.
    let mut sent = 1;
    loop {
        match a.try_send(to, "data", vec![0u8; 64 * 1024]) {
            Ok(()) => sent += 1,
            Err(e @ Error::QueueFull { .. }) => {
                assert!(e.is_retriable());
                break;
            }
            Err(e) => panic!("{e}"),
        }
        // Let the writer move what it can into the muxer, so that the window fills too.
        tokio::task::yield_now().await;
        assert!(sent < 100_000, "the queue never filled");
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_does_not_delay_sends_to_another() {
    let t = Transport::Tcp;
    let a = started(config(t).with_high_watermark(8).with_low_watermark(2)).await;
    let stalled = started(config(t).with_message_buffer_size(2)).await;
    let healthy = started(config(t)).await;
    for other in [&stalled, &healthy] {
        connect(&a, other).await;
        tokio::join!(
            handshake(&a, other.peer_id(), true, &["data"]),
            handshake(other, a.peer_id(), false, &["data"])
        );
    }
    // A sender to the stalled peer blocks for good (nobody reads there).
    let blocked = {
        let a = a.clone();
        let to = stalled.peer_id();
        tokio::spawn(async move {
            loop {
                a.send(to, "data", vec![1u8; 64 * 1024]).await.unwrap();
            }
        })
    };
    // Wait until it is really blocked: a send with a deadline to the stalled peer times out.
    loop {
        match a
            .send_timeout(
                stalled.peer_id(),
                "data",
                vec![2u8],
                std::time::Duration::from_millis(50),
            )
            .await
        {
            Err(Error::Timeout { .. }) => break,
            Ok(()) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // Meanwhile every message to the healthy peer goes through, in order.
    for i in 0..500u32 {
        a.send(healthy.peer_id(), "data", i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    let messages = healthy.messages();
    for i in 0..500u32 {
        let m = within(messages.recv()).await.unwrap();
        assert_eq!(m.data.as_ref(), i.to_be_bytes());
    }
    assert!(
        !blocked.is_finished(),
        "the sender to the stalled peer is still blocked"
    );
    blocked.abort();
    for n in [a, stalled, healthy] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_gets_every_message_once_in_order() {
    const N: u32 = 100_000;
    let t = Transport::Tcp;
    let (a, b, _, _) = established_pair(
        config(t).with_high_watermark(64).with_low_watermark(16),
        config(t).with_message_buffer_size(16),
        &["data"],
    )
    .await;
    let to = b.peer_id();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..N {
                a.send(to, "data", i.to_be_bytes().to_vec()).await.unwrap();
            }
        })
    };
    // The consumer starts only once the sender is held back (every buffer between them is
    // bounded, so that must happen), then stays slower: it yields between messages.
    within(async {
        while !a
            .debug_state()
            .await
            .flow_controllers
            .iter()
            .any(|f| f.peer == to && f.blocked)
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let messages = b.messages();
    for i in 0..N {
        assert!(
            messages.len() <= 16,
            "the message queue stays within its bound"
        );
        let Ok(m) = tokio::time::timeout(std::time::Duration::from_secs(10), messages.recv()).await
        else {
            panic!(
                "stuck at {i}: {:?} {:?}",
                b.inbox_stats(),
                a.debug_state().await.flow_controllers
            );
        };
        let m = m.unwrap();
        assert_eq!(
            u32::from_be_bytes(m.data[..4].try_into().unwrap()),
            i,
            "exactly once, in order"
        );
        if i % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    within(sender).await.unwrap();
    assert!(messages.try_recv().is_err(), "nothing more, nothing twice");
    let flows = a.debug_state().await.flow_controllers;
    let flow = flows.iter().find(|f| f.peer == to).expect("a's queue to b");
    assert!(
        flow.peak <= 64,
        "the send queue never held more than its high watermark: {flow:?}"
    );
    let stats = a.peer_stats(&to).unwrap();
    assert_eq!(stats.streams["data"].messages_sent, u64::from(N));
    assert!(
        stats.streams["data"].backpressure_waits > 0,
        "the sender waited"
    );
    assert_eq!(stats.dropped, Default::default(), "nothing dropped");
    assert_eq!(
        b.peer_stats(&a.peer_id()).unwrap().streams["data"].messages_received,
        u64::from(N)
    );
    a.shutdown().await;
    b.shutdown().await;
}
