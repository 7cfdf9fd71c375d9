//! Internals exposed for glueberry's own tests, benchmarks and fuzz targets: the frame codec,
//! the stream cipher, the address-book file.
//!
//! **No stability promise.** Anything here may change or go in any release, patch releases
//! included, and nothing here is needed to use a [`Node`](crate::Node). The public API check
//! (`glueberry/public-api.txt`) leaves this module out.

/// The v1 encryption layer (docs/protocol.md, "Encryption").
pub mod crypto {
    pub use crate::crypto::{
        Cipher, HKDF_INFO, KEY_LEN, LocalKey, NONCE_LEN, OVERHEAD, OpenError, TAG_LEN, nonce,
        stream_key_from_shared, x25519_public_from_ed25519,
    };
}

/// The v1 framing (docs/protocol.md, "Framing").
pub mod wire {
    pub use crate::wire::codec::{DecodeError, Decoder, put_header};

    /// Unsigned LEB128 varints, as Go's `binary.PutUvarint`.
    pub mod varint {
        pub use crate::wire::varint::*;
    }
}

/// The sans-IO state machines: a peer's connection lifecycle, the built-in handshake.
pub mod machines {
    pub use crate::handshake::machine::{Action, Machine as Handshake};
    pub use crate::peer::{
        Backoff, Change, Input, Machine as Peer, Output, Params, Refused, Timer,
    };
}

/// The address-book file: parse, write, the locked store.
pub mod book {
    pub use crate::book::format::{Skipped, parse, parse_bans, write, write_with_bans};
    pub use crate::book::memory::Book;
    pub use crate::book::store::Store;
}
