//! A raw libp2p peer sends malformed frames: the node never panics, rejects and reports each
//! one (a `StreamFault` event), resets the stream when framing is lost or after too many bad
//! bodies, and keeps working.

use futures::{AsyncReadExt as _, AsyncWriteExt as _};
use glueberry::{Config, Node, State};
use glueberry_tests::*;

/// Every fault reported on its own and none punished: these tests are about how each bad
/// input is handled (tests/faults.rs has the rate limit and the cooldown).
fn every_fault(t: Transport) -> glueberry::Config {
    config(t)
        .with_fault_report_interval(std::time::Duration::ZERO)
        .with_max_faults(None)
}

/// A node prepared to take stream `data` from a raw peer, and a subscription to its events.
async fn setup(config: Config) -> (Node, RawPeer, glueberry::Subscription) {
    let node = started(config).await;
    let mut sub = node.subscribe_events();
    let raw = RawPeer::dial(node.listen_addrs()[0].clone());
    wait_state(&mut sub, raw.peer_id, State::Connected).await;
    node.prepare_streams(raw.peer_id, &raw.public_key(), &["data"])
        .await
        .unwrap();
    (node, raw, sub)
}

/// Writes `bytes` on a fresh stream and returns the fault the node reports.
async fn fault_for(
    node: &Node,
    raw: &RawPeer,
    sub: &mut glueberry::Subscription,
    stream: &str,
    bytes: &[u8],
    close: bool,
) -> glueberry::StreamFault {
    let mut s = raw.open(node.peer_id(), stream).await;
    s.write_all(bytes).await.unwrap();
    s.flush().await.unwrap();
    if close {
        s.close().await.unwrap();
    }
    let fault = wait_fault(sub, raw.peer_id).await;
    assert_eq!(fault.stream, stream);
    if fault.reset {
        // The node dropped its end: our read ends (EOF or reset), it does not hang.
        let mut buf = [0u8; 16];
        let _ = within(s.read(&mut buf)).await;
    }
    fault
}

