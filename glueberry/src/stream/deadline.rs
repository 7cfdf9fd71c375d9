//! Frame deadlines: a frame the peer started must be complete within `frame_timeout` of the
//! moment the node was ready to read the rest of it, or the stream is reset and the fault
//! counted (a peer that sends a frame's first bytes and then trickles or stops holds a buffer
//! for nothing).
//!
//! Two halves share one clock: [`Timed`] wraps the frame decoder and starts the clock when a
//! decode leaves a partial frame in the buffer (stops it when the buffer is empty again);
//! [`Clocked`] wraps the stream's read half and fails the read once the clock has run past the
//! deadline (its timer wakes the reader then). Time the node spent not reading (the message
//! queue full) does not count: the reader calls [`Clock::resume`] when it reads again.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::shared::lock;
use crate::wire::{DecodeError, Decoder};

/// What a read past the deadline fails with.
pub(crate) const EXPIRED: &str = "frame not completed in time";

/// When the partial frame in the buffer started waiting for the peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clock(Arc<Mutex<Option<Instant>>>);

impl Clock {
    fn start(&self) {
        let mut since = lock(&self.0);
        if since.is_none() {
            *since = Some(Instant::now());
        }
    }

    fn restart(&self) {
        *lock(&self.0) = Some(Instant::now());
    }

    fn stop(&self) {
        *lock(&self.0) = None;
    }

    /// The node reads again after a pause of its own: a partial frame's wait starts now.
    pub(crate) fn resume(&self) {
        let mut since = lock(&self.0);
        if since.is_some() {
            *since = Some(Instant::now());
        }
    }

    fn since(&self) -> Option<Instant> {
        *lock(&self.0)
    }
}

/// The frame decoder, starting and stopping the clock.
#[derive(Debug)]
pub(crate) struct Timed {
    inner: Decoder,
    clock: Clock,
}

impl Timed {
    pub(crate) fn new(inner: Decoder, clock: Clock) -> Self {
        Self { inner, clock }
    }
}

impl tokio_util::codec::Decoder for Timed {
    type Item = BytesMut;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        let r = self.inner.decode(src)?;
        match (&r, src.is_empty()) {
            (_, true) => self.clock.stop(),
            // A frame was taken; what is left is the next one, started just now.
            (Some(_), false) => self.clock.restart(),
            (None, false) => self.clock.start(),
        }
        Ok(r)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        self.inner.decode_eof(src)
    }
}

/// A read half that fails once the clock runs past `timeout`.
pub(crate) struct Clocked<R> {
    inner: R,
    clock: Clock,
    timeout: Option<Duration>,
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<R> Clocked<R> {
    /// `timeout` `None` never fails.
    pub(crate) fn new(inner: R, clock: Clock, timeout: Option<Duration>) -> Self {
        Self {
            inner,
            clock,
            timeout,
            timer: None,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Clocked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // A timeout too long to represent (`Duration::MAX`) never fails.
        let deadline = match (this.timeout, this.clock.since()) {
            (Some(timeout), Some(since)) => since.checked_add(timeout),
            _ => None,
        };
        match deadline {
            Some(deadline) => {
                if Instant::now() >= deadline {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, EXPIRED)));
                }
                let timer = match &mut this.timer {
                    Some((at, t)) if *at == deadline => t,
                    slot => {
                        &mut slot
                            .insert((deadline, Box::pin(tokio::time::sleep_until(deadline))))
                            .1
                    }
                };
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, EXPIRED)));
                }
            }
            None => this.timer = None,
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
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

    use super::*;

    fn framed(
        r: tokio::io::DuplexStream,
        timeout: Duration,
    ) -> (FramedRead<Clocked<tokio::io::DuplexStream>, Timed>, Clock) {
        let clock = Clock::default();
        let reader = Clocked::new(r, clock.clone(), Some(timeout));
        (
            FramedRead::new(reader, Timed::new(Decoder::new(1 << 20), clock.clone())),
            clock,
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
        let (mut frames, clock) = framed(r, Duration::from_secs(10));
        w.write_all(&[0x06, 0x05, b'h', b'e']).await.unwrap();
        // The reader sees the partial frame, then stops reading for a minute (queue full).
        assert!(
            tokio::time::timeout(Duration::from_secs(1), frames.next())
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        clock.resume();
        w.write_all(b"llo").await.unwrap();
        assert_eq!(&frames.next().await.unwrap().unwrap()[..], b"hello");
    }
}
