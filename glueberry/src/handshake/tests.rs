use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use super::machine::{Action, Machine};
use super::{COMPLETE, HELLO, PUBKEY};

const KEY_A: [u8; 32] = [0xAA; 32];
const KEY_B: [u8; 32] = [0xBB; 32];

fn streams() -> Arc<[String]> {
    vec!["consensus".to_owned()].into()
}

fn hello(payload: &[u8]) -> Bytes {
    let mut m = vec![HELLO];
    m.extend_from_slice(payload);
    m.into()
}

type Judge = fn(&[u8]) -> Result<Arc<[String]>, String>;

fn accept(_: &[u8]) -> Result<Arc<[String]>, String> {
    Ok(streams())
}

/// One side of a simulated exchange: its machine, what it did, its inbox.
struct Side {
    machine: Machine,
    key: [u8; 32],
    hello: Bytes,
    inbox: VecDeque<Bytes>,
    prepared: Vec<[u8; 32]>,
    finalized: usize,
    finalized_before_prepared: bool,
    rejected: Vec<String>,
}

impl Side {
    fn new(key: [u8; 32], payload: &[u8]) -> Self {
        Self {
            machine: Machine::default(),
            key,
            hello: hello(payload),
            inbox: VecDeque::new(),
            prepared: Vec::new(),
            finalized: 0,
            finalized_before_prepared: false,
            rejected: Vec::new(),
        }
    }

    /// Carries out `actions`; returns what it sends to the other side.
    fn apply(&mut self, actions: Vec<Action>) -> Vec<Bytes> {
        let mut sent = Vec::new();
        for a in actions {
            match a {
                Action::Send(m) => sent.push(m),
                Action::Prepare { key, .. } => self.prepared.push(key),
                Action::Finalize => {
                    if self.prepared.is_empty() {
                        self.finalized_before_prepared = true;
                    }
                    self.finalized += 1;
                }
                Action::Reject(r) => self.rejected.push(r),
            }
        }
        sent
    }

    fn connected(&mut self) -> Vec<Bytes> {
        let a = self.machine.on_connected(&self.hello);
        self.apply(a)
    }

    fn receive(&mut self, check: Judge) -> Vec<Bytes> {
        let m = self.inbox.pop_front().expect("a message");
        let key = self.key;
        let a = self.machine.on_message(&m, &self.hello, &key, check);
        self.apply(a)
    }
}

#[test]
fn the_messages_are_go_s_byte_tags() {
    let mut m = Machine::default();
    let h = hello(b"chain-7");
    assert_eq!(m.on_connected(&h), vec![Action::Send(h.clone())]);
    assert_eq!(&h[..], b"\x01chain-7");
    // The peer's Hello: our PubKey (our Hello went already).
    let out = m.on_message(b"\x01chain-7", &h, &KEY_A, accept);
    let mut pubkey = vec![PUBKEY];
    pubkey.extend_from_slice(&KEY_A);
    assert_eq!(out, vec![Action::Send(pubkey.into())]);
    // Its PubKey: prepare, then Complete (`03`).
    let mut theirs = vec![PUBKEY];
    theirs.extend_from_slice(&KEY_B);
    let out = m.on_message(&theirs, &h, &KEY_A, accept);
    assert_eq!(
        out,
        vec![
            Action::Prepare {
                key: KEY_B,
                streams: streams()
            },
            Action::Send(Bytes::from_static(&[COMPLETE])),
        ]
    );
    assert_eq!(
        m.on_message(&[COMPLETE], &h, &KEY_A, accept),
        vec![Action::Finalize]
    );
    assert!(m.is_done());
}

#[test]
fn a_hello_the_check_refuses_is_rejected_and_no_key_is_sent() {
    let mut m = Machine::default();
    let h = hello(b"chain-7");
    let out = m.on_message(b"\x01chain-8", &h, &KEY_A, |_| Err("wrong chain".into()));
    assert_eq!(out, vec![Action::Reject("wrong chain".into())]);
    // Nothing more is done for that peer.
    assert!(m.on_message(&[COMPLETE], &h, &KEY_A, accept).is_empty());
    assert!(m.on_connected(&h).is_empty());
}

#[test]
fn a_complete_before_the_pubkey_finalizes_right_after_preparing() {
    let mut m = Machine::default();
    let h = hello(b"");
    m.on_message(b"\x01", &h, &KEY_A, accept);
    assert!(m.on_message(&[COMPLETE], &h, &KEY_A, accept).is_empty());
    let mut theirs = vec![PUBKEY];
    theirs.extend_from_slice(&KEY_B);
    let out = m.on_message(&theirs, &h, &KEY_A, accept);
    assert!(matches!(out[0], Action::Prepare { .. }));
    assert_eq!(out[2], Action::Finalize);
}

#[test]
fn a_pubkey_before_the_hello_waits_for_the_check() {
    let mut m = Machine::default();
    let h = hello(b"");
    let mut theirs = vec![PUBKEY];
    theirs.extend_from_slice(&KEY_B);
    assert!(m.on_message(&theirs, &h, &KEY_A, accept).is_empty());
    let out = m.on_message(b"\x01", &h, &KEY_A, accept);
    // Hello, PubKey, then prepare and Complete.
    assert_eq!(out.len(), 4);
    assert!(matches!(out[2], Action::Prepare { key: KEY_B, .. }));
}

