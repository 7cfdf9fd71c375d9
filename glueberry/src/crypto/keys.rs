//! Key material: X25519 from Ed25519 identities, and the per-pair stream key.

use ed25519_dalek::{SigningKey, VerifyingKey};
use ring::hkdf;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};

/// The HKDF `info` of the v1 stream key.
pub const HKDF_INFO: &[u8] = b"glueberry-v1-stream-key";

/// Length of every key here, in bytes.
pub const KEY_LEN: usize = 32;

/// Why a remote public key cannot give a stream key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is not 32 bytes long.
    #[error("Ed25519 public key must be 32 bytes, got {0}")]
    WrongLength(usize),
    /// The 32 bytes do not encode a point of the curve.
    #[error("Ed25519 public key is not a valid curve point")]
    NotACurvePoint,
    /// The key has low order: the X25519 shared secret is all zeros.
    #[error("low-order public key: the X25519 shared secret is all zeros")]
    LowOrder,
}

/// The local side of the key agreement, made from the node's Ed25519 identity.
pub struct LocalKey {
    secret: StaticSecret,
}

impl LocalKey {
    /// From the 32-byte Ed25519 seed: the X25519 scalar is `SHA-512(seed)[0..32]`, clamped
    /// when used (libsodium's `crypto_sign_ed25519_sk_to_curve25519`).
    pub fn from_ed25519_seed(seed: &[u8; 32]) -> Self {
        let scalar = SigningKey::from_bytes(seed).to_scalar_bytes();
        Self {
            secret: StaticSecret::from(scalar),
        }
    }

    /// The clamped X25519 private scalar (for test vectors; never log it).
    pub fn x25519_secret_bytes(&self) -> [u8; 32] {
        let mut k = self.secret.to_bytes();
        k[0] &= 248;
        k[31] &= 127;
        k[31] |= 64;
        k
    }

    /// The X25519 public key matching this secret.
    pub fn x25519_public(&self) -> [u8; 32] {
        XPublic::from(&self.secret).to_bytes()
    }

    /// The raw X25519 shared secret with the peer whose Ed25519 public key is `remote`.
    /// All-zero secrets are refused.
    pub fn shared_secret(&self, remote_ed25519: &[u8]) -> Result<[u8; 32], KeyError> {
        let remote = x25519_public_from_ed25519(remote_ed25519)?;
        let shared = self.secret.diffie_hellman(&XPublic::from(remote));
        if !shared.was_contributory() {
            return Err(KeyError::LowOrder);
        }
        Ok(shared.to_bytes())
    }

    /// The v1 stream key shared with the peer whose Ed25519 public key is `remote`:
    /// `HKDF-SHA256(ikm = X25519(local, remote), salt = none, info = "glueberry-v1-stream-key")`.
    pub fn stream_key(&self, remote_ed25519: &[u8]) -> Result<[u8; KEY_LEN], KeyError> {
        let shared = self.shared_secret(remote_ed25519)?;
        Ok(stream_key_from_shared(&shared))
    }
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalKey(..)")
    }
}

/// HKDF-SHA256 of a raw X25519 secret, no salt, info [`HKDF_INFO`], 32 bytes.
pub fn stream_key_from_shared(shared: &[u8; 32]) -> [u8; KEY_LEN] {
    // An empty salt is HMAC-padded to the zero block, the same as RFC 5869's "no salt".
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(shared);
    let mut key = [0u8; KEY_LEN];
    prk.expand(&[HKDF_INFO], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut key))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

/// Maps an Ed25519 public key to its X25519 (Montgomery u) public key: `u = (1+y)/(1-y)`.
/// Non-canonical encodings of valid points are accepted, as Go accepts them.
pub fn x25519_public_from_ed25519(ed25519: &[u8]) -> Result<[u8; 32], KeyError> {
    let bytes: &[u8; 32] = ed25519
        .try_into()
        .map_err(|_| KeyError::WrongLength(ed25519.len()))?;
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::NotACurvePoint)?;
    Ok(key.to_montgomery().to_bytes())
}
