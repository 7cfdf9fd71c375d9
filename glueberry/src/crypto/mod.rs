//! The v1 encryption layer: X25519 from Ed25519 identities, HKDF-SHA256, ChaCha20-Poly1305.
//!
//! One key per peer pair, for both directions and every stream, with random 96-bit nonces and
//! no associated data: exactly what Go Glueberry does, so that both can talk. The layer sits
//! inside libp2p's Noise or QUIC-TLS, which already authenticate and encrypt the connection.

mod cipher;
mod keys;

pub use cipher::{Cipher, NONCE_LEN, OVERHEAD, OpenError, TAG_LEN, nonce};
pub use keys::{
    HKDF_INFO, KEY_LEN, KeyError, LocalKey, stream_key_from_shared, x25519_public_from_ed25519,
};

#[cfg(test)]
mod vectors;
