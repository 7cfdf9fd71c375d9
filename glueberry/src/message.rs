//! Messages received from peers, and the queues the application takes them from.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use libp2p::PeerId;

use crate::inbox::{Inbox, LaneId};

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

/// How soon a stream's messages reach the application, set per stream name with
/// [`Config::with_stream_priority`](crate::Config::with_stream_priority).
///
/// Among the messages waiting in one queue ([`Node::messages`](crate::Node::messages) or a
/// [`Node::messages_for`](crate::Node::messages_for) queue), classes take turns by weight: of
/// 11 messages taken while every class has some waiting, 8 are `High`, 2 `Normal` and 1 `Low`.
/// A `High` message therefore waits behind at most 3 others of lower classes, and lower classes
/// still move under a flood of `High` ones. `High` streams (and the handshake stream, always
/// `High`) may also use the part of the memory budgets kept back from bulk streams
/// (docs/concurrency.md, "Receiving").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Votes, proposals, handshakes: small and urgent.
    High = 0,
    /// The default.
    #[default]
    Normal = 1,
    /// Bulk transfers (block sync, snapshots).
    Low = 2,
}

impl Priority {
    pub(crate) fn from_index(i: usize) -> Self {
        match i {
            0 => Self::High,
            1 => Self::Normal,
            _ => Self::Low,
        }
    }
}

/// The queue has closed: the node shut down and every message in it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message queue is closed (the node shut down)")]
pub struct Closed;

/// Why [`Messages::try_recv`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No message waits now; try again later.
    #[error("no message waiting")]
    Empty,
    /// The node shut down and every message was taken; retrying does not help.
    #[error("the message queue is closed (the node shut down)")]
    Closed,
}

/// A queue of received messages, from [`Node::messages`](crate::Node::messages) (every stream
/// not received apart) or [`Node::messages_for`](crate::Node::messages_for) (one stream).
///
/// Clone it and receive from as many tasks as you like: each message goes to exactly one of
/// them. Peers are served in turn, one message each, and stream classes by
/// [`Priority`]; the messages of one (peer, stream) keep their order. The queue is bounded in
/// bytes by the node's memory budgets: when nobody receives, the stream readers stop reading
/// and the peers' sends wait; nothing is dropped. It closes after
/// [`Node::shutdown`](crate::Node::shutdown), once drained. It is also a
/// [`futures::Stream`].
#[derive(Clone)]
pub struct Messages {
    lane: Arc<LaneRef>,
}

impl std::fmt::Debug for Messages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Messages")
            .field("stream", &self.lane.stream)
            .field("len", &self.len())
            .finish()
    }
}

/// One lane, held by every clone of its `Messages`. When the last clone of a stream's own
/// queue goes, the stream goes back to the default queue with what waits in it.
pub(crate) struct LaneRef {
    pub(crate) inbox: Arc<Inbox>,
    pub(crate) lane: LaneId,
    pub(crate) stream: Option<Arc<str>>,
}

impl Drop for LaneRef {
    fn drop(&mut self) {
        if let Some(stream) = &self.stream {
            self.inbox.lane_dropped(stream);
        }
    }
}

impl Messages {
    pub(crate) fn new(lane: Arc<LaneRef>) -> Self {
        Self { lane }
    }

    /// The next message: waits for one.
    ///
    /// # Errors
    ///
    /// [`Closed`] once the node has shut down and every message of this queue was taken.
    pub async fn recv(&self) -> Result<IncomingMessage, Closed> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next message, if one waits now.
    ///
    /// # Errors
    ///
    /// [`TryRecvError::Empty`] when none waits, [`TryRecvError::Closed`] once the node has shut
    /// down and every message was taken.
    pub fn try_recv(&self) -> Result<IncomingMessage, TryRecvError> {
        match self.lane.inbox.pop(self.lane.lane, None) {
            Poll::Ready(Ok(m)) => Ok(m),
            Poll::Ready(Err(Closed)) => Err(TryRecvError::Closed),
            Poll::Pending => Err(TryRecvError::Empty),
        }
    }

    /// Polls for the next message (what [`recv`](Self::recv) awaits).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<IncomingMessage, Closed>> {
        self.lane.inbox.pop(self.lane.lane, Some(cx))
    }

    /// Messages waiting in this queue now.
    pub fn len(&self) -> usize {
        self.lane.inbox.len(self.lane.lane)
    }

    /// Whether no message waits in this queue now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl futures::Stream for Messages {
    type Item = IncomingMessage;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<IncomingMessage>> {
        self.poll_recv(cx).map(Result::ok)
    }
}
