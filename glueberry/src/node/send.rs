//! Sending: the queueing fast path, the waiting path, limits.

use super::*;
use crate::stream::Outgoing;

impl Node {
    /// Sends `data` to `peer` on stream `stream` (`"handshake"` for the unencrypted handshake
    /// stream). Returns once the message is queued on the stream's writer; waits while the
    /// queue is full (backpressure). Opens the stream if it is the first message on it.
    ///
    /// ```no_run
    /// # async fn f(node: glueberry::Node, peer: glueberry::PeerId) -> glueberry::Result<()> {
    /// use std::time::Duration;
    ///
    /// node.send(peer, "consensus", b"prevote".to_vec()).await?;
    /// // Give up after 100 ms if the peer is not reading (the error is retriable).
    /// if let Err(e) = node
    ///     .send_timeout(peer, "mempool", vec![0u8; 256], Duration::from_millis(100))
    ///     .await
    /// {
    ///     assert!(e.is_retriable());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// - [`Error::NotConnected`] (retriable): the peer has no connection;
    /// - [`Error::StreamNotPrepared`]: an encrypted stream not prepared for this peer;
    /// - [`Error::InvalidStreamName`], [`Error::MessageTooLarge`] (`max_message_size`, or
    ///   `max_handshake_message_size` on the handshake stream): bugs of the caller;
    /// - [`Error::OpenStream`] (retriable): the peer did not accept the stream;
    /// - [`Error::StreamClosed`] (retriable): the stream closed twice while queueing;
    /// - [`Error::NotStarted`], [`Error::Shutdown`].
    pub async fn send(&self, peer: PeerId, stream: &str, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        let span = tracing::debug_span!("glueberry.send", %peer, stream, len = data.len());
        // Most sends find the stream open and room in its queue: they queue without waiting.
        let msg = match span.in_scope(|| self.queue_now(peer, stream, Outgoing::new(data))) {
            Ok(()) => return Ok(()),
            Err(msg) => msg,
        };
        self.send_inner(peer, stream, msg, None)
            .instrument(span)
            .await
    }

    /// Sends `data` to `peer` on `stream` and returns once it is written to the transport (the
    /// muxer's stream: yamux or QUIC), as Go Glueberry's `Send` does; [`send`](Self::send)
    /// returns once it is queued. Waits while the queue is full, as `send` does. Written means
    /// handed to the connection, not read by the peer: a connection lost right after may still
    /// lose it (docs/concurrency.md, "Delivery accounting").
    ///
    /// Dropping the future after the message was queued does not take it back.
    ///
    /// # Errors
    ///
    /// - [`Error::NotWritten`] (retriable): queued, but its stream closed or the connection went
    ///   before it was written; counted in `dropped.stream_closed`; [`Error::Shutdown`] instead
    ///   when the node shut down first;
    /// - every error of [`send`](Self::send): [`Error::NotConnected`],
    ///   [`Error::StreamNotPrepared`], [`Error::InvalidStreamName`],
    ///   [`Error::MessageTooLarge`], [`Error::OpenStream`], [`Error::StreamClosed`],
    ///   [`Error::NotStarted`], [`Error::Shutdown`].
    pub async fn send_written(
        &self,
        peer: PeerId,
        stream: &str,
        data: impl Into<Bytes>,
    ) -> Result<()> {
        let data = data.into();
        let span = tracing::debug_span!("glueberry.send", %peer, stream, len = data.len());
        let (tx, rx) = oneshot::channel();
        let mut msg = Outgoing::new(data);
        msg.ack = Some(tx);
        // Queued at once, or given back to queue by the waiting path.
        if let Err(msg) = span.in_scope(|| self.queue_now(peer, stream, msg)) {
            self.send_inner(peer, stream, msg, None)
                .instrument(span)
                .await?;
        }
        // Writers end at the latest when the node does, so this ends.
        rx.await.map_err(|_| {
            if self.shared().closing.is_cancelled() {
                Error::Shutdown
            } else {
                Error::NotWritten {
                    peer,
                    stream: stream.to_owned(),
                }
            }
        })
    }

