//! Two real nodes on loopback, over TCP and over QUIC: handshake, messages both ways on two
//! streams, concurrent senders, message sizes.

use std::collections::HashMap;

use bytes::Bytes;
use glueberry::{Error, IncomingMessage, Node};
use glueberry_tests::*;

const STREAMS: [&str; 2] = ["consensus", "mempool"];

/// Receives `n` messages, taking first those that arrived during the handshake.
async fn recv_n(node: &Node, early: &mut Vec<IncomingMessage>, n: usize) -> Vec<IncomingMessage> {
    let messages = node.messages();
    let mut out: Vec<IncomingMessage> = std::mem::take(early);
    while out.len() < n {
        out.push(within(messages.recv()).await.unwrap());
    }
    out
}

async fn both_ways_on_two_streams(t: Transport) {
    let (a, b, mut ea, mut eb) = established_pair(config(t), config(t), &STREAMS).await;
    for i in 0..10u8 {
        for s in STREAMS {
            a.send(b.peer_id(), s, vec![i; 100]).await.unwrap();
            b.send(a.peer_id(), s, format!("{s} {i}")).await.unwrap();
        }
    }
    let at_b = recv_n(&b, &mut eb, 20).await;
    let at_a = recv_n(&a, &mut ea, 20).await;
    for s in STREAMS {
        let got: Vec<Bytes> = at_b
            .iter()
            .filter(|m| &*m.stream == s)
            .map(|m| m.data.clone())
            .collect();
        assert_eq!(
            got,
            (0..10u8)
                .map(|i| Bytes::from(vec![i; 100]))
                .collect::<Vec<_>>()
        );
        assert!(at_b.iter().all(|m| m.peer == a.peer_id()));
        let got: Vec<String> = at_a
            .iter()
            .filter(|m| &*m.stream == s)
            .map(|m| String::from_utf8(m.data.to_vec()).unwrap())
            .collect();
        assert_eq!(got, (0..10).map(|i| format!("{s} {i}")).collect::<Vec<_>>());
    }
    assert_eq!(a.is_outbound(&b.peer_id()), Some(true));
    assert_eq!(b.is_outbound(&a.peer_id()), Some(false));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_handshake_and_messages() {
    both_ways_on_two_streams(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_handshake_and_messages() {
    both_ways_on_two_streams(Transport::Quic).await;
}

async fn concurrent_senders(t: Transport) {
    const TASKS: u32 = 64;
    const EACH: u32 = 200;
    let (a, b, _, mut eb) = established_pair(config(t), config(t), &["blocks"]).await;
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let a = a.clone();
        let to = b.peer_id();
        handles.push(tokio::spawn(async move {
            for seq in 0..EACH {
                // Varying sizes so that frames of different tasks would be visibly torn if
                // they interleaved.
                let mut m = Vec::with_capacity(8 + (seq as usize * 37) % 3000);
                m.extend_from_slice(&task.to_be_bytes());
                m.extend_from_slice(&seq.to_be_bytes());
                m.resize(8 + (seq as usize * 37) % 3000, task as u8);
                a.send(to, "blocks", m).await.unwrap();
            }
        }));
    }
    let got = recv_n(&b, &mut eb, (TASKS * EACH) as usize).await;
    for h in handles {
        h.await.unwrap();
    }
    let mut next = HashMap::new();
    for m in got {
        let task = u32::from_be_bytes(m.data[..4].try_into().unwrap());
        let seq = u32::from_be_bytes(m.data[4..8].try_into().unwrap());
        assert_eq!(m.data.len(), 8 + (seq as usize * 37) % 3000, "frame intact");
        assert!(m.data[8..].iter().all(|&x| x == task as u8), "frame intact");
        let want = next.entry(task).or_insert(0u32);
        assert_eq!(seq, *want, "per-task order of task {task}");
        *want += 1;
    }
    assert_eq!(next.len(), TASKS as usize);
    assert!(next.values().all(|&n| n == EACH));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_64_concurrent_senders_on_one_stream() {
    concurrent_senders(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_64_concurrent_senders_on_one_stream() {
    concurrent_senders(Transport::Quic).await;
}

/// The handshake stream's default message limit.
const HS_LIMIT: usize = 16 * 1024;

async fn sizes(t: Transport) {
    let limit = 1 << 20;
    let (a, b, _, mut eb) = established_pair(config(t), config(t), &["data"]).await;
    let sizes = [0usize, 1, 1024, 8192, limit];
    for (i, &n) in sizes.iter().enumerate() {
        let m: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
        a.send(b.peer_id(), "data", m).await.unwrap();
        // The handshake stream takes sizes up to its own limit (16 KiB by default).
        a.send(b.peer_id(), "handshake", vec![9u8; n.min(HS_LIMIT)])
            .await
            .unwrap();
    }
    let err = a
        .send(b.peer_id(), "data", vec![0u8; limit + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { size, max } if size == limit + 1 && max == limit)
    );
    assert!(!err.is_retriable());
    let err = a
        .send(b.peer_id(), "handshake", vec![0u8; HS_LIMIT + 1])
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::MessageTooLarge { size, max } if size == HS_LIMIT + 1 && max == HS_LIMIT)
    );
    let got = recv_n(&b, &mut eb, 2 * sizes.len()).await;
    let data: Vec<_> = got.iter().filter(|m| &*m.stream == "data").collect();
    let hs: Vec<_> = got.iter().filter(|m| &*m.stream == "handshake").collect();
    for (i, &n) in sizes.iter().enumerate() {
        let want: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
        assert_eq!(data[i].data.as_ref(), want.as_slice(), "size {n}");
        assert_eq!(hs[i].data.len(), n.min(HS_LIMIT));
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_message_sizes() {
    sizes(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_message_sizes() {
    sizes(Transport::Quic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_five_mib_message_with_raised_limit() {
    five_mib(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_five_mib_message_with_raised_limit() {
    five_mib(Transport::Quic).await;
}

async fn five_mib(t: Transport) {
    let big = 8 << 20;
    let (a, b, _, mut eb) = established_pair(
        config(t).with_max_message_size(big),
        config(t).with_max_message_size(big),
        &["bulk"],
    )
    .await;
    let m: Vec<u8> = (0..5 << 20).map(|j: usize| (j % 251) as u8).collect();
    a.send(b.peer_id(), "bulk", m.clone()).await.unwrap();
    let got = recv_n(&b, &mut eb, 1).await;
    assert_eq!(got[0].data.len(), m.len());
    assert!(got[0].data == m);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receive_limit_rejects_larger_frames() {
    // b accepts less than a may send: a's frame is refused by b's decoder before allocation.
    let t = Transport::Tcp;
    let (a, b, _, _) = established_pair(
        config(t),
        config(t).with_max_message_size(1024),
        &["data", "other"],
    )
    .await;
    let mut sub = b.subscribe_events();
    a.send(b.peer_id(), "data", vec![1u8; 4096]).await.unwrap();
    let fault = wait_fault(&mut sub, a.peer_id()).await;
    assert!(fault.reset, "{fault:?}");
    assert!(fault.error.contains("exceeds the limit"), "{}", fault.error);
    // Only that stream was reset: the connection and the other stream still work.
    a.send(b.peer_id(), "other", vec![2u8; 16]).await.unwrap();
    let m = within(b.messages().recv()).await.unwrap();
    assert_eq!((&*m.stream, m.data.as_ref()), ("other", &[2u8; 16][..]));
    a.shutdown().await;
    b.shutdown().await;
}
