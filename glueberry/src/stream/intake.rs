//! How a stream reader reads: charged to its peer's budget before it reads (`inbox`), and
//! within a deadline once a frame has started.
//!
//! Two halves share one [`Frame`] state: [`Measured`] wraps the frame decoder and records what
//! it takes out of the buffer, how much of a started frame is still missing, and when that
//! frame started waiting for the peer; [`Intake`] wraps the stream's read half and, before each
//! read, charges the peer (the whole rest of a frame whose length is known, in one piece, or a
//! small read-ahead at a frame boundary), then fails the read once a started frame has waited
//! past `frame_timeout`.
//!
//! Time the node spent not reading does not count against the peer: a read that waited for
//! budget restarts the frame's clock when it goes on, and so does the reader after waiting for
//! room for its messages ([`Frame::resume`]). That cannot let frames left half done hold a
//! budget for ever: read-aheads (which start frames) leave room for finishing started ones
//! (`inbox::budget`), and a frame whose rest was charged waits only for its peer, with its
//! deadline running. A read-ahead charged for a read that found nothing goes back at once, so
//! an idle stream holds no budget.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BytesMut;
use futures::io::AsyncRead;
use tokio::time::{Instant, Sleep};

use crate::inbox::{Meter, READAHEAD};
use crate::shared::lock;
use crate::wire::{DecodeError, Decoder, varint};

/// What a read past the deadline fails with.
pub(crate) const EXPIRED: &str = "frame not completed in time";

#[derive(Debug, Default)]
struct State {
    /// When the partial frame in the buffer started waiting for the peer.
    since: Option<Instant>,
    /// Bytes still missing of the partial frame whose length is known (0 at a frame boundary
    /// or while its length prefix is incomplete).
    need: usize,
    /// Bytes charged and not yet read.
    unread: usize,
    /// Bytes read and not yet taken out as frames.
    buffered: usize,
    /// Bytes taken out as frames (or discarded at the end) and not yet claimed.
    consumed: usize,
}

/// What a reader's decoder and read half share.
#[derive(Debug, Clone, Default)]
pub(crate) struct Frame(Arc<Mutex<State>>);

impl Frame {
    /// The node reads again after a pause of its own: a partial frame's wait starts now.
    pub(crate) fn resume(&self) {
        let mut s = lock(&self.0);
        if s.since.is_some() {
            s.since = Some(Instant::now());
        }
    }

    /// The bytes of the frames taken out since the last call: what the messages made of them
    /// hold.
    pub(crate) fn take_consumed(&self) -> usize {
        std::mem::take(&mut lock(&self.0).consumed)
    }

    /// Everything charged and not claimed: what the reader gives back when it ends.
    pub(crate) fn custody(&self) -> usize {
        let s = lock(&self.0);
        s.unread + s.buffered + s.consumed
    }

    fn since(&self) -> Option<Instant> {
        lock(&self.0).since
    }
}

/// Bytes missing of the frame at the start of `src`, when its length prefix is complete.
fn missing(src: &[u8]) -> usize {
    match varint::read(src) {
        Ok(varint::Read::Value(outer, prefix)) => (prefix as u64)
            .saturating_add(outer)
            .saturating_sub(src.len() as u64)
            as usize,
        _ => 0,
    }
}

/// The frame decoder, keeping the [`Frame`] state.
#[derive(Debug)]
pub(crate) struct Measured {
    inner: Decoder,
    frame: Frame,
}

impl Measured {
    pub(crate) fn new(inner: Decoder, frame: Frame) -> Self {
        Self { inner, frame }
    }

    fn after(&self, before: usize, src: &BytesMut, took: bool) {
        let mut s = lock(&self.frame.0);
        let consumed = before - src.len();
        s.buffered -= consumed.min(s.buffered);
        s.consumed += consumed;
        s.need = missing(src);
        match (took, src.is_empty()) {
            (_, true) => s.since = None,
            // A frame was taken; what is left is the next one, started just now.
            (true, false) => s.since = Some(Instant::now()),
            (false, false) => {
                if s.since.is_none() {
                    s.since = Some(Instant::now());
                }
            }
        }
    }
}

impl tokio_util::codec::Decoder for Measured {
    type Item = BytesMut;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        let before = src.len();
        let r = self.inner.decode(src)?;
        self.after(before, src, r.is_some());
        Ok(r)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        let before = src.len();
        let r = self.inner.decode_eof(src)?;
        self.after(before, src, r.is_some());
        Ok(r)
    }
}

/// A read half that charges its peer before it reads and fails once a started frame waited
/// past `timeout`.
pub(crate) struct Intake<R> {
    inner: R,
    frame: Frame,
    meter: Meter,
    timeout: Option<Duration>,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
    /// The last poll waited for budget.
    waited: bool,
}

