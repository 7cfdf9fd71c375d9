use std::time::SystemTime;

use futures::task::noop_waker_ref;

use super::*;

fn limits() -> Limits {
    Limits {
        peer: 1 << 20,
        stranger: 64 << 10,
        strangers: 128 << 10,
        total: 4 << 20,
        floor: 64 << 10,
        messages: 100,
        finish_stranger: 0,
        finish_peer: 0,
    }
}

/// Queues one message the way a reader does: its overhead charged first.
fn put(inbox: &Arc<Inbox>, peer: PeerId, stream: &str, data: &'static [u8]) -> usize {
    let class = inbox.priority(stream);
    let meter = Meter::new(inbox.clone(), peer, stream);
    let mut cx = Context::from_waker(noop_waker_ref());
    assert_eq!(meter.poll_messages(&mut cx, 1), Poll::Ready(1));
    inbox.push(&peer, class, [(msg(peer, stream, data), MESSAGE_OVERHEAD)])
}

fn msg(peer: PeerId, stream: &str, data: &'static [u8]) -> IncomingMessage {
    IncomingMessage {
        peer,
        stream: Arc::from(stream),
        data: bytes::Bytes::from_static(data),
        received_at: SystemTime::now(),
    }
}

#[test]
fn taking_a_message_releases_its_charge_and_wakes_the_blocked_reader() {
    let inbox = Inbox::new(limits(), HashMap::new());
    let peer = PeerId::random();
    let meter = Meter::new(inbox.clone(), peer, "a");
    let mut cx = Context::from_waker(noop_waker_ref());
    // A stranger's bulk stream may take three quarters of 64 KiB.
    assert_eq!(meter.poll_messages(&mut cx, 1), Poll::Ready(1));
    let rest = (48 << 10) - MESSAGE_OVERHEAD;
    assert_eq!(meter.poll_up_to(&mut cx, 1 << 20), Poll::Ready(rest));
    assert_eq!(meter.poll_up_to(&mut cx, 1), Poll::Pending);
    assert_eq!(inbox.stats().read_waits, 1);
    // The reader hands the whole charge over with one message.
    assert_eq!(
        inbox.push(&peer, Priority::Normal, [(msg(peer, "a", b"x"), 48 << 10)]),
        0
    );
    assert_eq!(inbox.held(&peer), 48 << 10);
    let messages = inbox.messages();
    assert_eq!(messages.try_recv().unwrap().data, &b"x"[..]);
    assert_eq!(inbox.held(&peer), 0);
    assert_eq!(inbox.stats().stranger_peak_bytes, 48 << 10);
    assert_eq!(meter.poll_up_to(&mut cx, 10), Poll::Ready(10));
}

#[test]
fn a_stream_received_apart_goes_back_when_its_queue_is_dropped() {
    let inbox = Inbox::new(limits(), HashMap::new());
    let peer = PeerId::random();
    let all = inbox.messages();
    put(&inbox, peer, "handshake", b"1");
    let hs = inbox.messages_for("handshake");
    let hs2 = inbox.messages_for("handshake");
    assert_eq!(hs.len(), 1);
    assert!(all.is_empty());
    put(&inbox, peer, "handshake", b"2");
    put(&inbox, peer, "data", b"3");
    assert_eq!(hs2.try_recv().unwrap().data, &b"1"[..]);
    drop(hs);
    assert_eq!(hs2.len(), 1);
    drop(hs2);
    assert_eq!(all.len(), 2);
    let got: Vec<_> = std::iter::from_fn(|| all.try_recv().ok())
        .map(|m| m.data)
        .collect();
    assert!(got.contains(&bytes::Bytes::from_static(b"2")));
    assert!(got.contains(&bytes::Bytes::from_static(b"3")));
}

#[tokio::test]
async fn a_closed_inbox_drains_then_ends() {
    let inbox = Inbox::new(limits(), HashMap::new());
    let peer = PeerId::random();
    let all = inbox.messages();
    let waiting = tokio::spawn({
        let all = all.clone();
        async move { all.recv().await }
    });
    tokio::task::yield_now().await;
    put(&inbox, peer, "a", b"1");
    assert_eq!(waiting.await.unwrap().unwrap().data, &b"1"[..]);
    put(&inbox, peer, "a", b"2");
    inbox.close();
    assert_eq!(put(&inbox, peer, "a", b"3"), 1);
    assert_eq!(all.recv().await.unwrap().data, &b"2"[..]);
    assert_eq!(all.recv().await, Err(Closed));
    assert_eq!(all.try_recv(), Err(crate::message::TryRecvError::Closed));
}

#[test]
fn the_handshake_stream_reaches_the_reserves_only_while_the_peer_is_a_stranger() {
    let inbox = Inbox::new(limits(), HashMap::new());
    let peer = PeerId::random();
    let mut cx = Context::from_waker(noop_waker_ref());
    let handshake = Meter::new(inbox.clone(), peer, "handshake");
    // A stranger's handshake stream may use its whole budget.
    assert_eq!(
        handshake.poll_up_to(&mut cx, 1 << 20),
        Poll::Ready(64 << 10)
    );
    handshake.release(64 << 10, 0);
    // A handshaked peer's is a bulk stream: three quarters of its budget.
    inbox.set_kind(&peer, Kind::Trusted);
    assert_eq!(
        handshake.poll_up_to(&mut cx, 4 << 20),
        Poll::Ready(768 << 10)
    );
}