#[test]
fn duplicates_are_tolerated_and_never_answered_with_a_second_hello() {
    let mut m = Machine::default();
    let h = hello(b"");
    m.on_connected(&h);
    m.on_message(b"\x01", &h, &KEY_A, accept);
    // A second Hello in the round: our PubKey again, not our Hello (two nodes would loop).
    let out = m.on_message(b"\x01", &h, &KEY_A, accept);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], Action::Send(b) if b[0] == PUBKEY));
    let mut theirs = vec![PUBKEY];
    theirs.extend_from_slice(&KEY_B);
    assert_eq!(m.on_message(&theirs, &h, &KEY_A, accept).len(), 2);
    assert!(m.on_message(&theirs, &h, &KEY_A, accept).is_empty());
    assert_eq!(
        m.on_message(&[COMPLETE], &h, &KEY_A, accept),
        vec![Action::Finalize]
    );
    assert!(m.on_message(&[COMPLETE], &h, &KEY_A, accept).is_empty());
    // A second Connected of the same round (already done): a new round.
    assert_eq!(m.on_connected(&h), vec![Action::Send(h.clone())]);
}

#[test]
fn a_restarted_peer_s_hello_starts_a_new_round() {
    let mut m = Machine::default();
    let h = hello(b"");
    let mut theirs = vec![PUBKEY];
    theirs.extend_from_slice(&KEY_B);
    m.on_message(b"\x01", &h, &KEY_A, accept);
    m.on_message(&theirs, &h, &KEY_A, accept);
    m.on_message(&[COMPLETE], &h, &KEY_A, accept);
    assert!(m.is_done());
    let out = m.on_message(b"\x01", &h, &KEY_A, accept);
    assert_eq!(out.len(), 2, "Hello and PubKey again: {out:?}");
    assert!(!m.is_done());
}

#[test]
fn malformed_messages_are_rejected_with_a_reason() {
    let h = hello(b"");
    for (msg, reason) in [
        (&b""[..], "an empty handshake message"),
        (&b"\x09"[..], "an unknown handshake message (tag 9)"),
        (&b"\x02abc"[..], "a PubKey of 3 bytes, not 32"),
    ] {
        let mut m = Machine::default();
        assert_eq!(
            m.on_message(msg, &h, &KEY_A, accept),
            vec![Action::Reject(reason.into())]
        );
    }
    let mut m = Machine::default();
    let mut one = vec![PUBKEY];
    one.extend_from_slice(&KEY_B);
    let mut other = vec![PUBKEY];
    other.extend_from_slice(&[0xCC; 32]);
    m.on_message(&one, &h, &KEY_A, accept);
    assert!(matches!(
        &m.on_message(&other, &h, &KEY_A, accept)[..],
        [Action::Reject(_)]
    ));
}

proptest! {
    /// Two machines, each told Connected zero to two times at random points, with messages
    /// delivered in order per direction but interleaved at random: both prepare once with the
    /// other's key, then finalize once, and nothing is rejected.
    #[test]
    fn two_machines_always_finish_once(
        schedule in proptest::collection::vec(0u8..4, 0..64),
        a_connects in 0usize..3,
        b_connects in 1usize..3,
    ) {
        let mut a = Side::new(KEY_A, b"x");
        let mut b = Side::new(KEY_B, b"x");
        let (mut a_left, mut b_left) = (a_connects, b_connects);
        // The first Connected of one side starts it all (B's at least once).
        let mut steps = schedule.into_iter().chain(std::iter::repeat_n(4u8, 64));
        for _ in 0..256 {
            let step = steps.next().unwrap_or(4);
            match step {
                0 if a_left > 0 && a.finalized == 0 => {
                    a_left -= 1;
                    let m = a.connected();
                    b.inbox.extend(m);
                }
                1 if b_left > 0 && b.finalized == 0 => {
                    b_left -= 1;
                    let m = b.connected();
                    a.inbox.extend(m);
                }
                2 if !a.inbox.is_empty() => {
                    let m = a.receive(accept);
                    b.inbox.extend(m);
                }
                3 if !b.inbox.is_empty() => {
                    let m = b.receive(accept);
                    a.inbox.extend(m);
                }
                _ => {
                    // Drain in a fixed order once the schedule is spent.
                    if b_left > 0 && b.finalized == 0 {
                        b_left -= 1;
                        let m = b.connected();
                        a.inbox.extend(m);
                    } else if !a.inbox.is_empty() {
                        let m = a.receive(accept);
                        b.inbox.extend(m);
                    } else if !b.inbox.is_empty() {
                        let m = b.receive(accept);
                        a.inbox.extend(m);
                    }
                }
            }
        }
        prop_assert!(a.inbox.is_empty() && b.inbox.is_empty(), "still talking");
        for (side, other_key) in [(&a, KEY_B), (&b, KEY_A)] {
            prop_assert!(side.rejected.is_empty());
            prop_assert!(!side.finalized_before_prepared);
            prop_assert_eq!(side.finalized, 1);
            prop_assert!(!side.prepared.is_empty());
            prop_assert!(side.prepared.iter().all(|k| *k == other_key));
        }
    }
}
