//! The application code every raw transport runs: 4-byte big-endian length-prefixed frames,
//! one `write_all` per message (no batching by the application), read through a buffer.

use std::io;

use futures::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};

/// A byte stream both ways.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Duplex for T {}

/// One frame of `size` bytes (prefix included).
pub fn frame(size: usize) -> Vec<u8> {
    let mut f = vec![0x5a; 4 + size];
    f[..4].copy_from_slice(&(size as u32).to_be_bytes());
    f
}

/// Writes `count` frames of `size` bytes, one write each, then flushes.
pub async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    count: usize,
    size: usize,
) -> io::Result<()> {
    let f = frame(size);
    for _ in 0..count {
        w.write_all(&f).await?;
    }
    w.flush().await
}

/// Reads frames one by one (each parsed and copied out).
pub struct FrameReader<R> {
    inner: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R) -> Self {
        Self {
            inner: BufReader::with_capacity(64 * 1024, r),
            buf: Vec::new(),
        }
    }

    /// The next frame's payload.
    pub async fn next(&mut self) -> io::Result<&[u8]> {
        let mut len = [0u8; 4];
        self.inner.read_exact(&mut len).await?;
        let n = u32::from_be_bytes(len) as usize;
        self.buf.resize(n, 0);
        self.inner.read_exact(&mut self.buf).await?;
        Ok(&self.buf)
    }
}
