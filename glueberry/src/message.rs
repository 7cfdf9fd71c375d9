//! Messages received from peers.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use libp2p::PeerId;

/// One message a peer sent, decrypted (or plain, on the handshake stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The sender.
    pub peer: PeerId,
    /// The stream name it came on (`"handshake"` for the handshake stream).
    pub stream: Arc<str>,
    /// The plaintext. It shares the receive buffer: no copy was made.
    pub data: Bytes,
    /// When the stream reader decoded it (messages that arrived together and were decoded in
    /// one go share the time).
    pub received_at: SystemTime,
}

/// The receiving end of the node's message queue, from [`Node::messages`](crate::Node::messages).
///
/// It is a bounded multi-consumer queue: clone it and receive from as many tasks as you like;
/// each message goes to exactly one of them. When nobody receives, stream readers stop reading
/// and the peers' sends wait: nothing is dropped. It closes after
/// [`Node::shutdown`](crate::Node::shutdown), once drained.
pub type Messages = async_channel::Receiver<IncomingMessage>;
