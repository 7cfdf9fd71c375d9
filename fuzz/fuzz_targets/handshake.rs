//! The handshake stream as the built-in handshake reads it: bytes framed by the v1 decoder
//! (with the handshake stream's 16 KiB limit), each frame a message to the peer's machine, with
//! Connected events between them (the first byte says where). Never panics; never finalizes
//! without having prepared since the last finalize; says nothing after rejecting; sends only
//! Hello, PubKey and Complete.

#![no_main]

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use glueberry::unstable::machines::{Action, Handshake};
use glueberry::unstable::wire::Decoder;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder as _;

const KEY: [u8; 32] = [1; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&connected, input)) = data.split_first() else {
        return;
    };
    let hello = Bytes::from_static(b"\x01chain");
    let check = |payload: &[u8]| -> Result<Arc<[String]>, String> {
        if payload == b"chain" {
            Ok(vec!["votes".to_owned()].into())
        } else {
            Err("another chain".into())
        }
    };
    let mut machine = Handshake::default();
    let (mut prepared, mut rejected) = (false, false);
    let mut decoder = Decoder::new(16 * 1024 + 1);
    let mut buf = BytesMut::from(input);
    let mut i = 0u32;
    loop {
        let actions = if connected & (1 << (i % 8)) != 0 && i < 16 {
            machine.on_connected(&hello)
        } else {
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => machine.on_message(&msg, &hello, &KEY, check),
                _ => break,
            }
        };
        i += 1;
        for action in actions {
            assert!(!rejected, "{action:?} after a rejection");
            match action {
                Action::Send(m) => match m.first() {
                    Some(1) => assert_eq!(m, hello),
                    Some(2) => assert_eq!(&m[1..], KEY),
                    Some(3) => assert_eq!(m.len(), 1),
                    _ => panic!("sent {m:?}"),
                },
                Action::Prepare { .. } => prepared = true,
                Action::Finalize => {
                    assert!(prepared, "finalized without preparing");
                    prepared = false;
                }
                Action::Reject(_) => rejected = true,
            }
        }
    }
});