/// A valid encrypted message from the raw peer still gets through.
async fn still_works(node: &Node, raw: &RawPeer) {
    let cipher = raw.cipher(&node.public_key());
    let mut s = raw.open(node.peer_id(), "data").await;
    s.write_all(&frame(&seal(&cipher, b"still fine")))
        .await
        .unwrap();
    s.flush().await.unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!(
        (m.peer, &*m.stream, m.data.as_ref()),
        (raw.peer_id, "data", &b"still fine"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_framing_errors_reset_the_stream() {
    framing_errors(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_framing_errors_reset_the_stream() {
    framing_errors(Transport::Quic).await;
}

async fn framing_errors(t: Transport) {
    let (node, raw, mut sub) = setup(every_fault(t)).await;
    let limit = 1 << 20;
    let mut over = Vec::new();
    glueberry::unstable::wire::varint::put((limit + 28 + 3 + 1) as u64, &mut over);
    let cases: [(&str, Vec<u8>, bool, &str); 5] = [
        (
            "length prefix over the limit",
            over,
            false,
            "exceeds the limit",
        ),
        (
            "overlong varint",
            hex("ffffffffffffffffff02"),
            false,
            "overflows",
        ),
        ("empty frame", vec![0x00], false, "empty frame"),
        (
            "inner length past the frame",
            hex("020568"),
            false,
            "inner length",
        ),
        (
            "truncated frame",
            hex("0a08010203"),
            true,
            "ended inside a frame",
        ),
    ];
    for stream in ["data", "handshake"] {
        for (what, bytes, close, msg) in &cases {
            let fault = fault_for(&node, &raw, &mut sub, stream, bytes, *close).await;
            assert!(fault.reset, "{what} on {stream}: {fault:?}");
            assert!(
                fault.error.contains(msg),
                "{what} on {stream}: {}",
                fault.error
            );
        }
    }
    let stats = node.peer_stats(&raw.peer_id).unwrap();
    // The frame over the limit is an oversized message; the other four broke the framing.
    assert_eq!(stats.dropped.malformed, 8, "{stats:?}");
    assert_eq!(stats.dropped.oversized, 2, "{stats:?}");
    assert_eq!(stats.streams["handshake"].dropped.malformed, 4);
    assert_eq!(stats.streams["handshake"].dropped.oversized, 1);
    still_works(&node, &raw).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_bad_bodies_are_counted_then_the_stream_is_reset() {
    bad_bodies(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_bad_bodies_are_counted_then_the_stream_is_reset() {
    bad_bodies(Transport::Quic).await;
}

async fn bad_bodies(t: Transport) {
    let (node, raw, mut sub) = setup(every_fault(t).with_max_stream_failures(Some(3))).await;
    let cipher = raw.cipher(&node.public_key());
    let mut wrong_tag = seal(&cipher, b"tampered");
    *wrong_tag.last_mut().unwrap() ^= 0x80;
    let short = vec![7u8; 27];

    let mut s = raw.open(node.peer_id(), "data").await;
    // Bad, good, bad, bad: the good one is delivered, the third bad one resets the stream.
    for body in [&short, &seal(&cipher, b"good"), &wrong_tag, &short] {
        s.write_all(&frame(body)).await.unwrap();
    }
    s.flush().await.unwrap();
    let f1 = wait_fault(&mut sub, raw.peer_id).await;
    assert!(
        !f1.reset && f1.error.contains("shorter than the 28-byte"),
        "{f1:?}"
    );
    let f2 = wait_fault(&mut sub, raw.peer_id).await;
    assert!(
        !f2.reset && f2.error.contains("authentication failed"),
        "{f2:?}"
    );
    let f3 = wait_fault(&mut sub, raw.peer_id).await;
    assert!(f3.reset, "{f3:?}");
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!(m.data.as_ref(), b"good");
    let stats = node.peer_stats(&raw.peer_id).unwrap();
    assert_eq!(stats.dropped.decryption_failed, 3, "{stats:?}");
    assert_eq!(stats.streams["data"].messages_received, 1);
    still_works(&node, &raw).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprepared_stream_is_refused_and_handshake_is_plain() {
    let node = started(every_fault(Transport::Tcp)).await;
    let mut sub = node.subscribe_events();
    let raw = RawPeer::dial(node.listen_addrs()[0].clone());
    wait_state(&mut sub, raw.peer_id, State::Connected).await;
    // The node registers no handler for an unknown name: negotiation fails.
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/nope/1.0.0");
    assert!(
        raw.control
            .clone()
            .open_stream(node.peer_id(), protocol)
            .await
            .is_err()
    );
    // The handshake stream carries plain frames, byte-exact with Go ("hello" = 06 05 68656c6c6f).
    let mut s = raw.open(node.peer_id(), "handshake").await;
    s.write_all(&hex("060568656c6c6f")).await.unwrap();
    s.flush().await.unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!((&*m.stream, m.data.as_ref()), ("handshake", &b"hello"[..]));
    // And the node answers on the same stream with the same framing.
    node.send(raw.peer_id, "handshake", &b"hi"[..])
        .await
        .unwrap();
    let mut buf = [0u8; 4];
    within(s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(buf, [0x03, 0x02, b'h', b'i']);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_frames_on_the_wire_are_v1() {
    let (node, raw, _sub) = setup(every_fault(Transport::Tcp)).await;
    let cipher = raw.cipher(&node.public_key());
    // The raw peer opens "data" first, so the node answers on that stream.
    let mut s = raw.open(node.peer_id(), "data").await;
    s.write_all(&frame(&seal(&cipher, b"ping"))).await.unwrap();
    s.flush().await.unwrap();
    within(node.messages().recv()).await.unwrap();
    node.send(raw.peer_id, "data", &b"pong"[..]).await.unwrap();
    // 4-byte plaintext: body 32 bytes, inner prefix 1, outer 33: `21 20 nonce ct tag`.
    let mut wire = [0u8; 34];
    within(s.read_exact(&mut wire)).await.unwrap();
    assert_eq!(&wire[..2], &[0x21, 0x20]);
    let range = cipher.open_in_place(&mut wire[2..]).unwrap();
    assert_eq!(&wire[2..][range], b"pong");
    node.shutdown().await;
}

/// The stream ends on our side (EOF or reset): the node dropped it.
async fn ended(s: &mut libp2p::Stream) -> bool {
    let mut buf = [0u8; 1];
    matches!(within(s.read(&mut buf)).await, Ok(0) | Err(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_names_prepared_for_another_peer_are_refused() {
    let (node, raw, _sub) = setup(every_fault(Transport::Tcp)).await;
    // A second peer: "data" is registered (prepared for `raw`) but not for this one.
    let mut sub = node.subscribe_events();
    let other = RawPeer::dial(node.listen_addrs()[0].clone());
    wait_state(&mut sub, other.peer_id, State::Connected).await;
    // Negotiation fails: the sender learns at once, nothing it writes is taken.
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/data/1.0.0");
    assert!(
        within(other.control.clone().open_stream(node.peer_id(), protocol))
            .await
            .is_err(),
        "the node must not accept the stream"
    );
    still_works(&node, &raw).await;
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_four_streams_per_name_are_read() {
    let (node, raw, _sub) = setup(every_fault(Transport::Tcp)).await;
    let cipher = raw.cipher(&node.public_key());
    let mut kept = Vec::new();
    for i in 0..4u8 {
        let mut s = raw.open(node.peer_id(), "data").await;
        s.write_all(&frame(&seal(&cipher, &[i]))).await.unwrap();
        s.flush().await.unwrap();
        // Each one is read: its message arrives.
        let m = within(node.messages().recv()).await.unwrap();
        assert_eq!(m.data.as_ref(), &[i]);
        kept.push(s);
    }
    let mut fifth = raw.open(node.peer_id(), "data").await;
    assert!(ended(&mut fifth).await, "a fifth stream is refused");
    // The four others still work.
    kept[3]
        .write_all(&frame(&seal(&cipher, b"fourth")))
        .await
        .unwrap();
    kept[3].flush().await.unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!(m.data.as_ref(), b"fourth");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_closes_the_handshake_stream() {
    let (node, raw, _sub) = setup(every_fault(Transport::Tcp)).await;
    let mut hs = raw.open(node.peer_id(), "handshake").await;
    hs.write_all(&frame(&[HELLO])).await.unwrap();
    hs.flush().await.unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!(&*m.stream, "handshake");
    // The node answers on the same stream, then finalizes: the answer arrives, then the end.
    node.send(raw.peer_id, "handshake", vec![COMPLETE])
        .await
        .unwrap();
    node.finalize_handshake(raw.peer_id).await.unwrap();
    let mut answer = [0u8; 3];
    within(hs.read_exact(&mut answer)).await.unwrap();
    assert_eq!(answer, [0x02, 0x01, COMPLETE]);
    assert!(
        ended(&mut hs).await,
        "the handshake stream is closed after finalize"
    );
    node.shutdown().await;
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_delays_nobody_and_sees_its_lag() {
    const EVENTS: usize = 10_000;
    const BATCH: usize = 50;
    let (node, raw, _) = setup(every_fault(Transport::Tcp).with_max_stream_failures(None)).await;
    // Subscribed with the default queue of 100 events; this one never reads.
    let mut idle = node.subscribe_events();
    let mut reader = node.subscribe_filtered(glueberry::Filter::all().peers([raw.peer_id]));
    let short = frame(&[7u8; 27]);
    let mut s = raw.open(node.peer_id(), "data").await;
    // Each bad body is one StreamFault event; the reader takes every batch as it comes.
    for _ in 0..EVENTS / BATCH {
        s.write_all(&short.repeat(BATCH)).await.unwrap();
        s.flush().await.unwrap();
        for _ in 0..BATCH {
            match within(reader.recv()).await {
                Ok(glueberry::Event::StreamFault(f)) => assert!(!f.reset),
                other => panic!("the reader missed nothing: {other:?}"),
            }
        }
    }
    assert_eq!(
        node.peer_stats(&raw.peer_id)
            .unwrap()
            .dropped
            .decryption_failed,
        EVENTS as u64
    );
    node.shutdown().await;
    // The idle one holds its first 100 events, then learns how many it missed.
    for _ in 0..100 {
        assert!(matches!(
            idle.recv().await,
            Ok(glueberry::Event::StreamFault(_))
        ));
    }
    match idle.recv().await {
        Err(glueberry::RecvError::Lagged(n)) => assert!(n >= (EVENTS - 100) as u64, "{n}"),
        other => panic!("expected the lag, got {other:?}"),
    }
    assert_eq!(idle.recv().await.unwrap_err(), glueberry::RecvError::Closed);
}

/// A peer whose yamux sends frames as large as its window (js-libp2p): no window the node grants
/// lets it send a frame rust-yamux refuses, so 1 MiB messages and bursts of 64 KiB ones arrive
/// and the connection lives (docs/protocol.md, "yamux settings").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_sized_frames_from_a_js_like_yamux_are_accepted() {
    // The sender is a stranger, so its 1 MiB messages go on the handshake stream: let them.
    let node = started(every_fault(Transport::Tcp).with_max_handshake_message_size(1 << 20)).await;
    let mut sub = node.subscribe_events();
    let addr = node.listen_addrs()[0].clone();
    let target = {
        let (mut ip, mut port) = (None, None);
        for p in addr.iter() {
            match p {
                libp2p::multiaddr::Protocol::Ip4(a) => ip = Some(a),
                libp2p::multiaddr::Protocol::Tcp(p) => port = Some(p),
                _ => {}
            }
        }
        std::net::SocketAddr::from((ip.unwrap(), port.unwrap()))
    };
    let mut messages: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 64 * 1024]).collect();
    messages.extend((0..64u8).map(|i| vec![i; 1024 * 1024]));
    let reader = {
        let (node, n) = (node.clone(), messages.len());
        tokio::spawn(async move {
            let q = node.messages();
            let mut got = Vec::new();
            for _ in 0..n {
                got.push(within(q.recv()).await.unwrap().data);
            }
            got
        })
    };
    let (peer, driver) = send_in_window_sized_frames(target, &messages)
        .await
        .unwrap();
    let got = within(reader).await.unwrap();
    assert_eq!(got.len(), messages.len());
    for (g, m) in got.iter().zip(&messages) {
        assert_eq!(g.as_ref(), m.as_slice());
    }
    assert!(!driver.is_finished(), "the connection is still up");
    assert_eq!(node.connection_state(&peer), State::Connected);
    while let Ok(Some(e)) = sub.try_recv() {
        assert!(!matches!(e, glueberry::Event::StreamFault(_)), "{e:?}");
    }
    node.shutdown().await;
}

/// The handshake stream, open to strangers, takes messages up to its own small limit: a larger
/// frame is refused before it is read (counted as oversized, the stream reset), and a message at
/// the limit still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_stream_has_its_own_small_limit() {
    let (node, raw, mut sub) = setup(every_fault(Transport::Tcp)).await;
    let fault = fault_for(
        &node,
        &raw,
        &mut sub,
        "handshake",
        &frame(&[1u8; 20 * 1024]),
        false,
    )
    .await;
    assert!(
        fault.reset && fault.error.contains("exceeds the limit"),
        "{fault:?}"
    );
    let stats = node.peer_stats(&raw.peer_id).unwrap();
    assert_eq!(stats.streams["handshake"].dropped.oversized, 1);
    // At the limit: delivered.
    let mut s = raw.open(node.peer_id(), "handshake").await;
    s.write_all(&frame(&[2u8; 16 * 1024])).await.unwrap();
    s.flush().await.unwrap();
    let m = within(node.messages().recv()).await.unwrap();
    assert_eq!(m.data.len(), 16 * 1024);
    node.shutdown().await;
}
