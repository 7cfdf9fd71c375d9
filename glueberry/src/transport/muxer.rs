//! yamux as the TCP muxer, configured so that no peer is granted a receive window it could use
//! to send a frame rust-yamux refuses (docs/protocol.md, "yamux settings").
//!
//! rust-yamux 0.14 doubles a busy stream's receive window (up to 1 GiB per connection by
//! default) but refuses any data frame whose body is over 1 MiB, and it ends the whole
//! connection when one comes. go-yamux splits its frames at 64 KiB, but js-libp2p's yamux sends
//! frames as large as the window it was granted: a fast js-libp2p sender soon sends a frame over
//! 1 MiB and kills the connection. The connection-wide limit is what bounds a stream's window:
//! a stream starts at 256 KiB and can only grow by what the other streams have not taken of
//! `max_connection_receive_window - max_num_streams × 256 KiB`. Setting that to 768 KiB caps
//! every stream's window, hence every frame a peer may send, at 1 MiB.
//!
//! libp2p-yamux does not expose that setting, so this module is the small adapter it would
//! otherwise be: an upgrade that builds a `yamux::Connection` with our `yamux::Config`, and the
//! `StreamMuxer` over it (the same shape as libp2p-yamux 0.48's).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use futures::future;
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};

/// The initial (and smallest) window of a yamux stream, in bytes.
pub(crate) const DEFAULT_CREDIT: usize = 256 * 1024;
/// The largest data frame body rust-yamux accepts, in bytes.
pub(crate) const MAX_FRAME_BODY: usize = 1024 * 1024;
/// Streams per connection (rust-yamux's default).
pub(crate) const MAX_STREAMS: usize = 512;

/// The yamux settings: at most [`MAX_STREAMS`] streams, and a connection-wide receive window
/// that lets no stream's window grow past [`MAX_FRAME_BODY`].
pub(crate) fn config() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(MAX_STREAMS);
    c.set_max_connection_receive_window(Some(
        MAX_STREAMS * DEFAULT_CREDIT + (MAX_FRAME_BODY - DEFAULT_CREDIT),
    ));
    c
}

/// The `/yamux/1.0.0` upgrade with [`config`].
#[derive(Debug, Clone)]
pub(crate) struct Upgrade(yamux::Config);

impl Upgrade {
    pub(crate) fn new() -> Self {
        Self(config())
    }
}

impl UpgradeInfo for Upgrade {
    type Info = &'static str;
    type InfoIter = std::iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once("/yamux/1.0.0")
    }
}

impl<C> InboundConnectionUpgrade<C> for Upgrade
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(yamux::Connection::new(
            io,
            self.0,
            yamux::Mode::Server,
        ))))
    }
}

impl<C> OutboundConnectionUpgrade<C> for Upgrade
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = Muxer<C>;
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, io: C, _: Self::Info) -> Self::Future {
        future::ready(Ok(Muxer::new(yamux::Connection::new(
            io,
            self.0,
            yamux::Mode::Client,
        ))))
    }
}

/// Inbound streams that arrive between two calls of `poll_inbound` wait here (the stream meter,
/// `transport/meter.rs`, calls it on every turn of the connection, so few ever wait); past this
/// many they are dropped, as in libp2p-yamux, and counted in
/// `glueberry_inbound_streams_refused_total`.
const MAX_BUFFERED_INBOUND_STREAMS: usize = 256;

/// A yamux connection as a libp2p `StreamMuxer`.
pub(crate) struct Muxer<C> {
    connection: yamux::Connection<C>,
    inbound: VecDeque<yamux::Stream>,
    inbound_waker: Option<Waker>,
}

impl<C> Muxer<C> {
    fn new(connection: yamux::Connection<C>) -> Self {
        Self {
            connection,
            inbound: VecDeque::new(),
            inbound_waker: None,
        }
    }
}

/// yamux's errors as I/O errors: its own I/O errors as they are, the rest wrapped (the driver
/// recognises a clean close by downcasting to `yamux::ConnectionError`).
fn io_error(e: yamux::ConnectionError) -> io::Error {
    match e {
        yamux::ConnectionError::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl<C> Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_next_inbound(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<yamux::Stream>> {
        match ready!(self.connection.poll_next_inbound(cx)) {
            Some(Ok(s)) => Poll::Ready(Ok(s)),
            Some(Err(e)) => Poll::Ready(Err(io_error(e))),
            None => Poll::Ready(Err(io_error(yamux::ConnectionError::Closed))),
        }
    }
}

impl<C> StreamMuxer for Muxer<C>
where
    C: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Substream = yamux::Stream;
    type Error = io::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        if let Some(s) = self.inbound.pop_front() {
            return Poll::Ready(Ok(s));
        }
        if let Poll::Ready(r) = self.poll_next_inbound(cx) {
            return Poll::Ready(r);
        }
        self.inbound_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        self.connection.poll_new_outbound(cx).map_err(io_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.connection.poll_close(cx).map_err(io_error)
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        let this = self.get_mut();
        let stream = ready!(this.poll_next_inbound(cx))?;
        if this.inbound.len() >= MAX_BUFFERED_INBOUND_STREAMS {
            tracing::warn!(stream = %stream, "dropping an inbound yamux stream: too many waiting");
            metrics::counter!(crate::telemetry::INBOUND_STREAMS_REFUSED).increment(1);
            drop(stream);
        } else {
            this.inbound.push_back(stream);
            if let Some(w) = this.inbound_waker.take() {
                w.wake();
            }
        }
        // Let other work run, then come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window arithmetic rust-yamux 0.14.1 applies (`flow_control.rs`): a stream's window
    /// grows by what is left of the connection limit beyond every stream's initial 256 KiB.
    #[test]
    fn no_stream_window_can_pass_the_largest_frame() {
        let connection_limit = MAX_STREAMS * DEFAULT_CREDIT + (MAX_FRAME_BODY - DEFAULT_CREDIT);
        let growth = connection_limit - MAX_STREAMS * DEFAULT_CREDIT;
        assert_eq!(DEFAULT_CREDIT + growth, MAX_FRAME_BODY);
        // And the setting is accepted (rust-yamux asserts it leaves every stream 256 KiB).
        let _ = config();
    }
}
