//! The Glueberry v1 frame: `uvarint(outer) ‖ uvarint(inner) ‖ body`.
//!
//! `inner = len(body)` and `outer = len(uvarint(inner)) + inner`: Go Glueberry writes a
//! Cramberry-marshalled `[]byte` (one prefix) inside a Cramberry delimited message (another
//! prefix). Bytes after the inner body inside the outer frame are ignored, as Go ignores them.

use bytes::{Buf, BufMut, BytesMut};

use super::varint;

/// Cramberry's limit on the outer length: 64 MiB. A frame may be exactly this long.
pub const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

/// The most the decoder reserves ahead of the bytes it has.
pub const RESERVE_STEP: usize = 64 * 1024;

/// The length of the outer frame (what the outer prefix announces) for a body of `body_len`.
pub const fn outer_len(body_len: usize) -> usize {
    varint::len(body_len as u64) + body_len
}

/// The number of bytes on the wire for a body of `body_len`: both prefixes and the body.
#[cfg(test)]
pub const fn wire_len(body_len: usize) -> usize {
    let outer = outer_len(body_len);
    varint::len(outer as u64) + outer
}

/// Writes both length prefixes for a body of `body_len` bytes; the body must follow.
pub fn put_header(body_len: usize, out: &mut impl BufMut) {
    varint::put(outer_len(body_len) as u64, out);
    varint::put(body_len as u64, out);
}

/// Why a byte stream is not a valid sequence of frames. Every variant is fatal for the
/// stream: framing is lost and nothing after it can be trusted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A length prefix is longer than 10 bytes or its 10th byte is above 1.
    #[error("length prefix overflows u64")]
    VarintOverflow,
    /// The outer length is 0, which Go rejects as an invalid varint.
    #[error("empty frame (outer length 0)")]
    EmptyFrame,
    /// The outer length is above the receive limit; nothing was allocated for it.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced outer length.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// The inner length prefix or the inner body runs past the end of the outer frame.
    #[error("inner length runs past the end of the frame")]
    InnerOverrun,
    /// The stream ended part-way through a frame body.
    #[error("stream ended inside a frame")]
    Truncated,
    /// Reading the stream failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into frame bodies, checking each length before allocating for it.
///
/// The end-of-stream rules follow the Go reader: a stream that ends inside a length prefix, or
/// right after a complete outer prefix, ends cleanly; a stream that ends inside a body is
/// [`DecodeError::Truncated`].
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame_len: usize,
}

impl Decoder {
    /// A decoder that refuses outer frames longer than `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }
}

impl tokio_util::codec::Decoder for Decoder {
    type Item = BytesMut;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        let (outer, prefix) = match varint::read(src) {
            Err(varint::Overflow) => return Err(DecodeError::VarintOverflow),
            Ok(varint::Read::Incomplete) => return Ok(None),
            Ok(varint::Read::Value(v, n)) => (v, n),
        };
        if outer == 0 {
            return Err(DecodeError::EmptyFrame);
        }
        if outer > self.max_frame_len as u64 {
            return Err(DecodeError::FrameTooLarge {
                len: outer,
                max: self.max_frame_len,
            });
        }
        let total = prefix + outer as usize;
        if src.len() < total {
            // Grow with the bytes that arrive, never by what the peer merely announced: a
            // prefix alone must not make the node allocate the whole frame.
            src.reserve((total - src.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        frame.advance(prefix);
        match varint::read(&frame) {
            Err(varint::Overflow) => Err(DecodeError::VarintOverflow),
            Ok(varint::Read::Incomplete) => Err(DecodeError::InnerOverrun),
            Ok(varint::Read::Value(inner, n)) => {
                if inner > (frame.len() - n) as u64 {
                    return Err(DecodeError::InnerOverrun);
                }
                frame.advance(n);
                frame.truncate(inner as usize);
                Ok(Some(frame))
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, DecodeError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if src.is_empty() {
            return Ok(None);
        }
        match varint::read(src) {
            Ok(varint::Read::Value(_, n)) if n < src.len() => Err(DecodeError::Truncated),
            _ => {
                src.clear();
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn decode_all(
    data: &[u8],
    max_frame_len: usize,
) -> (Vec<bytes::Bytes>, Option<DecodeError>) {
    use tokio_util::codec::Decoder as _;
    let mut dec = Decoder::new(max_frame_len);
    let mut buf = BytesMut::from(data);
    let mut out = Vec::new();
    loop {
        match dec.decode_eof(&mut buf) {
            Ok(Some(f)) => out.push(f.freeze()),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio_util::codec::Decoder as _;

    proptest! {
        #[test]
        fn roundtrip_split_anywhere(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cut in 0usize..4000,
        ) {
            let mut wire = Vec::new();
            for b in &bodies {
                put_header(b.len(), &mut wire);
                wire.extend_from_slice(b);
                prop_assert_eq!(wire_len(b.len()), {
                    let mut h = Vec::new(); put_header(b.len(), &mut h); h.len() + b.len()
                });
            }
            // Feed the bytes in two pieces: the decoder must not care where reads end.
            let cut = cut.min(wire.len());
            let mut dec = Decoder::new(MAX_FRAME_LEN);
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = dec.decode(&mut buf).unwrap() { got.push(f.to_vec()); }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = dec.decode_eof(&mut buf).unwrap() { got.push(f.to_vec()); }
            prop_assert_eq!(got, bodies);
        }

        #[test]
        fn arbitrary_bytes_never_panic_nor_overallocate(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut dec = Decoder::new(1024);
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
            prop_assert!(buf.capacity() <= 2048);
        }
    }

    #[test]
    fn an_announced_length_does_not_allocate_the_frame() {
        let mut dec = Decoder::new(MAX_FRAME_LEN);
        let mut buf = BytesMut::new();
        put_header(MAX_FRAME_LEN - 8, &mut buf);
        assert!(dec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 2 * RESERVE_STEP, "{}", buf.capacity());
    }

    #[test]
    fn limit_is_checked_before_allocating() {
        let mut dec = Decoder::new(1024);
        let mut buf = BytesMut::new();
        varint::put(1025, &mut buf);
        assert!(matches!(
            dec.decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                len: 1025,
                max: 1024
            })
        ));
        assert!(buf.capacity() < 1024);
        let mut buf = BytesMut::new();
        varint::put(1024, &mut buf);
        assert!(dec.decode(&mut buf).unwrap().is_none());
    }
}
