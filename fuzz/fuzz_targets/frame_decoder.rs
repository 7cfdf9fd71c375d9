//! The v1 frame decoder (what every stream reader runs on peer bytes): never panics, never
//! yields a frame over its limit, and gives the same frames (and the same error) whether the
//! bytes come at once or in pieces; and a body framed with `put_header` decodes to itself. The
//! first byte sets the piece size.

#![no_main]

use bytes::BytesMut;
use glueberry::unstable::wire::{Decoder, put_header};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder as _;

const MAX: usize = 4096;

fn decode(input: &[u8], step: usize) -> (Vec<Vec<u8>>, Option<String>) {
    let mut decoder = Decoder::new(MAX);
    let (mut buf, mut frames) = (BytesMut::new(), Vec::new());
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX, "a frame of {} bytes", frame.len());
                    frames.push(frame.to_vec());
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = decode(input, input.len().max(1));
    let pieces = decode(input, usize::from(step % 64) + 1);
    assert_eq!(whole, pieces);
    // And what is framed decodes to itself (a body whose frame, with its inner prefix, fits
    // in `MAX`: the limit is on the frame).
    let body = &input[..input.len().min(MAX - 8)];
    let mut framed = Vec::new();
    put_header(body.len(), &mut framed);
    framed.extend_from_slice(body);
    assert_eq!(
        decode(&framed, usize::from(step % 7) + 1),
        (vec![body.to_vec()], None)
    );
});
