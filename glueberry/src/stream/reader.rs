//! The reader task of one stream: frames in, decrypted messages out to the shared queue.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use futures::StreamExt as _;
use futures::io::{ReadHalf, WriteHalf};
use libp2p::{PeerId, Stream};
use tokio_util::codec::FramedRead;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;
use tokio_util::sync::CancellationToken;

use super::{Ids, Slot};
use crate::crypto::Cipher;
use crate::event::{Event, StreamFault};
use crate::message::IncomingMessage;
use crate::shared::Shared;
use crate::stats::StreamCounters;
use crate::telemetry as m;
use crate::wire::{DecodeError, Decoder};

/// Why a reader stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The remote closed its side.
    Eof,
    /// The node or the peer's session ended, or the writer reset the stream.
    Cancelled,
    /// The peer broke the framing or sent too many bad bodies: the stream is reset.
    Reset,
    /// The message queue closed (shutdown).
    QueueClosed,
    /// Reading failed (the stream or connection was reset or closed under us).
    Io,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    shared: Arc<Shared>,
    ids: Ids,
    name: Arc<str>,
    cipher: Option<Arc<Cipher>>,
    read: ReadHalf<Stream>,
    stats: Arc<StreamCounters>,
    token: CancellationToken,
    _done: tokio_util::sync::DropGuard,
    slot: Option<Weak<Slot>>,
    idle_write: Option<WriteHalf<Stream>>,
) {
    let peer = ids.peer;
    let mut frames = FramedRead::new(read.compat(), Decoder::new(shared.max_frame_len()));
    let max = shared.config.max_message_size;
    let mut failures: u32 = 0;
    let end = loop {
        let item = tokio::select! {
            biased;
            _ = token.cancelled() => break End::Cancelled,
            item = frames.next() => item,
        };
        let mut body = match item {
            None => break End::Eof,
            Some(Err(DecodeError::Io(e))) => {
                tracing::debug!(%peer, stream = &*name, error = %e, "stream read failed");
                break End::Io;
            }
            Some(Err(e)) => {
                stats.malformed();
                fault(&shared, peer, &name, e.to_string(), true);
                break End::Reset;
            }
            Some(Ok(body)) => body,
        };
        let data = match &cipher {
            None => body.freeze(),
            Some(c) => match c.open_in_place(&mut body) {
                Ok(range) => body.freeze().slice(range),
                Err(e) => {
                    stats.decryption_failed();
                    failures += 1;
                    if too_many(&shared, failures) {
                        fault(&shared, peer, &name, e.to_string(), true);
                        break End::Reset;
                    }
                    fault(&shared, peer, &name, e.to_string(), false);
                    continue;
                }
            },
        };
        if data.len() > max {
            stats.oversized();
            failures += 1;
            let error = format!(
                "message of {} bytes exceeds the maximum of {max}",
                data.len()
            );
            if too_many(&shared, failures) {
                fault(&shared, peer, &name, error, true);
                break End::Reset;
            }
            fault(&shared, peer, &name, error, false);
            continue;
        }
        let len = data.len();
        let received_at = SystemTime::now();
        tracing::trace!(%peer, stream = &*name, len, "message received");
        let msg = IncomingMessage {
            peer,
            stream: name.clone(),
            data,
            received_at,
        };
        // Counted before it is queued, so that whoever receives it sees it counted.
        stats.received(len, received_at);
        // Waiting here is the backpressure: while the queue is full this stream is not read,
        // and the muxer's window stops the sender. Once shutdown began, a full queue no longer
        // holds the stream: the message is dropped (counted) and reading goes on to the end, so
        // that the peer's close is seen and the writers' drain is not held up.
        tokio::select! {
            biased;
            _ = token.cancelled() => {
                stats.undelivered();
                break End::Cancelled;
            }
            r = shared.messages.send(msg) => if r.is_err() {
                stats.undelivered();
                break End::QueueClosed;
            },
            _ = shared.closing.cancelled(), if shared.messages.is_full() => {
                stats.undelivered();
            }
        }
    };
    tracing::debug!(%peer, stream = &*name, ?end, "stream reader ended");
    stats.stream_closed();
    if end == End::Reset {
        // Stops the writer too; dropping both halves resets the stream.
        token.cancel();
    }
    if let Some(slot) = slot.and_then(|w| w.upgrade()) {
        // The stream we write on is gone or half-closed: the next send opens a new one.
        shared.sessions.invalidate(&peer, &name, &slot);
    }
    shared.sessions.reader_ended(&peer, &name, ids.session);
    drop(idle_write);
}

fn too_many(shared: &Shared, failures: u32) -> bool {
    shared
        .config
        .max_stream_failures
        .is_some_and(|max| failures >= max)
}

fn fault(shared: &Shared, peer: PeerId, stream: &str, error: String, reset: bool) {
    tracing::warn!(%peer, stream, %error, reset, "bad frame from peer");
    metrics::counter!(m::STREAM_FAULTS, "reset" => if reset { "true" } else { "false" })
        .increment(1);
    shared.emit(Event::StreamFault(StreamFault {
        peer,
        stream: stream.to_owned(),
        error,
        reset,
        at: SystemTime::now(),
    }));
}
