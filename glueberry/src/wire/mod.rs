//! Glueberry protocol v1 on the wire: protocol IDs, stream names and framing.
//!
//! Everything here is sans-IO and byte-exact with Go Glueberry; `docs/protocol.md` states the
//! format in prose.

pub mod codec;
pub mod protocol;
pub mod varint;

pub use codec::{DecodeError, Decoder, MAX_FRAME_LEN};
pub use protocol::{HANDSHAKE, HANDSHAKE_PROTOCOL, NameError, protocol_id};