impl<R> Intake<R> {
    /// `timeout` `None` never fails.
    pub(crate) fn new(inner: R, frame: Frame, meter: Meter, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            frame,
            meter,
            timeout,
            timer: None,
            waited: false,
        }
    }

    /// Charges what the next read needs; the bytes it may read.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        let (need, unread) = {
            let s = lock(&self.frame.0);
            (s.need, s.unread)
        };
        let more = if need > unread {
            // The rest of a started frame, in one piece.
            ready!(self.meter.poll_exact(cx, need - unread));
            need - unread
        } else if unread == 0 {
            ready!(self.meter.poll_up_to(cx, READAHEAD))
        } else {
            0
        };
        let mut s = lock(&self.frame.0);
        s.unread += more;
        Poll::Ready(s.unread)
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        // A timeout too long to represent (`Duration::MAX`) never fails.
        let deadline = match (self.timeout, self.frame.since()) {
            (Some(timeout), Some(since)) => since.checked_add(timeout),
            _ => None,
        };
        let Some(deadline) = deadline else {
            self.timer = None;
            return Ok(());
        };
        let expired = || io::Error::new(io::ErrorKind::TimedOut, EXPIRED);
        if Instant::now() >= deadline {
            return Err(expired());
        }
        let timer = match &mut self.timer {
            Some((at, t)) if *at == deadline => t,
            slot => {
                &mut slot
                    .insert((deadline, Box::pin(tokio::time::sleep_until(deadline))))
                    .1
            }
        };
        if timer.as_mut().poll(cx).is_ready() {
            return Err(expired());
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Intake<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let room = match this.poll_room(cx) {
            Poll::Ready(room) => room,
            Poll::Pending => {
                this.waited = true;
                return Poll::Pending;
            }
        };
        if std::mem::take(&mut this.waited) {
            this.frame.resume();
        }
        this.poll_deadline(cx)?;
        let limit = room.min(buf.len());
        match Pin::new(&mut this.inner).poll_read(cx, &mut buf[..limit]) {
            Poll::Ready(Ok(n)) => {
                let mut s = lock(&this.frame.0);
                s.unread -= n;
                s.buffered += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Nothing to read now: a read-ahead charged for nothing goes back, so that an
                // idle stream holds no budget (the rest of a started frame stays reserved).
                let spare = {
                    let mut s = lock(&this.frame.0);
                    let spare = s.unread.saturating_sub(s.need);
                    s.unread -= spare;
                    spare
                };
                this.meter.release(spare, 0);
                Poll::Pending
            }
        }
    }
}

/// Whether `e` is a frame deadline that passed.
pub(crate) fn expired(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut && e.to_string() == EXPIRED
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    use tokio_util::codec::FramedRead;
    use tokio_util::compat::{
        Compat, FuturesAsyncReadCompatExt as _, TokioAsyncReadCompatExt as _,
    };

    use super::*;

    type Framed = FramedRead<Compat<Intake<Compat<tokio::io::DuplexStream>>>, Measured>;

    fn framed(r: tokio::io::DuplexStream, timeout: Duration) -> (Framed, Frame) {
        let frame = Frame::default();
        let inbox = crate::inbox::Inbox::new(
            crate::inbox::Limits {
                peer: 1 << 30,
                stranger: 1 << 30,
                strangers: 1 << 30,
                total: 1 << 30,
                floor: 1 << 20,
                messages: 1 << 20,
                finish_stranger: 0,
                finish_peer: 0,
            },
            Default::default(),
        );
        let meter = Meter::new(inbox, libp2p::PeerId::random(), "data");
        let reader = Intake::new(r.compat(), frame.clone(), meter, Some(timeout)).compat();
        (
            FramedRead::new(reader, Measured::new(Decoder::new(1 << 20), frame.clone())),
            frame,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_left_half_done_fails_at_its_deadline_and_not_before() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let (mut frames, _) = framed(r, Duration::from_secs(10));
        // A whole frame first: no clock.
        w.write_all(&[0x06, 0x05, b'h', b'e', b'l', b'l', b'o'])
            .await
            .unwrap();
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"hello");
        // Then a frame's prefix and two of its five bytes, and nothing more.
        w.write_all(&[0x06, 0x05, b'h', b'e']).await.unwrap();
        let t0 = Instant::now();
        let next = frames.next().await.unwrap();
        match next {
            Err(DecodeError::Io(e)) => assert!(expired(&e), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(Instant::now() - t0, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_frame_that_completes_in_time_is_taken() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let (mut frames, _) = framed(r, Duration::from_secs(10));
        let reader = tokio::spawn(async move { frames.next().await.unwrap().unwrap() });
        for b in [0x06u8, 0x05, b'h', b'e', b'l', b'l', b'o'] {
            tokio::time::sleep(Duration::from_secs(1)).await;
            w.write_all(&[b]).await.unwrap();
        }
        assert_eq!(&reader.await.unwrap()[..], b"hello");
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_node_spent_not_reading_does_not_count() {
        let (mut w, r) = tokio::io::duplex(1 << 16);
        let (mut frames, frame) = framed(r, Duration::from_secs(10));
        w.write_all(&[0x06, 0x05, b'h', b'e']).await.unwrap();
        // The reader sees the partial frame, then stops reading for a minute (queue full).
        assert!(
            tokio::time::timeout(Duration::from_secs(1), frames.next())
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        frame.resume();
        w.write_all(b"llo").await.unwrap();
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"hello");
    }
}
