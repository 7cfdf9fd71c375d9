//! Liveness (docs/lifecycle.md, "Liveness"): a peer whose path goes silent is reported lost,
//! on both sides and over both transports, and a consumer that stops reading loses nothing.
//!
//! The ping settings are shortened (1 s + 2 s) so that the tests take seconds; the rule is the
//! same at the defaults (15 s + 20 s).

use std::time::Duration;

use glueberry::{Config, DisconnectReason, Event, Filter, State};
use glueberry_tests::*;

const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

fn fast(t: Transport) -> Config {
    config(t)
        .with_ping_interval(PING_INTERVAL)
        .with_ping_timeout(PING_TIMEOUT)
        // Reconnection goes on in the background; keep its attempts out of the way.
        .with_reconnect_base_delay(Duration::from_secs(60))
        .with_reconnect_max_delay(Duration::from_secs(60))
}

async fn blackholed_peer_is_lost(t: Transport) {
    // Small queues, so that a send waits on the lost peer.
    let a = fast(t).with_high_watermark(4).with_low_watermark(1);
    let mut lost = lose_path(a, fast(t)).await;
    println!(
        "{t:?}: lost after {:?} (a) and {:?} (b); a: {:?}; b: {:?}",
        lost.a_took, lost.b_took, lost.a_reason, lost.b_reason
    );
    assert_eq!(lost.a_reason, DisconnectReason::Unresponsive);
    assert_eq!(lost.b_reason, DisconnectReason::Unresponsive);

    // The waiting send gave up with a typed error that says a retry may help.
    let (sent, err) = &lost.sender;
    println!("{sent} sends went through, then: {err}");
    assert!(*sent >= 4, "the queue filled before the send waited");
    assert!(err.is_retriable(), "{err:?}");

    // b is in a's book: reconnection starts.
    let b_id = lost.b.peer_id();
    within(async {
        loop {
            if let Ok(Event::Connection(e)) = lost.a_events.recv().await
                && matches!(e.state, State::Reconnecting | State::Connecting)
            {
                return;
            }
        }
    })
    .await;
    assert_ne!(lost.a.connection_state(&b_id), State::Established);
    lost.a.shutdown().await;
    lost.b.shutdown().await;
    // Every message the lost connection's sends accepted is counted: written to the muxer
    // (and lost with the path) or dropped (docs/concurrency.md, "Delivery accounting").
    let stats = lost.a.peer_stats(&b_id).unwrap();
    for (name, st) in &stats.streams {
        assert_eq!(
            st.messages_sent,
            st.messages_written + st.dropped.stream_closed,
            "{name}: {st:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_a_blackholed_peer_is_lost_on_both_sides() {
    blackholed_peer_is_lost(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_blackholed_peer_is_lost_on_both_sides() {
    blackholed_peer_is_lost(Transport::Quic).await;
}

/// b stops reading for several times the liveness bound while a keeps sending: flow control
/// stalls every data stream (and, over QUIC, the whole connection's window), yet neither side
/// loses the connection, and every message arrives once b reads again.
async fn paused_consumer_keeps_its_connections(t: Transport) {
    // Queues small enough that the sender is held back by b well before it is done.
    let small = |c: Config| {
        c.with_message_buffer_size(64)
            .with_high_watermark(64)
            .with_low_watermark(16)
    };
    let (a, b, _, _) = established_pair(small(fast(t)), small(fast(t)), &["data"]).await;
    let mut a_events = a.subscribe_filtered(Filter::all().states([State::Disconnected]));
    let mut b_events = b.subscribe_filtered(Filter::all().states([State::Disconnected]));
    const N: u64 = 1_000;
    let sender = {
        let a = a.clone();
        let peer = b.peer_id();
        tokio::spawn(async move {
            for i in 0..N {
                let mut m = vec![0u8; 64 * 1024];
                m[..8].copy_from_slice(&i.to_be_bytes());
                a.send(peer, "data", m).await.unwrap();
            }
        })
    };
    // Several liveness bounds (TCP: 3 s; QUIC: 2 s) with nobody reading at b.
    let pause = 4 * (PING_INTERVAL + PING_TIMEOUT);
    let lost = tokio::time::timeout(pause, async {
        tokio::select! {
            e = a_events.recv() => e,
            e = b_events.recv() => e,
        }
    })
    .await;
    assert!(
        lost.is_err(),
        "a connection was lost while paused: {lost:?}"
    );
    assert!(
        !sender.is_finished(),
        "the sender is held back while b does not read"
    );
    assert_eq!(a.connection_state(&b.peer_id()), State::Established);
    assert_eq!(b.connection_state(&a.peer_id()), State::Established);

    // b reads again: everything arrives, in order.
    let messages = b.messages();
    for i in 0..N {
        let m = within(messages.recv()).await.unwrap();
        assert_eq!(u64::from_be_bytes(m.data[..8].try_into().unwrap()), i);
    }
    within(sender).await.unwrap();
    let dropped = b.peer_stats(&a.peer_id()).unwrap().dropped;
    assert_eq!(dropped, Default::default());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_a_paused_consumer_keeps_its_connections() {
    paused_consumer_keeps_its_connections(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_paused_consumer_keeps_its_connections() {
    paused_consumer_keeps_its_connections(Transport::Quic).await;
}
