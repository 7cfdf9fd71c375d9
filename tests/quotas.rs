//! Rate quotas per (peer, stream) (docs/scoring.md, "Quotas"): a peer over its quota is slowed
//! to it, its messages intact and in order, counted; one that stays over loses score.

use std::time::{Duration, Instant};

use glueberry::handshake;
use glueberry::quota::Quota;
use glueberry::{Config, Filter, Node, State};
use glueberry_tests::*;

fn hs() -> handshake::Config {
    handshake::Config::new(b"c".to_vec(), ["votes", "blocks"])
}

async fn pair(receiver: Config) -> (Node, Node) {
    let a = started(config(Transport::Tcp).with_handshake(hs())).await;
    let b = started(receiver.with_handshake(hs())).await;
    let mut eb = b.subscribe_filtered(Filter::all().states([State::Established]));
    let to_b = b.listen_addrs()[0]
        .clone()
        .with(glueberry::multiaddr::Protocol::P2p(b.peer_id()));
    a.dial(to_b).await.unwrap();
    wait_state(&mut eb, a.peer_id(), State::Established).await;
    let mut ea = a.subscribe_filtered(Filter::all().peers([b.peer_id()]));
    if a.connection_state(&b.peer_id()) != State::Established {
        wait_state(&mut ea, b.peer_id(), State::Established).await;
    }
    (a, b)
}

/// A bare libp2p peer connected to `node` (not handshaked).
async fn connected_raw_peer(node: &Node) -> RawPeer {
    let mut events = node.subscribe_events();
    let mut raw = RawPeer::dial(node.listen_addrs()[0].clone());
    raw.outcome().await.unwrap();
    wait_state(&mut events, raw.peer_id, State::Connected).await;
    raw
}

