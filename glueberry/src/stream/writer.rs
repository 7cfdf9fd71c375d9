//! The writer task of one (peer, name): the only owner of the write half it writes on.
//!
//! It takes queued messages, encrypts each straight into one buffer (coalescing whatever is
//! queued, up to [`COALESCE`] bytes) and writes the buffer with one write and one flush.
//!
//! When the peer resets the stream (Go's rule when both sides opened the name at once), it
//! moves onto another stream of the name and writes again what the peer could not have read,
//! or hands that and its queue over to the next writer of the name (see `link`).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use futures::AsyncWriteExt as _;
use futures::io::WriteHalf;
use libp2p::Stream;
use tokio::sync::{mpsc, watch};

use super::link::{Copies, Ended, HandOver, Link};
use super::{Ids, Outgoing, Slot};
use crate::crypto::{Cipher, NONCE_LEN, OVERHEAD};
use crate::event::{Event, StreamReset};
use crate::flow::Gate;
use crate::shared::{Shared, lock};
use crate::stats::StreamCounters;
use crate::telemetry as m;
use crate::wire::codec;

/// Bytes of queued frames gathered into one write.
pub(crate) const COALESCE: usize = 64 * 1024;

/// What a writer task is started with.
pub(super) struct Task {
    pub(super) shared: Arc<Shared>,
    pub(super) ids: Ids,
    pub(super) name: Arc<str>,
    pub(super) cipher: Option<Arc<Cipher>>,
    pub(super) write: WriteHalf<Stream>,
    pub(super) link: Arc<Link>,
    pub(super) rx: mpsc::Receiver<Outgoing>,
    pub(super) gate: Option<Arc<Gate>>,
    pub(super) stats: Arc<StreamCounters>,
    pub(super) slot: Weak<Slot>,
    pub(super) copies: Copies,
    /// Handed over by the previous writer of the name: written first.
    pub(super) stash: VecDeque<Outgoing>,
    /// The peer's end of the current stream was seen.
    pub(super) end_seen: bool,
}

/// Why the loop stopped.
enum Stop {
    /// The stream's token was cancelled (the session or node ends, or a framing error).
    Cancelled,
    /// Every sender is gone; the stream was closed cleanly.
    Done,
    /// Writing failed on a stream that is not recoverable.
    Failed,
    /// The writer handed its messages over and ends.
    HandedOver,
}