    /// Queues `data` if that needs no waiting and no stream opening, and gives it back
    /// otherwise (including every error case: [`send_inner`](Self::send_inner) then tells
    /// which error it is). What `send` does for most messages: one short lock, no await.
    fn queue_now(
        &self,
        peer: PeerId,
        name: &str,
        msg: Outgoing,
    ) -> std::result::Result<(), Outgoing> {
        let shared = self.shared();
        if msg.data.len() > shared.config.max_message_size_for(name) {
            return Err(msg);
        }
        let Some(slot) = shared.sessions.ready_slot(&peer, name) else {
            return Err(msg);
        };
        let Some(writer) = slot.cell.get() else {
            return Err(msg);
        };
        if !writer.try_place(&slot.stats) {
            return Err(msg);
        }
        let len = msg.data.len();
        match writer.tx.try_send(msg) {
            Ok(()) => {
                slot.stats.sent(len);
                Ok(())
            }
            Err(e) => {
                writer.unplace(&slot.stats);
                Err(match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                })
            }
        }
    }

    /// [`send`](Self::send), giving up with [`Error::Timeout`] (retriable) if the message is
    /// not queued within `timeout`.
    ///
    /// # Errors
    ///
    /// Those of [`send`](Self::send), and [`Error::Timeout`] (retriable) when the queue had no room
    /// within `timeout`.
    pub async fn send_timeout(
        &self,
        peer: PeerId,
        stream: &str,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<()> {
        let data = data.into();
        let span = tracing::debug_span!("glueberry.send", %peer, stream, len = data.len());
        let msg = Outgoing::new(data);
        self.send_inner(peer, stream, msg, Some(Instant::now() + timeout))
            .instrument(span)
            .await
    }

    /// Queues `data` at once, or fails at once: [`Error::QueueFull`] when the stream's queue
    /// is at its high watermark, [`Error::StreamNotOpen`] when the node has no stream to write
    /// on for (peer, name) yet, or no more (it closed): call [`send`](Self::send), which opens
    /// one. A stream the peer opened counts. Both errors are retriable.
    ///
    /// # Errors
    ///
    /// - [`Error::QueueFull`] (retriable): the queue is at its high watermark;
    /// - [`Error::StreamNotOpen`] (retriable): no stream to write on yet; `send` opens one;
    /// - [`Error::StreamClosed`] (retriable): the stream just closed;
    /// - [`Error::NotConnected`], [`Error::StreamNotPrepared`], [`Error::InvalidStreamName`],
    ///   [`Error::MessageTooLarge`], [`Error::NotStarted`], [`Error::Shutdown`], as for
    ///   [`send`](Self::send).
    pub fn try_send(&self, peer: PeerId, stream: &str, data: impl Into<Bytes>) -> Result<()> {
        self.check_running()?;
        let data = data.into();
        self.check_message(stream, &data)?;
        let route = self.shared().sessions.route(&peer, stream)?;
        let Some(writer) = route.slot.cell.get() else {
            return Err(Error::StreamNotOpen {
                peer,
                stream: stream.to_owned(),
            });
        };
        let full = || Error::QueueFull {
            peer,
            stream: stream.to_owned(),
        };
        let stats = &route.slot.stats;
        if !writer.try_place(stats) {
            return Err(full());
        }
        let len = data.len();
        match writer.tx.try_send(Outgoing::new(data)) {
            Ok(()) => {
                stats.sent(len);
                Ok(())
            }
            Err(e) => {
                writer.unplace(stats);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(full()),
                    mpsc::error::TrySendError::Closed(_) => {
                        self.shared()
                            .sessions
                            .invalidate(&peer, &route.name, &route.slot);
                        Err(Error::StreamClosed {
                            peer,
                            stream: stream.to_owned(),
                        })
                    }
                }
            }
        }
    }

    fn check_message(&self, name: &str, data: &Bytes) -> Result<()> {
        if name != HANDSHAKE {
            wire::protocol::validate_name(name, self.shared().config.max_stream_name_length)
                .map_err(|reason| Error::InvalidStreamName {
                    name: name.to_owned(),
                    reason,
                })?;
        }
        let max = self.shared().config.max_message_size_for(name);
        if data.len() > max {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max,
            });
        }
        Ok(())
    }

    async fn send_inner(
        &self,
        peer: PeerId,
        name: &str,
        msg: Outgoing,
        deadline: Option<Instant>,
    ) -> Result<()> {
        self.check_running()?;
        self.check_message(name, &msg.data)?;
        let queue = self.queue(peer, name, msg);
        let token = &self.shared().closing;
        let r = tokio::select! {
            biased;
            _ = token.cancelled() => Err(Error::Shutdown),
            r = async {
                match deadline {
                    None => queue.await,
                    Some(d) => tokio::time::timeout_at(d, queue).await.unwrap_or_else(|_| {
                        Err(Error::Timeout { peer, stream: name.to_owned() })
                    }),
                }
            } => r,
        };
        r
    }

    /// Queues `data` on the writer of (peer, name), opening the stream first if needed. If the
    /// writer turns out to be gone (its stream closed), tries once more on a fresh stream: the
    /// message was not queued, so nothing is sent twice.
    async fn queue(&self, peer: PeerId, name: &str, msg: Outgoing) -> Result<()> {
        let shared = self.shared();
        let mut data = msg;
        let len = data.data.len();
        for attempt in 0..2 {
            let route = shared.sessions.route(&peer, name)?;
            let writer = route
                .slot
                .cell
                .get_or_try_init(|| stream::open(shared, peer, &route))
                .await?
                .clone();
            let stats = &route.slot.stats;
            writer.place(stats).await;
            // With a gate the queue has room for every place the gate gives, so the message
            // goes in without waiting: no await between taking a place and queueing, and a
            // cancelled send never holds a place.
            let queued = match &writer.gate {
                Some(_) => writer.tx.try_send(data).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                }),
                None => writer.tx.send(data).await.map_err(|e| e.0),
            };
            match queued {
                Ok(()) => {
                    stats.sent(len);
                    return Ok(());
                }
                Err(back) => {
                    writer.unplace(stats);
                    shared.sessions.invalidate(&peer, &route.name, &route.slot);
                    data = back;
                    tracing::debug!(%peer, stream = name, attempt, "writer gone, reopening");
                }
            }
        }
        Err(Error::StreamClosed {
            peer,
            stream: name.to_owned(),
        })
    }
}

