//! The reader task of one stream: frames in, decrypted messages out to the shared queue.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::io::ReadHalf;
use futures::{FutureExt as _, StreamExt as _};
use libp2p::{PeerId, Stream};
use tokio_util::codec::FramedRead;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

use super::link::{Ended, Link};
use super::{Ids, intake};
use crate::crypto::Cipher;
use crate::event::{Event, StreamFault};
use crate::inbox::{MESSAGE_OVERHEAD, Meter};
use crate::message::{IncomingMessage, Priority};
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
    /// The message queues closed (shutdown).
    QueueClosed,
    /// Reading failed (the stream or connection was reset or closed under us).
    Io,
}

/// Reads one stream until it ends. `link` is shared with whoever writes on the stream (see
/// `link`); `spare` is its id while the stream is kept as a spare.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    shared: Arc<Shared>,
    ids: Ids,
    name: Arc<str>,
    cipher: Option<Arc<Cipher>>,
    read: ReadHalf<Stream>,
    stats: Arc<StreamCounters>,
    link: Arc<Link>,
    spare: Option<u64>,
) {
    let peer = ids.peer;
    let token = link.token.clone();
    // What is read is charged to the peer first (`inbox`); a frame the peer started must be
    // complete within `frame_timeout` (`intake`).
    let class = shared.inbox.priority(&name);
    let meter = Meter::new(shared.inbox.clone(), peer, &name);
    let frame = intake::Frame::default();
    let mut frames = FramedRead::new(
        intake::Intake::new(
            read,
            frame.clone(),
            meter.clone(),
            shared.config.frame_timeout,
        )
        .compat(),
        intake::Measured::new(
            Decoder::new(shared.config.max_frame_len_for(&name)),
            frame.clone(),
        ),
    );
    let mut failures: u32 = 0;
    // Registered once for the reader's life, not once per frame.
    let cancelled = token.cancelled();
    tokio::pin!(cancelled);
    // Messages decoded from what has already arrived, handed to the queue together: the
    // consumer is woken once for them, not once per message.
    let mut batch: Vec<(IncomingMessage, usize)> = Vec::new();
    // The rate quota of (peer, name), if the stream has one (shared by its streams).
    let bucket = shared
        .config
        .stream_quotas
        .get(&*name)
        .map(|q| shared.sessions.quota(&peer, &name, *q));
    let end = loop {
        if let Some(bucket) = &bucket
            && let Some(at) = over_quota(&shared, peer, bucket, &stats)
        {
            // Over the quota: not read until back within it (the muxer pushes back).
            tokio::select! {
                biased;
                _ = &mut cancelled => break End::Cancelled,
                _ = tokio::time::sleep_until(at.into()) => {}
            }
            // Time the node spent not reading is not the peer's (a frame left half read in
            // the buffer would otherwise run out its `frame_timeout` meanwhile).
            frame.resume();
        }
        let (mut taken, mut taken_bytes) = (0u32, 0u64);
        let mut item = tokio::select! {
            biased;
            _ = &mut cancelled => break End::Cancelled,
            item = frames.next() => item,
        };
        let received_at = SystemTime::now();
        let mut stop = None;
        // Messages whose overhead is charged and that were not decoded yet (only while a batch
        // is being decoded: an idle reader holds none).
        let mut credits = 0;
        loop {
            match decode(
                &shared,
                &ids,
                &name,
                cipher.as_deref(),
                item,
                &mut failures,
                &stats,
            ) {
                Ok(Some(data)) => {
                    tracing::trace!(%peer, stream = &*name, len = data.len(), "message received");
                    let consumed = frame.take_consumed();
                    if credits == 0 {
                        // What is decoded goes first: its messages may be what the wait
                        // below is for.
                        if let Err(end) = deliver(&shared, peer, class, &mut batch, &stats) {
                            meter.release(consumed, 0);
                            not_delivered(&stats, &data, received_at);
                            stop = Some(end);
                            break;
                        }
                        // Room for the batch's messages (their overhead and count).
                        let mut waited = false;
                        credits = tokio::select! {
                            biased;
                            _ = &mut cancelled => {
                                meter.release(consumed, 0);
                                not_delivered(&stats, &data, received_at);
                                stop = Some(End::Cancelled);
                                break;
                            }
                            n = std::future::poll_fn(|cx| {
                                let p = meter.poll_messages(cx, BATCH - batch.len());
                                waited |= p.is_pending();
                                p
                            }) => n,
                        };
                        if waited {
                            // Time spent waiting for room is not the peer's.
                            frame.resume();
                        }
                    }
                    credits -= 1;
                    taken += 1;
                    taken_bytes += data.len() as u64;
                    let charge = consumed + MESSAGE_OVERHEAD;
                    let msg = IncomingMessage {
                        peer,
                        stream: name.clone(),
                        data,
                        received_at,
                    };
                    batch.push((msg, charge));
                }
                // A bad body: its bytes go back, its message credit serves the next one.
                Ok(None) => meter.release(frame.take_consumed(), 0),
                Err(end) => {
                    stop = Some(end);
                    break;
                }
            }
            if batch.len() >= BATCH {
                break;
            }
            // The next frame only if it is already here (a no-op waker: the next await
            // registers the real one). A lone message with nothing after it in the buffer
            // (request and response traffic) goes out at once, without another poll.
            if batch.len() < 2 && frames.read_buffer().is_empty() {
                break;
            }
            match frames.next().now_or_never() {
                Some(next) => item = next,
                None => break,
            }
        }
        if let Some(bucket) = &bucket {
            crate::shared::lock(bucket).take(taken, taken_bytes, std::time::Instant::now());
        }
        let delivered = deliver(&shared, peer, class, &mut batch, &stats);
        // A large frame leaves the read buffer large, and its allocation alive as long as the
        // buffer (it shares it with the messages made of it): start a small one when little is
        // left in it.
        let buf = frames.read_buffer_mut();
        if buf.capacity() > SHRINK_ABOVE && buf.len() <= SHRINK_ABOVE / 4 {
            *buf = bytes::BytesMut::from(&buf[..]);
        }
        // Credits not used go back: an idle reader holds none.
        meter.release(credits * MESSAGE_OVERHEAD, credits);
        if let Err(end) = delivered {
            break end;
        }
        if let Some(end) = stop {
            break end;
        }
    };
    // Whatever is still charged and was not handed over goes back.
    meter.release(frame.custody(), 0);
    tracing::debug!(%peer, stream = &*name, ?end, "stream reader ended");
    stats.stream_closed();
    if end == End::Reset {
        // Stops the writer too; dropping both halves resets the stream.
        token.cancel();
    }
    let ended = match end {
        End::Eof => Ended::Eof,
        End::Io => Ended::Reset,
        End::Cancelled | End::Reset | End::QueueClosed => Ended::Local,
    };
    link.ended.send_replace(Some(ended));
    if let Some(id) = spare {
        shared.sessions.remove_spare(&peer, ids.session, &name, id);
    }
    // The stream we write on is half-closed or gone: the next send opens a new one. When the
    // peer ended it (a close or a reset: yamux reads both as an end), the writer decides, since
    // it may move onto another stream of the name.
    let writer_of = crate::shared::lock(&link.writer_of).clone();
    if ended == Ended::Local
        && let Some(slot) = writer_of.and_then(|w| w.upgrade())
    {
        shared.sessions.invalidate(&peer, &name, &slot);
    }
    shared.sessions.reader_ended(&peer, &name, ids.session);
}

