//! Unsigned LEB128 varints (protobuf / Go `encoding/binary` uvarint).

/// The longest valid uvarint: 10 bytes for a `u64`.
pub const MAX_LEN: usize = 10;

/// What reading a varint from the front of a buffer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// A complete varint: its value and how many bytes it took.
    Value(u64, usize),
    /// The buffer ends inside the varint; more bytes are needed.
    Incomplete,
}

/// A varint that can never be valid, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("varint overflows u64")]
pub struct Overflow;

/// Reads one uvarint from the front of `buf`.
///
/// Follows Go's `binary.ReadUvarint`: at most 10 bytes, and the 10th byte must be `<= 1`.
/// Non-minimal encodings (such as `86 00` for 6) are accepted, as Go accepts them.
pub fn read(buf: &[u8]) -> Result<Read, Overflow> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate() {
        if i == MAX_LEN - 1 && byte > 1 {
            return Err(Overflow);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Read::Value(value, i + 1));
        }
    }
    Ok(Read::Incomplete)
}

/// The number of bytes `value` takes as a uvarint.
pub const fn len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as a uvarint to `out`.
pub fn put(mut value: u64, out: &mut impl bytes::BufMut) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        for (v, n) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            (u64::MAX, 10),
        ] {
            assert_eq!(len(v), n, "len({v})");
            let mut b = Vec::new();
            put(v, &mut b);
            assert_eq!(b.len(), n);
            assert_eq!(read(&b), Ok(Read::Value(v, n)));
        }
    }

    #[test]
    fn overflow_rules() {
        assert_eq!(
            read(&hex::decode("ffffffffffffffffff02").unwrap()),
            Err(Overflow)
        );
        assert_eq!(
            read(&hex::decode("ffffffffffffffffff8101").unwrap()),
            Err(Overflow)
        );
        assert_eq!(
            read(&hex::decode("ffffffffffffffffff01").unwrap()),
            Ok(Read::Value(u64::MAX, 10))
        );
        assert_eq!(read(&[0x86]), Ok(Read::Incomplete));
        assert_eq!(read(&[0x86, 0x00]), Ok(Read::Value(6, 2)));
    }

    proptest! {
        #[test]
        fn roundtrip(v: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut b = Vec::new();
            put(v, &mut b);
            prop_assert_eq!(b.len(), len(v));
            b.extend_from_slice(&tail);
            prop_assert_eq!(read(&b), Ok(Read::Value(v, len(v))));
        }

        #[test]
        fn never_panics(b in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = read(&b);
        }
    }
}
