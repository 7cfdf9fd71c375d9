//! One peer's built-in handshake, sans-IO: fed the peer's handshake messages and its
//! Connected events, it says what to send, when to prepare the streams, to finalize or to
//! reject. The worker (`run.rs`) carries that out with the node's API.

use std::sync::Arc;

use bytes::Bytes;

use super::{COMPLETE, HELLO, PUBKEY};

/// What the worker must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message on the `handshake` stream.
    Send(Bytes),
    /// `prepare_streams(peer, key, streams)`.
    Prepare {
        /// The peer's Ed25519 public key.
        key: [u8; 32],
        /// The names to prepare.
        streams: Arc<[String]>,
    },
    /// `finalize_handshake(peer)`.
    Finalize,
    /// Reject the peer (it is closed and kept out for the rejection cooldown).
    Reject(String),
}

/// One round of the exchange with one peer. A round ends when it is finalized; the next Hello
/// or Connected (a peer that restarted, or a new connection) starts a new one.
#[derive(Debug, Default)]
pub struct Machine {
    hello_sent: bool,
    /// The streams chosen by the check hook, once the peer's Hello passed it.
    accepted: Option<Arc<[String]>>,
    /// The peer's PubKey, once received (it may come before its Hello was checked).
    key: Option<[u8; 32]>,
    prepared: bool,
    /// The peer's Complete, once received (it may come before its PubKey).
    complete: bool,
    done: bool,
    rejected: bool,
}

impl Machine {
    /// Whether the round was finalized.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The peer became Connected (a new connection, or a restarted peer's new handshake):
    /// say Hello, unless this round already did.
    pub fn on_connected(&mut self, hello: &Bytes) -> Vec<Action> {
        let mut out = Vec::new();
        if self.rejected {
            return out;
        }
        if self.done {
            *self = Self::default();
        }
        self.say_hello(hello, &mut out);
        out
    }

    /// A message of the peer on the `handshake` stream. `check` judges its Hello payload and
    /// returns the streams to prepare, or why the peer is rejected.
    pub fn on_message(
        &mut self,
        msg: &[u8],
        hello: &Bytes,
        public_key: &[u8; 32],
        check: impl FnOnce(&[u8]) -> Result<Arc<[String]>, String>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        if self.rejected {
            return out;
        }
        match msg.first() {
            Some(&HELLO) => {
                if self.done {
                    // A new round: the peer restarted, or lost its state.
                    *self = Self::default();
                }
                if self.accepted.is_some() {
                    // A duplicate in this round (a race of events): our PubKey again, never our
                    // Hello again (two nodes answering Hellos with Hellos would loop).
                    out.push(Action::Send(pubkey(public_key)));
                    return out;
                }
                match check(&msg[1..]) {
                    Ok(streams) => self.accepted = Some(streams),
                    Err(reason) => return self.reject(reason),
                }
                // Our Hello always goes before our PubKey.
                self.say_hello(hello, &mut out);
                out.push(Action::Send(pubkey(public_key)));
                self.advance(&mut out);
            }
            Some(&PUBKEY) => {
                let Ok(key) = <[u8; 32]>::try_from(&msg[1..]) else {
                    return self.reject(format!("a PubKey of {} bytes, not 32", msg.len() - 1));
                };
                if self.done {
                    return out; // a duplicate of the round done
                }
                match self.key {
                    Some(k) if k != key => {
                        return self.reject("a second PubKey, with another key".into());
                    }
                    Some(_) => return out, // a duplicate
                    None => self.key = Some(key),
                }
                self.advance(&mut out);
            }
            Some(&COMPLETE) => {
                if !self.done {
                    self.complete = true;
                    self.advance(&mut out);
                }
            }
            Some(tag) => {
                return self.reject(format!("an unknown handshake message (tag {tag})"));
            }
            None => return self.reject("an empty handshake message".into()),
        }
        out
    }

    fn say_hello(&mut self, hello: &Bytes, out: &mut Vec<Action>) {
        if !self.hello_sent {
            self.hello_sent = true;
            out.push(Action::Send(hello.clone()));
        }
    }

    /// Prepares once the Hello passed and the key is here; finalizes once prepared and the
    /// peer's Complete is here (it may have come first).
    fn advance(&mut self, out: &mut Vec<Action>) {
        if !self.prepared
            && let (Some(streams), Some(key)) = (&self.accepted, self.key)
        {
            self.prepared = true;
            out.push(Action::Prepare {
                key,
                streams: streams.clone(),
            });
            out.push(Action::Send(Bytes::from_static(&[COMPLETE])));
        }
        if self.prepared && self.complete && !self.done {
            self.done = true;
            out.push(Action::Finalize);
        }
    }

    fn reject(&mut self, reason: String) -> Vec<Action> {
        self.rejected = true;
        vec![Action::Reject(reason)]
    }
}

/// `[2] ‖ key`.
fn pubkey(key: &[u8; 32]) -> Bytes {
    let mut m = Vec::with_capacity(33);
    m.push(PUBKEY);
    m.extend_from_slice(key);
    m.into()
}
