//! Statistics, health, debug state and metrics after a known exchange between two nodes.
//!
//! One test in its own binary: it installs the process-wide metrics recorder, so that nothing
//! else adds to the counters it checks.

use std::collections::HashMap;

use glueberry::{State, telemetry as m};
use glueberry_tests::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};

type Metrics = HashMap<(MetricKind, String, Vec<(String, String)>), DebugValue>;

fn read(snapshotter: &Snapshotter) -> Metrics {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value): (CompositeKey, _, _, _)| {
            let mut labels: Vec<(String, String)> = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            ((key.kind(), key.key().name().to_owned(), labels), value)
        })
        .collect()
}

fn counter(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    match metrics.get(&(MetricKind::Counter, name.to_owned(), labels)) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

fn histogram_len(metrics: &Metrics, name: &str) -> usize {
    match metrics.get(&(MetricKind::Histogram, name.to_owned(), vec![])) {
        Some(DebugValue::Histogram(v)) => v.len(),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_health_and_metrics_after_a_known_exchange() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");

    let t = Transport::Tcp;
    let a = started(config(t)).await;
    assert!(a.health().healthy && !a.health().ready, "{:?}", a.health());
    let b = started(config(t)).await;
    connect(&a, &b).await;
    let (pa, pb) = (a.peer_id(), b.peer_id());
    tokio::join!(
        handshake(&a, pb, true, &["data", "other"]),
        handshake(&b, pa, false, &["data", "other"])
    );

    // a sends 10 × 100 bytes on "data"; b sends 3 × 7 bytes on "other".
    for _ in 0..10 {
        a.send(pb, "data", vec![1u8; 100]).await.unwrap();
    }
    for _ in 0..3 {
        b.send(pa, "other", vec![2u8; 7]).await.unwrap();
    }
    for _ in 0..10 {
        within(b.messages().recv()).await.unwrap();
    }
    for _ in 0..3 {
        within(a.messages().recv()).await.unwrap();
    }

    let sa = a.peer_stats(&pb).expect("a keeps stats of b");
    assert_eq!(sa.state, State::Established);
    assert_eq!(sa.outbound, Some(true));
    assert_eq!(sa.connection_count, 1);
    assert!(sa.connected_at.is_some());
    let data = &sa.streams["data"];
    assert_eq!((data.messages_sent, data.bytes_sent), (10, 1000));
    assert_eq!(data.messages_received, 0);
    assert!(data.last_sent_at.is_some() && data.last_received_at.is_none());
    let other = &sa.streams["other"];
    assert_eq!((other.messages_received, other.bytes_received), (3, 21));
    // The byte-tag handshake: Hello, PubKey + 32 bytes, Complete each way.
    let hs = &sa.streams["handshake"];
    assert_eq!((hs.messages_sent, hs.bytes_sent), (3, 35));
    assert_eq!((hs.messages_received, hs.bytes_received), (3, 35));
    assert_eq!(sa.messages_sent, 13);
    assert_eq!(sa.messages_received, 6);
    assert_eq!(sa.bytes_sent, 1035);
    assert_eq!(sa.bytes_received, 56);
    assert_eq!(sa.dropped, Default::default());
    let sb = b.peer_stats(&pa).expect("b keeps stats of a");
    assert_eq!(sb.outbound, Some(false));
    assert_eq!(sb.streams["data"].messages_received, 10);
    assert_eq!(sb.streams["other"].bytes_sent, 21);
    assert_eq!(a.all_peer_stats().len(), 1);

    let health = a.health();
    assert!(health.healthy && health.ready, "{health:?}");
    assert_eq!((health.established_peers, health.connected_peers), (1, 1));
    assert_eq!(a.established_peers(), vec![pb]);
    let debug = a.debug_state().await;
    assert_eq!(debug.address_book.total_peers, 1);
    assert_eq!(debug.peer_states, vec![(pb, State::Established)]);
    let flow = debug
        .flow_controllers
        .iter()
        .find(|f| f.peer == pb && f.stream == "data")
        .expect("a's send queue to b on data");
    assert!(flow.peak >= 1 && flow.peak <= 1000, "{flow:?}");
    let json = serde_json::to_value(&debug).unwrap();
    assert_eq!(json["peer_id"], a.peer_id().to_string());
    assert_eq!(json["peers"][0]["streams"]["data"]["messages_sent"], 10);
    assert_eq!(json["health"]["ready"], true);

    let metrics = read(&snapshotter);
    let c = |name, labels: &[(&str, &str)]| counter(&metrics, name, labels);
    // Both nodes report to the one recorder.
    assert_eq!(c(m::MESSAGES_SENT, &[("stream", "data")]), 10);
    assert_eq!(c(m::MESSAGES_RECEIVED, &[("stream", "data")]), 10);
    assert_eq!(c(m::BYTES_SENT, &[("stream", "data")]), 1000);
    assert_eq!(c(m::BYTES_RECEIVED, &[("stream", "other")]), 21);
    assert_eq!(c(m::MESSAGES_SENT, &[("stream", "handshake")]), 6);
    assert_eq!(c(m::CONNECTIONS_OPENED, &[("direction", "outbound")]), 1);
    assert_eq!(c(m::CONNECTIONS_OPENED, &[("direction", "inbound")]), 1);
    assert_eq!(c(m::CONNECTION_ATTEMPTS, &[("result", "success")]), 1);
    assert_eq!(c(m::HANDSHAKE_RESULTS, &[("result", "success")]), 2);
    assert_eq!(histogram_len(&metrics, m::HANDSHAKE_DURATION), 2);
    assert_eq!(c(m::KEY_DERIVATIONS, &[("cached", "false")]), 2);
    assert_eq!(c(m::EVENTS_EMITTED, &[("state", "established")]), 2);
    // One stream per name here: a opened "data", b "other"; each counted at both ends.
    assert_eq!(c(m::STREAMS_OPENED, &[("stream", "data")]), 2);
    assert_eq!(c(m::STREAMS_OPENED, &[("stream", "other")]), 2);
    assert_eq!(c(m::DECRYPTION_ERRORS, &[]), 0);
    assert!(
        metrics.contains_key(&(MetricKind::Counter, m::ENCRYPTION_ERRORS.into(), vec![])),
        "counters that stay at zero are visible"
    );

    // Disconnect: the connected time is kept, the connection is counted closed on both sides.
    let mut sub_a = a.subscribe_events();
    let mut sub_b = b.subscribe_events();
    a.disconnect(pb).await.unwrap();
    wait_state(&mut sub_a, pb, State::Disconnected).await;
    wait_state(&mut sub_b, pa, State::Disconnected).await;
    let sa = a.peer_stats(&pb).expect("kept after the disconnect");
    assert_eq!(sa.state, State::Disconnected);
    assert_eq!((sa.connected_at, sa.outbound), (None, None));
    assert!(sa.total_connected > std::time::Duration::ZERO);
    assert_eq!(sa.streams["data"].messages_sent, 10, "counters survive");
    assert!(!a.health().ready);
    let metrics = read(&snapshotter);
    let closed = counter(
        &metrics,
        m::CONNECTIONS_CLOSED,
        &[("direction", "outbound")],
    ) + counter(&metrics, m::CONNECTIONS_CLOSED, &[("direction", "inbound")]);
    assert_eq!(closed, 2);

    a.shutdown().await;
    b.shutdown().await;
    let h = a.health();
    assert!(h.shut_down && !h.healthy && !h.driver_alive, "{h:?}");
}
