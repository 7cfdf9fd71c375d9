//! Micro-benchmarks of the wire and crypto cores: framing, seal and open, key derivation.
//!
//! ```text
//! cargo bench -p glueberry --bench micro
//! ```

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use glueberry::unstable::crypto::{Cipher, LocalKey, NONCE_LEN, OVERHEAD};
use glueberry::unstable::wire::{self as codec, Decoder};
use tokio_util::codec::Decoder as _;

const SIZES: [usize; 3] = [256, 4096, 64 * 1024];

/// One encrypted frame of `plaintext` appended to `buf`, as the writer task builds it.
fn encode(buf: &mut BytesMut, plaintext: &[u8], cipher: &Cipher) {
    codec::put_header(plaintext.len() + OVERHEAD, buf);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; NONCE_LEN]);
    buf.extend_from_slice(plaintext);
    let tag = cipher.seal_in_place(&mut buf[start..]);
    buf.extend_from_slice(&tag);
}

fn framing(c: &mut Criterion) {
    let mut g = c.benchmark_group("framing");
    for size in SIZES {
        let body = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("encode_plain", size), &body, |b, body| {
            let mut buf = BytesMut::with_capacity(size + 16);
            b.iter(|| {
                buf.clear();
                codec::put_header(body.len(), &mut buf);
                buf.extend_from_slice(body);
                black_box(&buf);
            })
        });
        let mut frame = BytesMut::new();
        codec::put_header(size, &mut frame);
        frame.extend_from_slice(&body);
        let frame = frame.freeze();
        g.bench_with_input(BenchmarkId::new("decode", size), &frame, |b, frame| {
            let mut decoder = Decoder::new(1 << 20);
            b.iter(|| {
                let mut src = BytesMut::from(&frame[..]);
                black_box(decoder.decode(&mut src).unwrap().unwrap());
            })
        });
    }
    g.finish();
}

fn aead(c: &mut Criterion) {
    let cipher = Cipher::new(&[9u8; 32]);
    let mut g = c.benchmark_group("aead");
    for size in SIZES {
        let plaintext = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("seal_frame", size), &plaintext, |b, p| {
            let mut buf = BytesMut::with_capacity(size + 64);
            b.iter(|| {
                buf.clear();
                encode(&mut buf, p, &cipher);
                black_box(&buf);
            })
        });
        let mut sealed = BytesMut::new();
        encode(&mut sealed, &plaintext, &cipher);
        // The body without the frame prefix.
        let body = sealed.split_off(sealed.len() - (size + OVERHEAD));
        g.bench_with_input(BenchmarkId::new("open", size), &body, |b, body| {
            b.iter(|| {
                let mut copy = body.clone();
                black_box(cipher.open_in_place(&mut copy).unwrap());
            })
        });
    }
    g.finish();
}

fn keys(c: &mut Criterion) {
    let local = LocalKey::from_ed25519_seed(&[1u8; 32]);
    let remote = libp2p::identity::ed25519::Keypair::generate()
        .public()
        .to_bytes();
    c.bench_function("key_derivation (X25519 + HKDF-SHA256)", |b| {
        b.iter(|| black_box(local.stream_key(black_box(&remote)).unwrap()))
    });
}

criterion_group!(benches, framing, aead, keys);
criterion_main!(benches);