/// When reading may go on, if `peer` is over the stream's quota now: counted, and a `Low`
/// verdict for every `quota::PENALTY_AFTER` it stays over.
fn over_quota(
    shared: &Shared,
    peer: PeerId,
    bucket: &std::sync::Mutex<crate::quota::Bucket>,
    stats: &StreamCounters,
) -> Option<std::time::Instant> {
    let now = std::time::Instant::now();
    let (at, penalty) = {
        let mut b = crate::shared::lock(bucket);
        let at = b.ready_at(now)?;
        (at, b.penalty_due(now))
    };
    stats.quota_wait();
    if penalty {
        tracing::info!(%peer, "peer stays over its rate quota: score lowered");
        shared.mail.verdict(peer, crate::scoring::Severity::Low);
    }
    Some(at)
}

/// Messages decoded at most in one go before they are handed to the queue.
const BATCH: usize = 64;

/// A read buffer with more room than this is replaced by a small one between batches.
const SHRINK_ABOVE: usize = 256 * 1024;

/// One item from the framing: `Ok(Some(data))` a message to deliver, `Ok(None)` a bad body that
/// was counted and reported (reading goes on), `Err(end)` the reader stops.
fn decode(
    shared: &Shared,
    ids: &Ids,
    name: &str,
    cipher: Option<&Cipher>,
    item: Option<Result<bytes::BytesMut, DecodeError>>,
    failures: &mut u32,
    stats: &StreamCounters,
) -> Result<Option<Bytes>, End> {
    let peer = ids.peer;
    let mut body = match item {
        None => return Err(End::Eof),
        Some(Err(DecodeError::Io(e))) if intake::expired(&e) => {
            stats.malformed();
            fault(shared, peer, name, e.to_string(), true);
            return Err(End::Reset);
        }
        Some(Err(DecodeError::Io(e))) => {
            tracing::debug!(%peer, stream = name, error = %e, "stream read failed");
            return Err(End::Io);
        }
        Some(Err(e)) => {
            // A frame announced over the limit is an oversized message (nothing was read or
            // allocated for it); anything else broke the framing.
            match e {
                DecodeError::FrameTooLarge { .. } => stats.oversized(),
                _ => stats.malformed(),
            }
            fault(shared, peer, name, e.to_string(), true);
            return Err(End::Reset);
        }
        Some(Ok(body)) => body,
    };
    let data = match cipher {
        None => body.freeze(),
        Some(c) => match c.open_in_place(&mut body) {
            Ok(range) => body.freeze().slice(range),
            Err(e) => {
                stats.decryption_failed();
                return bad(shared, peer, name, failures, e.to_string());
            }
        },
    };
    let max = shared.config.max_message_size_for(name);
    if data.len() > max {
        stats.oversized();
        let error = format!(
            "message of {} bytes exceeds the maximum of {max}",
            data.len()
        );
        return bad(shared, peer, name, failures, error);
    }
    Ok(Some(data))
}

