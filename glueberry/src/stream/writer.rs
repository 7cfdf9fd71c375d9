//! The writer task of one stream: the only owner of its write half.
//!
//! It takes queued messages, encrypts each straight into one buffer (coalescing whatever is
//! queued, up to [`COALESCE`] bytes) and writes the buffer with one write and one flush.

use std::sync::{Arc, Weak};

use bytes::{Bytes, BytesMut};
use futures::AsyncWriteExt as _;
use futures::io::WriteHalf;
use libp2p::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Ids, Slot};
use crate::crypto::{Cipher, NONCE_LEN, OVERHEAD};
use crate::flow::Gate;
use crate::shared::Shared;
use crate::stats::StreamCounters;
use crate::telemetry as m;
use crate::wire::codec;

/// Bytes of queued frames gathered into one write.
pub(crate) const COALESCE: usize = 64 * 1024;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run(
    shared: Arc<Shared>,
    ids: Ids,
    name: Arc<str>,
    cipher: Option<Arc<Cipher>>,
    mut write: WriteHalf<Stream>,
    mut rx: mpsc::Receiver<Bytes>,
    gate: Option<Arc<Gate>>,
    stats: Arc<StreamCounters>,
    token: CancellationToken,
    read_done: CancellationToken,
    slot: Weak<Slot>,
) {
    let peer = ids.peer;
    // Allocated on first use: an idle stream costs no buffer.
    let mut buf = BytesMut::new();
    // Messages taken from the queue but not known to be written.
    let mut in_flight = 0u64;
    loop {
        let first = tokio::select! {
            biased;
            _ = token.cancelled() => break,
            m = rx.recv() => m,
        };
        let Some(first) = first else {
            // Every sender is gone (the slot was dropped): close our side cleanly. When the
            // node is shutting down, also wait until the peer has read everything and closed
            // its side (our reader of this stream ends): shutdown waits for the writers, so
            // what was queued is not lost in the peer's buffers when the connection goes.
            tokio::select! {
                biased;
                _ = token.cancelled() => {}
                _ = async {
                    let _ = write.close().await;
                    if shared.closing.is_cancelled() {
                        read_done.cancelled().await;
                    }
                } => {}
            }
            break;
        };
        in_flight = 1;
        encode(&mut buf, &first, cipher.as_deref());
        while buf.len() < COALESCE {
            match rx.try_recv() {
                Ok(m) => {
                    encode(&mut buf, &m, cipher.as_deref());
                    in_flight += 1;
                }
                Err(_) => break,
            }
        }
        // Taken off the queue: room for senders (they wake at the low watermark).
        if let Some(g) = &gate {
            g.release(in_flight as usize);
            stats.pending(-(in_flight as i64));
        }
        let written = tokio::select! {
            biased;
            _ = token.cancelled() => break,
            r = async { write.write_all(&buf).await?; write.flush().await } => r,
        };
        if let Err(e) = written {
            tracing::debug!(%peer, stream = &*name, error = %e, "stream write failed");
            if let Some(slot) = slot.upgrade() {
                shared.sessions.invalidate(&peer, &name, &slot);
            }
            break;
        }
        metrics::counter!(m::FRAMES_WRITTEN).increment(in_flight);
        in_flight = 0;
        if buf.capacity() > 4 * COALESCE {
            buf = BytesMut::new();
        } else {
            buf.clear();
        }
    }
    // Whatever is still queued, or was being written, may not have reached the peer: count it.
    rx.close();
    let mut queued = 0u64;
    while rx.try_recv().is_ok() {
        queued += 1;
    }
    if let Some(g) = &gate
        && queued > 0
    {
        g.release(queued as usize);
        stats.pending(-(queued as i64));
    }
    let lost = in_flight + queued;
    if lost > 0 {
        tracing::warn!(%peer, stream = &*name, lost, "queued messages lost: stream closed");
        stats.lost(lost);
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
