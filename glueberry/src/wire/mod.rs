//! Glueberry protocol v1 on the wire: protocol IDs, stream names and framing.
//!
//! Everything here is sans-IO and byte-exact with Go Glueberry; `docs/protocol.md` states the
//! format in prose.

pub(crate) mod codec;
pub(crate) mod protocol;
pub(crate) mod varint;

pub use codec::MAX_FRAME_LEN;
pub(crate) use codec::{DecodeError, Decoder};
pub use protocol::{
    HANDSHAKE, HANDSHAKE_PROTOCOL, NameError, protocol_id, validate_encrypted_name, validate_name,
};
