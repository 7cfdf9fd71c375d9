//! Start, disconnect and shutdown: typed errors for every misuse, events for every state
//! change, and a shutdown that ends every task even with sends and reads in flight.

use std::collections::HashMap;

use glueberry::{DisconnectReason, Error, Node, State};
use glueberry_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_gives_typed_errors() {
    let t = Transport::Tcp;
    let node = Node::new(config(t)).unwrap();
    let stranger = glueberry::PeerId::random();
    assert!(matches!(
        node.send(stranger, "x", vec![1]).await,
        Err(Error::NotStarted)
    ));
    assert!(matches!(
        node.connect(stranger).await,
        Err(Error::NotStarted)
    ));
    node.start().await.unwrap();
    assert!(matches!(node.start().await, Err(Error::AlreadyStarted)));
    assert!(!node.listen_addrs().is_empty());
    assert!(
        node.listen_addrs()
            .iter()
            .all(|a| !a.to_string().ends_with("/tcp/0"))
    );
    assert!(matches!(node.connect(stranger).await, Err(Error::UnknownPeer(p)) if p == stranger));
    let err = node.send(stranger, "x", vec![1]).await.unwrap_err();
    assert!(matches!(err, Error::NotConnected(p) if p == stranger));
    assert!(err.is_retriable());
    assert!(matches!(
        node.disconnect(stranger).await,
        Err(Error::NotConnected(_))
    ));
    assert!(matches!(
        node.finalize_handshake(stranger).await,
        Err(Error::NotConnected(_))
    ));
    assert!(matches!(
        node.add_peer(
            stranger,
            vec![],
            HashMap::from([("k".repeat(5000), String::new())])
        )
        .await,
        Err(Error::MetadataTooLarge {
            size: 5000,
            max: 4096
        })
    ));
    assert!(matches!(
        node.send(stranger, "bad name", vec![1]).await,
        Err(Error::InvalidStreamName { .. })
    ));
    node.shutdown().await;
    assert!(matches!(
        node.send(stranger, "x", vec![1]).await,
        Err(Error::Shutdown)
    ));
    assert!(matches!(node.connect(stranger).await, Err(Error::Shutdown)));
    assert!(matches!(node.start().await, Err(Error::Shutdown)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_checks() {
    let t = Transport::Tcp;
    let a = started(config(t)).await;
    let b = started(config(t)).await;
    connect(&a, &b).await;
    let bp = b.peer_id();
    // Sending on a stream that was never prepared.
    assert!(matches!(
        a.send(bp, "data", vec![1]).await,
        Err(Error::StreamNotPrepared { .. })
    ));
    // A key that is not the peer's.
    assert!(matches!(
        a.prepare_streams(bp, &a.public_key(), &["data"]).await,
        Err(Error::PublicKeyMismatch { peer, .. }) if peer == bp
    ));
    assert!(matches!(
        a.prepare_streams(bp, &[1u8; 31], &["data"]).await,
        Err(Error::InvalidPublicKey { .. })
    ));
    assert!(matches!(
        a.prepare_streams(bp, &b.public_key(), &["handshake"]).await,
        Err(Error::InvalidStreamName { .. })
    ));
    assert!(matches!(
        a.prepare_streams(bp, &b.public_key(), &[] as &[&str]).await,
        Err(Error::NoStreams)
    ));
    // The right key works; finalizing twice does not.
    a.prepare_streams(bp, &b.public_key(), &["data"])
        .await
        .unwrap();
    a.finalize_handshake(bp).await.unwrap();
    assert_eq!(a.connection_state(&bp), State::Established);
    assert!(matches!(
        a.finalize_handshake(bp).await,
        Err(Error::InvalidState {
            state: State::Established,
            ..
        })
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_connect_handshake_and_disconnect() {
    let t = Transport::Tcp;
    let a = started(config(t)).await;
    let b = started(config(t)).await;
    let mut ea = a.subscribe_events();
    let mut eb = b.subscribe_filtered(glueberry::Filter::all().peers([a.peer_id()]));
    connect(&a, &b).await;
    wait_state(&mut ea, b.peer_id(), State::Connecting).await;
    wait_state(&mut ea, b.peer_id(), State::Connected).await;
    wait_state(&mut eb, a.peer_id(), State::Connected).await;
    let (_, _) = tokio::join!(
        handshake(&a, b.peer_id(), true, &["data"]),
        handshake(&b, a.peer_id(), false, &["data"])
    );
    wait_state(&mut ea, b.peer_id(), State::Established).await;
    wait_state(&mut eb, a.peer_id(), State::Established).await;
    a.disconnect(b.peer_id()).await.unwrap();
    let e = wait_state(&mut ea, b.peer_id(), State::Disconnected).await;
    assert_eq!(e.reason, Some(DisconnectReason::LocalRequest));
    let e = wait_state(&mut eb, a.peer_id(), State::Disconnected).await;
    assert!(e.reason.is_some());
    assert_eq!(b.connection_state(&a.peer_id()), State::Disconnected);
    // The session is gone with the connection.
    assert!(matches!(
        a.send(b.peer_id(), "data", vec![1]).await,
        Err(Error::NotConnected(_))
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_shutdown_with_sends_and_reads_in_flight() {
    shutdown_in_flight(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_shutdown_with_sends_and_reads_in_flight() {
    shutdown_in_flight(Transport::Quic).await;
}

async fn shutdown_in_flight(t: Transport) {
    // Small queues so that senders are blocked on backpressure when shutdown comes: b reads
    // nothing, its queue of 4 fills, its readers stop, the muxer window fills, a's send queue
    // of 8 fills.
    let (a, b, _, _) = established_pair(
        config(t).with_high_watermark(8).with_low_watermark(1),
        config(t).with_message_buffer_size(4),
        &["data"],
    )
    .await;
    let mut sub = a.subscribe_events();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let a = a.clone();
        let to = b.peer_id();
        tasks.push(tokio::spawn(async move {
            loop {
                if let Err(e) = a.send(to, "data", vec![i; 16 * 1024]).await {
                    return e;
                }
            }
        }));
    }
    // Proof that sends are blocked: one with a deadline gives up.
    loop {
        match a
            .send_timeout(
                b.peer_id(),
                "data",
                vec![9u8; 16],
                std::time::Duration::from_millis(100),
            )
            .await
        {
            Err(Error::Timeout { .. }) => break,
            Ok(()) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    // Shut down each from several tasks at once: `a` first, so that it sees its own shutdown
    // (and not `b` going away) as the reason.
    for node in [&a, &b] {
        let stops: Vec<_> = (0..3)
            .map(|_| {
                let node = node.clone();
                tokio::spawn(async move { node.shutdown().await })
            })
            .collect();
        for s in stops {
            within(s).await.unwrap();
        }
    }
    for t in tasks {
        let e = within(t).await.unwrap();
        assert!(
            matches!(
                e,
                Error::Shutdown | Error::NotConnected(_) | Error::StreamClosed { .. }
            ),
            "{e:?}"
        );
    }
    // The message queue still yields what it holds, then ends.
    let messages = b.messages();
    let mut left = 0;
    while within(messages.recv()).await.is_ok() {
        left += 1;
    }
    assert!(left <= 4, "{left} {:?}", b.inbox_stats());
    // Subscribers saw the shutdown, then the end of the stream of events.
    let e = wait_state(&mut sub, b.peer_id(), State::Disconnected).await;
    assert_eq!(e.reason, Some(DisconnectReason::Shutdown));
    let last = within(sub.recv()).await;
    assert!(
        matches!(last, Err(glueberry::RecvError::Closed)),
        "{last:?}"
    );
    assert!(matches!(
        a.send(b.peer_id(), "data", vec![1]).await,
        Err(Error::Shutdown)
    ));
    // A second shutdown returns at once.
    within(a.shutdown()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_handshake_with_keys_known_in_advance() {
    // Validators that know each other's keys skip the exchange: one call each.
    let t = Transport::Quic;
    let a = started(config(t)).await;
    let b = started(config(t)).await;
    connect(&a, &b).await;
    let mut eb = b.subscribe_filtered(glueberry::Filter::all().peers([a.peer_id()]));
    wait_state(&mut eb, a.peer_id(), State::Connected).await;
    let (ka, kb) = (a.public_key(), b.public_key());
    let (ra, rb) = tokio::join!(
        a.complete_handshake(b.peer_id(), &kb, &["votes"]),
        b.complete_handshake(a.peer_id(), &ka, &["votes"])
    );
    ra.unwrap();
    rb.unwrap();
    assert_eq!(a.connection_state(&b.peer_id()), State::Established);
    assert_eq!(b.connection_state(&a.peer_id()), State::Established);
    a.send(b.peer_id(), "votes", &b"prevote"[..]).await.unwrap();
    let m = within(b.messages().recv()).await.unwrap();
    assert_eq!((&*m.stream, m.data.as_ref()), ("votes", &b"prevote"[..]));
    // A wrong key is refused before anything is prepared.
    assert!(matches!(
        a.complete_handshake(b.peer_id(), &a.public_key(), &["other"])
            .await,
        Err(Error::PublicKeyMismatch { .. })
    ));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_send_queued_is_written_before_shutdown() {
    const N: u32 = 2000;
    let t = Transport::Tcp;
    let (a, b, _, _) = established_pair(config(t), config(t), &["data"]).await;
    let to = b.peer_id();
    let reader = {
        let messages = b.messages();
        tokio::spawn(async move {
            let mut next = 0u32;
            while next < N {
                let m = messages.recv().await.expect("queue open");
                assert_eq!(m.data[..4], next.to_be_bytes(), "in order, none missing");
                next += 1;
            }
            next
        })
    };
    for i in 0..N {
        let mut m = i.to_be_bytes().to_vec();
        m.resize(1024, 0);
        a.send(to, "data", m).await.unwrap();
    }
    // Every send returned: shut down at once. What is queued still goes out.
    a.shutdown().await;
    assert_eq!(within(reader).await.unwrap(), N);
    let stats = a.peer_stats(&to).unwrap();
    assert_eq!(stats.dropped.stream_closed, 0, "{stats:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_up_by_an_application_that_stopped_reading() {
    let t = Transport::Tcp;
    // b's application never reads, and b would wait an hour for its writers to drain.
    let (a, b, _, _) = established_pair(
        config(t),
        config(t)
            .with_message_buffer_size(2)
            .with_shutdown_drain_timeout(std::time::Duration::from_secs(3600)),
        &["data"],
    )
    .await;
    for i in 0..100u32 {
        a.send(b.peer_id(), "data", i.to_be_bytes().to_vec())
            .await
            .unwrap();
    }
    // b answers on the same stream: it is b's writer too.
    b.send(a.peer_id(), "data", &b"ack"[..]).await.unwrap();
    assert_eq!(
        within(a.messages().recv()).await.unwrap().data.as_ref(),
        b"ack"
    );
    // b's reader is stuck on b's full queue. Shutdown still ends: once it began, the reader
    // drops what the application will never read (counted), reads on to the peer's close, and
    // b's writer sees its stream end.
    within(b.shutdown()).await;
    let stats = b.peer_stats(&a.peer_id()).unwrap();
    assert!(stats.dropped.undelivered > 0, "{stats:?}");
    a.shutdown().await;
}