/// The streams of `raw` that `node` has refused, once `enough` says they are.
async fn refused_when(node: &Node, raw: &RawPeer, enough: impl Fn(u64) -> bool) -> u64 {
    eventually(async || {
        let r = node
            .peer_stats(&raw.peer_id)
            .map_or(0, |s| s.refused_streams);
        enough(r).then_some(r)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_quota_is_slowed_to_it_with_nothing_lost() {
    const N: u32 = 600;
    let (a, b) =
        pair(config(Transport::Tcp).with_stream_quota("votes", Quota::messages(200))).await;
    let started = Instant::now();
    let sender = tokio::spawn({
        let (a, peer) = (a.clone(), b.peer_id());
        async move {
            for i in 0..N {
                a.send(peer, "votes", i.to_be_bytes().to_vec())
                    .await
                    .unwrap();
            }
            // Another stream has no quota: it is not held up.
            a.send(peer, "blocks", b"block".to_vec()).await.unwrap();
        }
    });
    let votes = b.messages_for("votes");
    for i in 0..N {
        let m = within(votes.recv()).await.unwrap();
        assert_eq!(m.data[..], i.to_be_bytes(), "in order, none lost");
    }
    let took = started.elapsed();
    within(sender).await.unwrap();
    let block = within(b.messages().recv()).await.unwrap();
    assert_eq!(&block.data[..], b"block");
    // One second's worth at once, the rest at 200 a second, less the last batch a reader
    // decodes before it looks at the quota again (64): at least 1.68 s. A lower bound, which
    // only a quota that does not hold can miss.
    assert!(took >= Duration::from_millis(1680), "{took:?}");
    let st = &b.peer_stats(&a.peer_id()).unwrap().streams["votes"];
    assert!(st.quota_waits > 0, "{st:?}");
    assert_eq!(st.messages_received, u64::from(N));
    assert_eq!(
        b.peer_stats(&a.peer_id()).unwrap().streams["blocks"].quota_waits,
        0
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Over the quota for more than 10 s without a break: the peer's score goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stays_over_its_quota_loses_score() {
    let (a, b) =
        pair(config(Transport::Tcp).with_stream_quota("blocks", Quota::bytes(64 * 1024))).await;
    let peer = b.peer_id();
    let sender = tokio::spawn({
        let a = a.clone();
        async move {
            // 12 s of sending at twice the quota.
            for _ in 0..24 {
                if a.send(peer, "blocks", vec![0u8; 64 * 1024]).await.is_err() {
                    break;
                }
            }
        }
    });
    let reader = tokio::spawn({
        let m = b.messages();
        async move { while m.recv().await.is_ok() {} }
    });
    let lowered = eventually(async || {
        let score = b.peer_score(a.peer_id()).await.unwrap();
        (score < 0.0).then_some(score)
    })
    .await;
    assert!(lowered <= -0.9, "{lowered}");
    sender.abort();
    a.shutdown().await;
    b.shutdown().await;
    let _ = reader.await;
}

/// A peer that opens streams in a loop (opens, writes nothing, drops) is held to
/// `max_new_streams`: the rest are refused at once and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_churn_is_held_to_max_new_streams() {
    use futures::AsyncWriteExt as _;
    let node = started(
        config(Transport::Tcp)
            .with_max_new_streams(Some(20))
            .with_max_handshake_streams(None),
    )
    .await;
    let raw = connected_raw_peer(&node).await;
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/handshake/1.0.0");
    let started = Instant::now();
    let mut control = raw.control.clone();
    let mut opened = 0u64;
    for _ in 0..200 {
        if let Ok(mut s) = within(control.open_stream(node.peer_id(), protocol.clone())).await {
            let _ = s.close().await;
            opened += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // One second's worth at once, then 20 a second; the rest reset before negotiation (which
    // the opener sees as a protocol not supported).
    assert!(
        opened as f64 <= 20.0 * (1.0 + secs) + 1.0,
        "{opened} in {secs:.1} s"
    );
    let refused = refused_when(&node, &raw, |r| r >= 200 - opened).await;
    // (A handshake stream let through may be refused too: at most 4 are read at once per name.)
    assert!(refused <= 200, "{refused}");
    node.shutdown().await;
}

/// Streams whose negotiation fails (a protocol the node does not speak, which the swarm never
/// reports) are charged to `max_new_streams` as much as the others: over it they are refused
/// before negotiation and counted, and a peer that keeps at it for 10 s loses score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_fail_negotiation_count_against_max_new_streams() {
    let node = started(config(Transport::Tcp).with_max_new_streams(Some(20))).await;
    let raw = connected_raw_peer(&node).await;
    let protocol = libp2p::StreamProtocol::new("/not-glueberry/1.0.0");
    let started = Instant::now();
    let mut control = raw.control.clone();
    let (mut attempts, mut checked) = (0u64, Instant::now());
    // Until the score goes down: after 10 s over the limit without a break.
    let score = loop {
        let open = control.open_stream(node.peer_id(), protocol.clone());
        // Negotiated and failed, or reset before negotiation: the opener cannot tell.
        assert!(
            within(open).await.is_err(),
            "the node does not speak {protocol}"
        );
        attempts += 1;
        if checked.elapsed() >= Duration::from_millis(500) {
            checked = Instant::now();
            let score = node.peer_score(raw.peer_id).await.unwrap();
            if score < 0.0 {
                break score;
            }
        }
        assert!(
            started.elapsed() < WAIT,
            "no verdict after {attempts} streams"
        );
    };
    let secs = started.elapsed().as_secs_f64();
    assert!(secs >= 10.0, "a verdict after {secs:.1} s");
    assert!(score <= -9.0, "a Medium verdict: {score}");
    // One second's worth at once, then 20 a second, negotiated (and failed); the rest refused.
    let most = (20.0 * (1.0 + secs)) as u64 + 1;
    let refused = refused_when(&node, &raw, |r| r > 0 && r >= attempts.saturating_sub(most)).await;
    assert!(refused <= attempts, "{refused} of {attempts}");
    node.shutdown().await;
}

/// Handshake attempts: at most `max_handshake_streams` handshake streams a minute per peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_attempts_are_held_to_max_handshake_streams() {
    use futures::AsyncWriteExt as _;
    let node = started(config(Transport::Tcp).with_max_handshake_streams(Some(10))).await;
    let raw = connected_raw_peer(&node).await;
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/handshake/1.0.0");
    let opened = raw
        .churn(node.peer_id(), &protocol, 25, async |mut s| {
            let _ = s.close().await;
            true
        })
        .await;
    assert_eq!(opened, 25);
    // 10 let through (all at once), the other 15 refused (well within a minute).
    let refused = refused_when(&node, &raw, |r| r >= 15).await;
    // (At least: a refusal for too many streams of one name would count too.)
    assert!(refused >= 15, "{refused}");
    node.shutdown().await;
}

/// A ping flood is answered at `max_pings` a second at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_answered_at_max_pings() {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _};
    let node = started(config(Transport::Tcp).with_max_pings(Some(20))).await;
    let (mut control, driver, own) = pinger_answered(node.listen_addrs()[0].clone());
    // The pinger's own ping answered first: its stream would otherwise replace ours.
    within(own).await.unwrap();
    let mut s = within(control.open_stream(
        node.peer_id(),
        libp2p::StreamProtocol::new("/ipfs/ping/1.0.0"),
    ))
    .await
    .unwrap();
    // As fast as it goes, for 2 s.
    let started = Instant::now();
    let mut answered = 0u32;
    let mut buf = [0u8; 32];
    while started.elapsed() < Duration::from_secs(2) {
        let ping = async {
            s.write_all(&[7u8; 32]).await?;
            s.flush().await?;
            s.read_exact(&mut buf).await
        };
        match tokio::time::timeout(Duration::from_secs(1), ping).await {
            Ok(Ok(())) => answered += 1,
            _ => break,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // One second's worth at once, then 20 a second (a peer at full speed gets thousands a
    // second without the limit).
    assert!(answered > 0);
    assert!(
        f64::from(answered) <= 20.0 * (1.0 + secs) + 1.0,
        "{answered} in {secs:.1} s"
    );
    driver.abort();
    node.shutdown().await;
}

/// A quota wait longer than `frame_timeout`, with a frame left half read in the buffer, is the
/// node's time, not the peer's: nothing is reset, every message arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_wait_is_not_counted_against_a_frame_in_progress() {
    let receiver = config(Transport::Tcp)
        .with_frame_timeout(Some(Duration::from_millis(300)))
        .with_stream_quota("blocks", Quota::bytes(20 * 1024));
    let (a, b) = pair(receiver).await;
    let peer = b.peer_id();
    // Queued at once, so that the writer coalesces them: frames straddle the reader's reads.
    for i in 0..30u8 {
        a.send(peer, "blocks", vec![i; 10 * 1024 + 7])
            .await
            .unwrap();
    }
    let blocks = b.messages_for("blocks");
    for i in 0..30u8 {
        let m = within(blocks.recv()).await.unwrap();
        assert_eq!((m.data.len(), m.data[0]), (10 * 1024 + 7, i));
    }
    let st = &b.peer_stats(&a.peer_id()).unwrap().streams["blocks"];
    assert!(st.quota_waits > 0, "{st:?}");
    assert_eq!(st.dropped, Default::default(), "{st:?}");
    a.shutdown().await;
    b.shutdown().await;
}
