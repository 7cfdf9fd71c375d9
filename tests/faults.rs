//! No fault amplification (docs/admission.md, "Faulting peers"): a peer that keeps sending bad
//! frames gets one report a second, carrying how many faults it stands for, then is disconnected
//! and kept out for the cooldown; all of it counted.

use std::time::Instant;

use futures::AsyncWriteExt as _;
use glueberry::{AdmissionCause, DisconnectReason, Event, State};
use glueberry_tests::*;
use libp2p::StreamProtocol;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_faulting_is_reported_at_the_rate_limit_then_kept_out() {
    const MAX: u32 = 50;
    // (Streams unlimited: the faults, not `max_new_streams`, are under test.)
    let node = started(
        config(Transport::Tcp)
            .with_max_faults(Some(MAX))
            .with_max_new_streams(None)
            .with_max_handshake_streams(None),
    )
    .await;
    let mut events = node.subscribe_events();
    let mut raw = RawPeer::dial(node.listen_addrs()[0].clone());
    raw.outcome().await.unwrap();
    wait_state(&mut events, raw.peer_id, State::Connected).await;

    // Half a frame on a new handshake stream, dropped, again and again (until the node has had
    // enough and the streams fail).
    let protocol = StreamProtocol::new("/glueberry/stream/handshake/1.0.0");
    let started = Instant::now();
    let sent = raw
        .churn(
            node.peer_id(),
            &protocol,
            10 * MAX as usize,
            async |mut s| {
                s.write_all(&[0x0a, 0x09, 1, 2, 3]).await.is_ok() && s.close().await.is_ok()
            },
        )
        .await as u64;
    assert!(sent >= u64::from(MAX), "sent {sent}");

    // The peer was disconnected for its faults, and it was counted.
    let mut reports = Vec::new();
    let reason = within(async {
        loop {
            match events.recv().await.unwrap() {
                Event::StreamFault(f) if f.peer == raw.peer_id => reports.push(f),
                Event::Connection(e) if e.peer == raw.peer_id && e.state == State::Cooldown => {
                    return e.reason;
                }
                _ => {}
            }
        }
    })
    .await;
    let elapsed = started.elapsed();
    assert_eq!(reason, Some(DisconnectReason::Faults));
    assert_eq!(node.admission_stats().get(AdmissionCause::Faults), 1);
    // One report at once, then at most one a second, each carrying its count; the faults they
    // stand for are at most those sent (the last ones may still be held back).
    println!("{} reports in {elapsed:?} for {sent} faults", reports.len());
    assert!(!reports.is_empty());
    assert_eq!(reports[0].faults, 1);
    assert!(
        reports.len() as u64 <= 2 + elapsed.as_secs(),
        "{}",
        reports.len()
    );
    let reported: u64 = reports.iter().map(|f| f.faults).sum();
    assert!(reported <= sent, "{reported} > {sent}");

    // Kept out: its next connection is closed at once.
    raw.control
        .clone()
        .open_stream(node.peer_id(), protocol.clone())
        .await
        .unwrap_err();
    let mut again = RawPeer::dial_as(raw.keypair.clone(), node.listen_addrs()[0].clone());
    drop(raw);
    let closed = within(async {
        loop {
            if again.outcome().await.is_err() {
                return;
            }
        }
    });
    closed.await;
    assert_eq!(node.connection_state(&again.peer_id), State::Cooldown);
    node.shutdown().await;
}
