//! A validator that crashes and restarts with the same identity is back at once with every
//! peer, whatever duplicate connections linger (docs/admission.md, "Restarts").
//!
//! Four nodes dial each other at once, so pairs get duplicate connections. One is killed the
//! way a crash kills it (its runtime is dropped: no clean close, and over QUIC its peers hear
//! nothing) and started again with the same identity and address book. Every timeout that could
//! otherwise bring it back (pings, QUIC idle, reconnection delays, the retired-duplicate grace,
//! the handshake timeout) is set far beyond the test's own bound, so the test passes only if the
//! node re-establishes the peer without waiting for one.

use std::time::Duration;

use glueberry_tests::*;

const LONG: Duration = Duration::from_secs(600);

async fn restarted_peer_is_back_at_once(t: Transport, per_peer: Option<usize>) {
    let back = crash_and_restart(t, Some(LONG), per_peer).await;
    println!("{t:?}: the survivors had it back after {back:?}");
    assert_eq!(back.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_a_restarted_peer_is_back_at_once() {
    restarted_peer_is_back_at_once(Transport::Tcp, Some(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_restarted_peer_is_back_at_once() {
    restarted_peer_is_back_at_once(Transport::Quic, Some(2)).await;
}

/// With one connection per peer, the restarted peer's new connection closes the old one at once
/// (before its handshake stream arrives), and simultaneous dials keep the same connection on
/// both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_a_restarted_peer_is_back_with_one_connection_per_peer() {
    restarted_peer_is_back_at_once(Transport::Tcp, Some(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_restarted_peer_is_back_with_one_connection_per_peer() {
    restarted_peer_is_back_at_once(Transport::Quic, Some(1)).await;
}
