//! ChaCha20-Poly1305 (RFC 8439) with the v1 body layout `nonce(12) ‖ ciphertext ‖ tag(16)`.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of the nonce at the front of a body.
pub const NONCE_LEN: usize = 12;
/// Length of the tag at the end of a body.
pub const TAG_LEN: usize = 16;
/// Bytes an encrypted body adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A body that cannot be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Shorter than nonce plus tag.
    #[error("encrypted body of {0} bytes is shorter than the 28-byte minimum")]
    TooShort(usize),
    /// The tag does not match: wrong key, or the body was altered.
    #[error("authentication failed (wrong key or altered body)")]
    BadTag,
}

/// The stream cipher of one peer pair. Cheap to share: sealing and opening take `&self`.
pub struct Cipher {
    key: LessSafeKey,
}

/// Random bytes from the operating system, taken a page at a time and handed out 12 at a time:
/// one `getrandom` call per 341 nonces instead of one per message (the call was a tenth of the
/// CPU time of a stream of small messages). Every nonce is still fresh OS randomness, used once.
struct NoncePool {
    bytes: [u8; POOL_LEN],
    used: usize,
}

const POOL_LEN: usize = 341 * NONCE_LEN;

impl NoncePool {
    fn take(&mut self, out: &mut [u8]) {
        if self.used + NONCE_LEN > POOL_LEN {
            SystemRandom::new()
                .fill(&mut self.bytes)
                .expect("the system random source works");
            self.used = 0;
        }
        out.copy_from_slice(&self.bytes[self.used..self.used + NONCE_LEN]);
        // Spent bytes are wiped, so that no nonce is handed out twice even if `used` were wrong.
        self.bytes[self.used..self.used + NONCE_LEN].fill(0);
        self.used += NONCE_LEN;
    }
}

thread_local! {
    static NONCES: std::cell::RefCell<NoncePool> = const {
        std::cell::RefCell::new(NoncePool { bytes: [0; POOL_LEN], used: POOL_LEN })
    };
}

/// Fills `out` (12 bytes) with a fresh random nonce.
fn random_nonce(out: &mut [u8]) {
    NONCES.with_borrow_mut(|pool| pool.take(out));
}

impl Cipher {
    /// A cipher for the 32-byte stream key.
    pub fn new(key: &[u8; 32]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Encrypts `buf[NONCE_LEN..]` in place with a random nonce written to `buf[..NONCE_LEN]`,
    /// and returns the tag to append. `buf` must start with `NONCE_LEN` bytes of room.
    pub fn seal_in_place(&self, buf: &mut [u8]) -> [u8; TAG_LEN] {
        let (nonce_bytes, plaintext) = buf.split_at_mut(NONCE_LEN);
        random_nonce(nonce_bytes);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes).expect("12 bytes");
        self.seal_with_nonce(nonce, plaintext)
    }

    /// Encrypts in place with a given nonce. Only for test vectors: real nonces are random.
    pub fn seal_with_nonce(&self, nonce: Nonce, plaintext: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), plaintext)
            .expect("ChaCha20-Poly1305 seals any length below 256 GiB");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts a whole body in place and returns the range of `body` that holds the plaintext.
    pub fn open_in_place(&self, body: &mut [u8]) -> Result<std::ops::Range<usize>, OpenError> {
        if body.len() < OVERHEAD {
            return Err(OpenError::TooShort(body.len()));
        }
        let (nonce_bytes, rest) = body.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes).expect("12 bytes");
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), rest)
            .map_err(|_| OpenError::BadTag)?;
        Ok(NONCE_LEN..NONCE_LEN + plain.len())
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

/// Re-exported so vector tests can build fixed nonces.
pub fn nonce(bytes: [u8; NONCE_LEN]) -> Nonce {
    aead::Nonce::assume_unique_for_key(bytes)
}