pub(super) async fn run(mut t: Task) {
    // Allocated on first use: an idle stream costs no buffer.
    let mut buf = BytesMut::new();
    // Messages taken from the queue (or the stash) and being written, and where each one's
    // frame ends in `buf`.
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut ends: Vec<usize> = Vec::new();
    let mut ended = t.link.ended.subscribe();
    let mut pending = std::mem::take(&mut t.stash);
    let stop = loop {
        buf.clear();
        if !pending.is_empty() {
            // Handed over by the previous writer: first, in order (already off its queue), a
            // write's worth at a time.
            while buf.len() < COALESCE
                && let Some(m) = pending.pop_front()
            {
                encode(&mut buf, &m.data, t.cipher.as_deref());
                ends.push(buf.len());
                batch.push(m);
            }
        } else {
            let until = t.copies.until();
            // (No token clone on this path: a clone takes the token's lock, per batch.)
            let first = tokio::select! {
                biased;
                _ = t.link.token.cancelled() => break Stop::Cancelled,
                end = peer_ended(&mut ended), if !t.end_seen => {
                    t.end_seen = true;
                    if end == Ended::Reset || was_reset(&mut t.write) {
                        match recover(&mut t, &mut ended, &mut buf, 0).await {
                            Some(stop) => break stop,
                            None => continue,
                        }
                    }
                    // The peer closed its side cleanly and may still read: write what is
                    // queued; the next send opens a new stream.
                    if let Some(slot) = t.slot.upgrade() {
                        t.shared.sessions.invalidate(&t.ids.peer, &t.name, &slot);
                    }
                    continue;
                }
                _ = sleep_until(until), if until.is_some() => {
                    t.copies.settle();
                    continue;
                }
                m = t.rx.recv() => m,
            };
            let Some(first) = first else {
                // Every sender is gone. If the stream has not settled, a peer following Go's
                // rule may still reset it: wait a few round trips from its opening
                // (`Copies::reset_window`), or until the peer ends it.
                let rtt = t.shared.stats.get(&t.ids.peer).and_then(|e| e.last_rtt());
                if t.shared.sessions.peer_never_resets(&t.ids.peer) {
                    t.copies.settle();
                }
                if let Some(until) = t.copies.reset_window(rtt)
                    && !t.end_seen
                {
                    let token = t.link.token.clone();
                    tokio::select! {
                        biased;
                        _ = token.cancelled() => break Stop::Cancelled,
                        end = peer_ended(&mut ended) => {
                            t.end_seen = true;
                            if end == Ended::Reset || was_reset(&mut t.write) {
                                match recover(&mut t, &mut ended, &mut buf, 0).await {
                                    Some(stop) => break stop,
                                    None => continue,
                                }
                            }
                        }
                        _ = sleep_until(Some(until)) => t.copies.settle(),
                    }
                }
                close(&mut t, &mut ended).await;
                break Stop::Done;
            };
            encode(&mut buf, &first.data, t.cipher.as_deref());
            ends.push(buf.len());
            batch.push(first);
            while buf.len() < COALESCE {
                match t.rx.try_recv() {
                    Ok(m) => {
                        encode(&mut buf, &m.data, t.cipher.as_deref());
                        ends.push(buf.len());
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            // Taken off the queue: room for senders (they wake at the low watermark).
            if let Some(g) = &t.gate {
                g.release(batch.len());
                t.stats.pending(-(batch.len() as i64));
            }
        }
        let mut took = 0;
        let written = tokio::select! {
            biased;
            _ = t.link.token.cancelled() => {
                // The frames the muxer took whole before the end were written: the peer may
                // read them.
                let whole = ends.iter().take_while(|&&end| end <= took).count();
                ends.clear();
                let rest = batch.split_off(whole);
                count_written(&t.stats, &batch);
                for m in batch.drain(..) {
                    delivered(m);
                }
                batch = rest;
                break Stop::Cancelled;
            }
            r = write_counted(&mut t.write, &buf, &mut took) => r,
        };
        match written {
            Ok(()) => {
                metrics::counter!(m::FRAMES_WRITTEN).increment(batch.len() as u64);
                ends.clear();
                count_written(&t.stats, &batch);
                for m in batch.drain(..) {
                    // Kept while the stream may still be reset; dropped otherwise.
                    let _ = t.copies.keep(delivered(m));
                }
                t.copies.written(buf.len(), Instant::now());
                if buf.capacity() > 4 * COALESCE {
                    buf = BytesMut::new();
                }
            }
            Err((took, e)) => {
                tracing::debug!(peer = %t.ids.peer, stream = &*t.name, error = %e, "stream write failed");
                // The frames the muxer took whole were written; the rest was not. A reset
                // stream: they join the copies if they are to be written again; on a settled
                // stream the rest is lost.
                let whole = ends.iter().take_while(|&&end| end <= took).count();
                ends.clear();
                let mut lost = Vec::new();
                count_written(&t.stats, &batch[..whole]);
                for (i, m) in batch.drain(..).enumerate() {
                    let m = if i < whole { delivered(m) } else { m };
                    if let Some(m) = t.copies.keep(m)
                        && !m.written
                    {
                        lost.push(m);
                    }
                }
                t.stats.lost_outgoing(&lost);
                match recover(&mut t, &mut ended, &mut buf, lost.len() as u64).await {
                    Some(stop) => break stop,
                    None => continue,
                }
            }
        }
    };
    finish(t, stop, batch).await;
}

/// Writes `buf` and flushes. On failure, also says how many bytes the muxer took first.
/// `took` counts the bytes the muxer took, also when the write is cancelled.
async fn write_counted(
    write: &mut WriteHalf<Stream>,
    buf: &[u8],
    took: &mut usize,
) -> Result<(), (usize, std::io::Error)> {
    while *took < buf.len() {
        match write.write(&buf[*took..]).await {
            Ok(0) => return Err((*took, std::io::ErrorKind::WriteZero.into())),
            Ok(n) => *took += n,
            Err(e) => return Err((*took, e)),
        }
    }
    write.flush().await.map_err(|e| (*took, e))
}

/// `written` were written: those written for the first time are counted, once for the batch,
/// before any sender is told ([`delivered`]).
fn count_written<'a>(stats: &StreamCounters, written: impl IntoIterator<Item = &'a Outgoing>) {
    stats.written(written.into_iter().filter(|m| !m.written).count() as u64);
}

/// `m` was written (and counted by [`count_written`]): its sender is told. Returns it as a copy.
fn delivered(mut m: Outgoing) -> Outgoing {
    m.written = true;
    if let Some(ack) = m.ack.take() {
        let _ = ack.send(());
    }
    m
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the peer has ended the stream's read side (closed or reset it); never for an
/// end of our own. The caller asks once per stream (`Task::end_seen`).
async fn peer_ended(ended: &mut watch::Receiver<Option<Ended>>) -> Ended {
    let end = ended
        .wait_for(|e| matches!(e, Some(Ended::Eof | Ended::Reset)))
        .await
        .map(|e| *e);
    match end {
        Ok(Some(e)) => e,
        _ => std::future::pending().await,
    }
}

/// Whether the stream can no longer be written: yamux reads a reset as an end of stream, and
/// only a write tells it apart from a clean close (after which the peer still reads). On a live
/// stream the empty write sends an empty data frame, which peers ignore; one that would wait
/// (no credit left) is not a reset.
fn was_reset(write: &mut WriteHalf<Stream>) -> bool {
    use futures::FutureExt as _;
    matches!(write.write(&[]).now_or_never(), Some(Err(_)))
}

/// Every sender is gone: close our side cleanly. When the node is shutting down, also wait until
/// the peer has read everything and closed its side (our reader of this stream ends): shutdown
/// waits for the writers, so what was queued is not lost in the peer's buffers when the
/// connection goes.
async fn close(t: &mut Task, ended: &mut watch::Receiver<Option<Ended>>) {
    let token = t.link.token.clone();
    tokio::select! {
        biased;
        _ = token.cancelled() => {}
        _ = async {
            let _ = t.write.close().await;
            if t.shared.closing.is_cancelled() {
                let _ = ended.wait_for(|e| e.is_some()).await;
            }
        } => {}
    }
}

/// The peer reset the stream (or writing on it failed). Moves onto a spare of the name and
/// writes again what the peer could not have read; or, with no spare yet, hands that and the
/// queue over to the next writer of the name. `lost` messages (being written on a settled
/// stream) are counted. Returns `None` to go on writing, `Some` to stop.
async fn recover(
    t: &mut Task,
    ended: &mut watch::Receiver<Option<Ended>>,
    buf: &mut BytesMut,
    lost: u64,
) -> Option<Stop> {
    let peer = t.ids.peer;
    if t.link.token.is_cancelled() {
        // Not the peer: the session or the node is ending. Copies written once are written (as
        // any message written before a connection goes); those never written are lost.
        let unwritten = t.copies.take().iter().filter(|m| !m.written).count();
        t.stats.lost(unwritten as u64);
        return Some(Stop::Cancelled);
    }
    let mut resend = t.copies.take();
    let resent = resend.len() as u64;
    // Move onto the peer's own stream of the name, if it is here.
    let mut next = t.shared.sessions.take_spare(&peer, t.ids.session, &t.name);
    let queued = loop {
        while let Some(spare) = next.take() {
            *lock(&spare.link.writer_of) = Some(t.slot.clone());
            t.write = spare.write;
            t.link = spare.link;
            *ended = t.link.ended.subscribe();
            t.end_seen = false;
            // The peer's own stream: it never resets it under Go's rule.
            t.copies = Copies::settled();
            buf.clear();
            let mut ends = Vec::with_capacity(resend.len());
            for m in &resend {
                encode(buf, &m.data, t.cipher.as_deref());
                ends.push(buf.len());
            }
            let token = t.link.token.clone();
            let mut progress = 0;
            let written = tokio::select! {
                biased;
                _ = token.cancelled() => {
                    // (`lost` is counted already.)
                    t.stats.lost_outgoing(&resend);
                    return Some(Stop::Cancelled);
                }
                r = write_counted(&mut t.write, buf, &mut progress) => r,
            };
            match written {
                Ok(()) => {
                    metrics::counter!(m::FRAMES_WRITTEN).increment(resend.len() as u64);
                    count_written(&t.stats, &resend);
                    for m in resend.drain(..) {
                        delivered(m);
                    }
                    report(t, resent, lost, "moved");
                    tracing::info!(%peer, stream = &*t.name, resent, "the peer reset our stream: writing on its own");
                    return None;
                }
                Err((took, _)) => {
                    // Those the muxer took whole count as written; all go to the next stream.
                    let whole = ends.iter().take_while(|&&end| end <= took).count();
                    count_written(&t.stats, resend.iter().take(whole));
                    for m in resend.iter_mut().take(whole) {
                        m.written = true;
                        if let Some(ack) = m.ack.take() {
                            let _ = ack.send(());
                        }
                    }
                }
            }
            // That one is gone too: try the next.
            next = t.shared.sessions.take_spare(&peer, t.ids.session, &t.name);
        }
        // None yet: hand everything over, atomically with leaving the slot, so that the next
        // writer of the name (the peer's stream when it comes, or the next send's) writes it
        // first, in order; unless a spare came meanwhile.
        let Some(slot) = t.slot.upgrade() else {
            t.stats.lost_outgoing(&resend);
            report(t, 0, lost + resent, "kept");
            return Some(Stop::Failed);
        };
        let (rx, gate, stats) = (&mut t.rx, &t.gate, &t.stats);
        let mut queued = 0usize;
        let outcome =
            t.shared
                .sessions
                .hand_over(&peer, t.ids.session, &t.name, &slot, true, |stash| {
                    rx.close();
                    stash.extend(resend.drain(..));
                    while let Ok(m) = rx.try_recv() {
                        stash.push_back(m);
                        queued += 1;
                    }
                    if let Some(g) = gate
                        && queued > 0
                    {
                        g.release(queued);
                        stats.pending(-(queued as i64));
                    }
                });
        match outcome {
            HandOver::Kept => break queued,
            HandOver::Spare(spare) => next = Some(spare),
            HandOver::Refused => {
                // The session is gone: what was to be written again is lost (the queue is
                // counted when the task ends).
                t.stats.lost_outgoing(&resend);
                report(t, 0, lost + resent, "kept");
                return Some(Stop::Failed);
            }
        }
    };
    let resent = resent + queued as u64;
    report(t, resent, lost, "kept");
    tracing::info!(%peer, stream = &*t.name, resent, "the peer reset our stream: kept for the next stream of the name");
    Some(Stop::HandedOver)
}

fn report(t: &Task, resent: u64, lost: u64, outcome: &'static str) {
    let outcome = if resent == 0 && lost == 0 && outcome == "moved" {
        "settled"
    } else {
        outcome
    };
    metrics::counter!(m::STREAM_RESETS, "outcome" => outcome).increment(1);
    t.shared.emit(Event::StreamReset(StreamReset {
        peer: t.ids.peer,
        stream: t.name.to_string(),
        resent,
        lost,
        at: SystemTime::now(),
    }));
}

/// The task ends: whatever is still queued, or was being written, may not have reached the
/// peer: count it (its senders waiting for the write learn it failed). After a hand-over,
/// messages that a sender was still putting in the queue when it closed follow the others to
/// the next writer.
async fn finish(mut t: Task, stop: Stop, batch: Vec<Outgoing>) {
    let peer = t.ids.peer;
    if matches!(stop, Stop::Failed)
        && let Some(slot) = t.slot.upgrade()
    {
        t.shared.sessions.invalidate(&peer, &t.name, &slot);
    }
    t.rx.close();
    // `recv` (unlike `try_recv`) also waits for a send that had its place before the close.
    let mut late = VecDeque::new();
    while let Some(m) = t.rx.recv().await {
        late.push_back(m);
    }
    if let Some(g) = &t.gate
        && !late.is_empty()
    {
        g.release(late.len());
        t.stats.pending(-(late.len() as i64));
    }
    if matches!(stop, Stop::HandedOver)
        && !late.is_empty()
        && let Some(slot) = t.slot.upgrade()
    {
        let n = late.len();
        let kept =
            t.shared
                .sessions
                .hand_over(&peer, t.ids.session, &t.name, &slot, false, |stash| {
                    stash.append(&mut late)
                });
        if matches!(kept, HandOver::Kept) {
            tracing::debug!(%peer, stream = &*t.name, n, "late messages handed over too");
        }
    }
    let lost = batch.len() + late.len();
    if lost > 0 {
        tracing::warn!(%peer, stream = &*t.name, lost, "queued messages lost: stream closed");
        t.stats.lost_outgoing(batch.iter().chain(late.iter()));
    }
}

/// Appends one frame for `data` to `buf`: plain, or sealed with a random nonce.
pub(crate) fn encode(buf: &mut BytesMut, data: &[u8], cipher: Option<&Cipher>) {
    match cipher {
        None => {
            codec::put_header(data.len(), buf);
            buf.extend_from_slice(data);
        }
        Some(c) => {
            codec::put_header(data.len() + OVERHEAD, buf);
            let start = buf.len();
            buf.extend_from_slice(&[0u8; NONCE_LEN]);
            buf.extend_from_slice(data);
            let tag = c.seal_in_place(&mut buf[start..]);
            buf.extend_from_slice(&tag);
        }
    }
}