/// A bad body: reported, and the stream is reset once there were too many.
fn bad(
    shared: &Shared,
    peer: PeerId,
    name: &str,
    failures: &mut u32,
    error: String,
) -> Result<Option<Bytes>, End> {
    *failures += 1;
    if too_many(shared, *failures) {
        fault(shared, peer, name, error, true);
        return Err(End::Reset);
    }
    fault(shared, peer, name, error, false);
    Ok(None)
}

/// Hands the batch to the message queues, in order, and empties it. Never waits: what the
/// messages hold was charged before they were read.
///
/// Once shutdown began, a peer over its budget no longer holds the stream: its messages are
/// dropped (counted) and reading goes on to the end, so that the peer's close is seen and the
/// writers' drain is not held up.
fn deliver(
    shared: &Shared,
    peer: PeerId,
    class: Priority,
    batch: &mut Vec<(IncomingMessage, usize)>,
    stats: &StreamCounters,
) -> Result<(), End> {
    if batch.is_empty() {
        return Ok(());
    }
    for (msg, _) in batch.iter() {
        // Counted before it is queued, so that whoever receives it sees it counted.
        stats.received(msg.data.len(), msg.received_at);
    }
    let dropped = shared.inbox.push(&peer, class, batch.drain(..));
    for _ in 0..dropped {
        stats.undelivered();
    }
    if shared.inbox.is_closed() {
        return Err(End::QueueClosed);
    }
    Ok(())
}

/// A message decoded and never handed over (the reader stopped): counted as received and
/// undelivered, as `deliver` counts those it drops.
fn not_delivered(stats: &StreamCounters, data: &Bytes, received_at: SystemTime) {
    stats.received(data.len(), received_at);
    stats.undelivered();
}

fn too_many(shared: &Shared, failures: u32) -> bool {
    shared
        .config
        .max_stream_failures
        .is_some_and(|max| failures >= max)
}

/// A fault of the peer: counted always; logged and reported at most once per
/// `fault_report_interval` per peer (carrying how many faults the report stands for); a peer
/// that reaches `max_faults` is handed to the driver, which disconnects it for
/// `fault_cooldown`.
fn fault(shared: &Shared, peer: PeerId, stream: &str, error: String, reset: bool) {
    metrics::counter!(m::STREAM_FAULTS, "reset" => if reset { "true" } else { "false" })
        .increment(1);
    let verdict = crate::shared::lock(&shared.faults).record(peer, std::time::Instant::now());
    if let Some(faults) = verdict.report {
        tracing::warn!(%peer, stream, %error, reset, faults, "bad frame from peer");
        shared.emit(Event::StreamFault(StreamFault {
            peer,
            stream: stream.to_owned(),
            error,
            reset,
            faults,
            at: SystemTime::now(),
        }));
    }
    if verdict.punish {
        shared.mail.post(peer, |t| t.faulted = true);
    }
}