/// Who [`Node::broadcast`] sends to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Every peer Established when the broadcast starts.
    Established,
    /// These peers (each once, in this order).
    Peers(Vec<PeerId>),
}

impl Node {
    /// Sends `data` on `stream` to each of `to`, all at once, and returns each peer's outcome
    /// (in the order of `to`; for [`Recipients::Established`], by `PeerId`). Each peer's send
    /// is a [`send`](Self::send) of its own, given up after `timeout` with [`Error::Timeout`]:
    /// a peer whose queue is full delays no other peer's message, only this call's return, by
    /// at most `timeout`. `Ok` means queued, as for `send`. The payload is shared, not copied;
    /// each peer's copy is encrypted by its own writer.
    ///
    /// # Errors
    ///
    /// None for the call itself; each peer's result carries [`send`](Self::send)'s errors and
    /// [`Error::Timeout`] (retriable). [`Error::Shutdown`] and [`Error::NotStarted`] show in
    /// every result.
    ///
    /// ```no_run
    /// # async fn f(node: glueberry::Node) {
    /// use std::time::Duration;
    /// use glueberry::Recipients;
    ///
    /// let results = node
    ///     .broadcast(Recipients::Established, "votes", b"prevote".to_vec(), Duration::from_millis(200))
    ///     .await;
    /// for (peer, r) in results {
    ///     if let Err(e) = r {
    ///         eprintln!("vote to {peer} not queued: {e}");
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn broadcast(
        &self,
        to: Recipients,
        stream: &str,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Vec<(PeerId, Result<()>)> {
        let data = data.into();
        let peers = match to {
            Recipients::Established => self.established_peers(),
            Recipients::Peers(mut p) => {
                let mut seen = std::collections::HashSet::new();
                p.retain(|peer| seen.insert(*peer));
                p
            }
        };
        let span = tracing::debug_span!(
            "glueberry.broadcast",
            stream,
            len = data.len(),
            peers = peers.len()
        );
        let sends = peers.iter().map(|&peer| {
            let data = data.clone();
            async move {
                // The fast path first, as `send` does; the waiting path with the deadline.
                let r = match self.queue_now(peer, stream, Outgoing::new(data)) {
                    Ok(()) => Ok(()),
                    Err(msg) => {
                        self.send_inner(peer, stream, msg, Some(Instant::now() + timeout))
                            .await
                    }
                };
                (peer, r)
            }
        });
        futures::future::join_all(sends).instrument(span).await
    }
}
