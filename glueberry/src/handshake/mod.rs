//! The built-in handshake: the byte-tag protocol of Go Glueberry's examples, run by the node
//! for every connected peer (docs/handshake.md).
//!
//! Each side sends three messages on the `handshake` stream, one tag byte first:
//!
//! | tag | message | body after the tag |
//! |---|---|---|
//! | `1` | Hello | the application's payload (a chain id, a version, a name: [`Config::new`]) |
//! | `2` | PubKey | the node's 32-byte Ed25519 public key |
//! | `3` | Complete | nothing |
//!
//! Both sides say Hello when the peer becomes Connected, so neither needs to know who dialled.
//! A Hello is judged by the application's check ([`Config::with_check`]); a Hello that passes
//! is answered with the PubKey (after our own Hello), a PubKey with `prepare_streams` and
//! Complete, the peer's Complete with `finalize_handshake`. Duplicates, a Complete before the
//! PubKey and a PubKey before the Hello was judged are handled; a rejected peer is closed and
//! kept out for `rejection_cooldown` ([`Node::reject_peer`](crate::Node::reject_peer)); a
//! handshake that does not finish within `handshake_timeout` ends as any other.
//!
//! It is opt-in ([`Config`](crate::Config)`::with_handshake`): without it, the application
//! runs its own protocol with `prepare_streams` and `finalize_handshake`. With it, the node
//! reads the `handshake` stream itself, and `messages()` never carries its messages.
//!
//! ```no_run
//! use glueberry::handshake::{self, Verdict};
//!
//! let hs = handshake::Config::new(b"chain-7".to_vec(), ["consensus", "mempool"])
//!     .with_check(|_peer, hello| {
//!         if hello == b"chain-7" {
//!             Verdict::Accept
//!         } else {
//!             Verdict::Reject(format!("wrong chain: {}", String::from_utf8_lossy(hello)))
//!         }
//!     });
//! # let config: glueberry::Config = todo!();
//! let config = config.with_handshake(hs);
//! ```

pub(crate) mod machine;
pub(crate) mod run;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use libp2p::PeerId;

/// Tag of a Hello message.
pub const HELLO: u8 = 1;
/// Tag of a PubKey message.
pub const PUBKEY: u8 = 2;
/// Tag of a Complete message.
pub const COMPLETE: u8 = 3;

/// What the application's check says of a peer's Hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on, and prepare the streams of the [`Config`].
    Accept,
    /// Go on, and prepare these streams for this peer instead.
    AcceptStreams(Vec<String>),
    /// Close the peer and keep it out for `rejection_cooldown`: subscribers see it in
    /// `Cooldown` with [`DisconnectReason::Rejected`](crate::DisconnectReason::Rejected) and
    /// this reason.
    Reject(String),
}

type Check = dyn Fn(PeerId, &[u8]) -> Verdict + Send + Sync;

/// The built-in handshake's settings: what this node says in its Hello, the streams to
/// prepare, and the check of the peer's Hello.
#[derive(Clone)]
pub struct Config {
    pub(crate) hello: Bytes,
    pub(crate) streams: Arc<[String]>,
    pub(crate) check: Arc<Check>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("handshake::Config")
            .field("hello", &self.hello)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Says `hello` (the payload after the tag byte: at most `max_handshake_message_size`
    /// minus one bytes, checked by [`Node::new`](crate::Node::new)) and prepares `streams`
    /// for every peer; accepts every Hello, as Go's examples do (see
    /// [`with_check`](Self::with_check) and [`require_same_hello`](Self::require_same_hello)).
    pub fn new<S: Into<String>>(
        hello: impl Into<Bytes>,
        streams: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            hello: hello.into(),
            streams: streams.into_iter().map(Into::into).collect(),
            check: Arc::new(|_, _| Verdict::Accept),
        }
    }

    /// Judges each peer's Hello payload (the bytes after the tag) with `check`. It runs on the
    /// peer's handshake task, so it must not block: a check that needs I/O belongs in an
    /// application handshake of its own (`prepare_streams`, `finalize_handshake`).
    #[must_use]
    pub fn with_check(
        mut self,
        check: impl Fn(PeerId, &[u8]) -> Verdict + Send + Sync + 'static,
    ) -> Self {
        self.check = Arc::new(check);
        self
    }

    /// Accepts only peers whose Hello payload is the same as ours (a chain id, a genesis
    /// hash), and rejects the others with a reason that shows both (lossy UTF-8).
    #[must_use]
    pub fn require_same_hello(self) -> Self {
        let ours = self.hello.clone();
        self.with_check(move |_, theirs| {
            if theirs == &ours[..] {
                Verdict::Accept
            } else {
                Verdict::Reject(format!(
                    "the peer says {:?}, we say {:?}",
                    String::from_utf8_lossy(theirs),
                    String::from_utf8_lossy(&ours)
                ))
            }
        })
    }

    /// The Hello payload.
    pub fn hello(&self) -> &Bytes {
        &self.hello
    }

    /// The streams prepared for a peer whose Hello is accepted with [`Verdict::Accept`].
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// The whole Hello message: the tag, then the payload.
    pub(crate) fn hello_message(&self) -> Bytes {
        let mut m = Vec::with_capacity(1 + self.hello.len());
        m.push(HELLO);
        m.extend_from_slice(&self.hello);
        m.into()
    }

    /// The check, as the machine takes it.
    pub(crate) fn judge(&self, peer: PeerId, hello: &[u8]) -> Result<Arc<[String]>, String> {
        match (self.check)(peer, hello) {
            Verdict::Accept => Ok(self.streams.clone()),
            Verdict::AcceptStreams(s) => Ok(s.into()),
            Verdict::Reject(reason) => Err(reason),
        }
    }
}
