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

/// Sends every frame read from `r` back on `w` (one write and flush each) until either side ends.
pub async fn echo<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(r: &mut FrameReader<R>, w: &mut W) {
    let mut out = Vec::new();
    while let Ok(f) = r.next().await {
        out.clear();
        out.extend_from_slice(&(f.len() as u32).to_be_bytes());
        out.extend_from_slice(f);
        if w.write_all(&out).await.is_err() || w.flush().await.is_err() {
            break;
        }
    }
}

/// Sends `count` frames of `size` bytes on `s`, each once the previous one came back; returns
/// each round trip.
pub async fn round_trips<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    count: usize,
    size: usize,
) -> Vec<std::time::Duration> {
    let (r, mut w) = s.split();
    let mut r = FrameReader::new(r);
    let f = frame(size);
    let mut rtts = Vec::with_capacity(count);
    for _ in 0..count {
        let t = std::time::Instant::now();
        w.write_all(&f).await.unwrap();
        w.flush().await.unwrap();
        r.next().await.unwrap();
        rtts.push(t.elapsed());
    }
    rtts
}
