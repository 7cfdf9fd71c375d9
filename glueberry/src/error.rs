//! The errors the node's methods return.

use libp2p::PeerId;

pub use crate::config::ConfigError;
pub use crate::crypto::KeyError;
use crate::peer::State;
pub use crate::wire::NameError;

/// Everything a [`Node`](crate::Node) method can fail with. Each variant says what happened;
/// [`Error::is_retriable`] says whether trying again later can help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// `Node::new` was called outside a tokio runtime.
    #[error("glueberry needs a tokio runtime: call Node::new from inside one")]
    NoRuntime,
    /// Building the libp2p transport failed.
    #[error("building the libp2p transport failed: {0}")]
    Transport(String),
    /// The address book cannot be opened or written: locked by another process, too large,
    /// of an unknown version, or an I/O error (the source says which).
    #[error(transparent)]
    AddressBook(std::sync::Arc<crate::book::BookError>),
    /// The method needs `start()` first.
    #[error("node is not started")]
    NotStarted,
    /// `start()` was already called.
    #[error("node is already started")]
    AlreadyStarted,
    /// `shutdown()` was called; the node does nothing more.
    #[error("node is shut down")]
    Shutdown,
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: libp2p::Multiaddr,
        /// What libp2p said.
        reason: String,
    },
    /// The peer is not in the address book.
    #[error("peer {0} is not in the address book; add_peer it first")]
    UnknownPeer(PeerId),
    /// The peer is blacklisted.
    #[error("peer {0} is blacklisted")]
    Blacklisted(PeerId),
    /// The peer has no connection.
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    /// The operation does not fit the peer's connection state.
    #[error("peer {peer} is {state}: cannot {operation}")]
    InvalidState {
        /// The peer.
        peer: PeerId,
        /// Its state.
        state: State,
        /// What was attempted.
        operation: &'static str,
    },
    /// Dialling the peer failed.
    #[error("dialling {peer} failed: {reason}")]
    Dial {
        /// The peer.
        peer: PeerId,
        /// What libp2p said.
        reason: String,
    },
    /// The stream name is not valid.
    #[error("stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The name.
        name: String,
        /// Why.
        reason: NameError,
    },
    /// `prepare_streams` was given no stream names.
    #[error("no stream names given")]
    NoStreams,
    /// The stream was not prepared for this peer with `prepare_streams`.
    #[error("stream {stream:?} is not prepared for peer {peer}")]
    StreamNotPrepared {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
    },
    /// Opening the libp2p stream failed (the peer may not have prepared the name yet).
    #[error("opening stream {stream:?} to {peer} failed: {reason}")]
    OpenStream {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
        /// What libp2p said.
        reason: String,
    },
    /// The stream closed while the message was queued.
    #[error("stream {stream:?} to {peer} is closed")]
    StreamClosed {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
    },
    /// [`Node::send_written`](crate::Node::send_written): the message was queued but never
    /// written: its stream failed or closed, or the peer's connection went, first. It is
    /// counted in `dropped.stream_closed`; sending it again cannot duplicate it.
    #[error("message to {peer} on {stream:?} was not written: its stream closed first")]
    NotWritten {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
    },
    /// The message is larger than `max_message_size` (or, on the handshake stream,
    /// `max_handshake_message_size`).
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// Its size, in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The deadline passed while waiting for room in the stream's send queue.
    #[error("send to {peer} on {stream:?} timed out waiting for queue room (backpressure)")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
    },
    /// `try_send` on a stream that has no writer yet: `send` opens it.
    #[error("stream {stream:?} to {peer} is not open yet; send opens it")]
    StreamNotOpen {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
    },
    /// The stream's send queue is full (`try_send`).
    #[error("send queue to {peer} on {stream:?} is full")]
    QueueFull {
        /// The peer.
        peer: PeerId,
        /// The stream name.
        stream: String,
    },
    /// The public key is not a usable Ed25519 key.
    #[error("invalid public key for {peer}: {reason}")]
    InvalidPublicKey {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: KeyError,
    },
    /// The public key does not belong to the peer's `PeerId`.
    #[error("public key does not match peer {peer} (it belongs to {actual})")]
    PublicKeyMismatch {
        /// The peer the key was given for.
        peer: PeerId,
        /// The `PeerId` the key does give.
        actual: PeerId,
    },
    /// Address-book metadata is larger than `max_metadata_size`.
    #[error("metadata of {size} bytes exceeds the maximum of {max} bytes")]
    MetadataTooLarge {
        /// Its size (keys and values), in bytes.
        size: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The peer is banned until `until` (its score fell to the ban threshold,
    /// docs/scoring.md); retriable after that.
    #[error("peer {peer} is banned for {}s more", until.duration_since(std::time::SystemTime::now()).unwrap_or_default().as_secs())]
    Banned {
        /// The peer.
        peer: PeerId,
        /// When the ban ends.
        until: std::time::SystemTime,
    },
    /// The address names no peer: [`Node::dial`](crate::Node::dial) needs one ending in
    /// `/p2p/<peer id>`.
    #[error("{0} names no peer: end it with /p2p/<peer id>")]
    NoPeerId(libp2p::Multiaddr),
}

impl Error {
    /// Whether the same call may succeed later without the caller changing anything:
    /// timeouts, full queues, a stream not opened yet (`try_send`), failed dials, a peer not
    /// connected (it may connect or reconnect), streams that closed or could not be opened, a
    /// message not written, and a ban (after it ends).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::QueueFull { .. }
                | Error::StreamNotOpen { .. }
                | Error::Dial { .. }
                | Error::OpenStream { .. }
                | Error::StreamClosed { .. }
                | Error::NotWritten { .. }
                | Error::Banned { .. }
                | Error::NotConnected(_)
        )
    }
}

/// The result of a node method.
pub type Result<T, E = Error> = std::result::Result<T, E>;
