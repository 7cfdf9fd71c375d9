//! The address book: the node's memory of its peers, persisted in Go Glueberry's JSON format
//! ([`Node::get_peer`](crate::Node::get_peer), [`Node::list_peers`](crate::Node::list_peers)).
//!
//! Inside, `Book` is the in-memory state (plain data, no I/O) and `Store` reads and writes the
//! file: atomically (temporary file, fsync, rename, fsync of the directory), under an advisory
//! lock held as long as the store is open, so that two processes never write one book.

pub(crate) mod format;
pub(crate) mod memory;
pub(crate) mod store;

use std::collections::BTreeMap;

use libp2p::{Multiaddr, PeerId};
use time::OffsetDateTime;

pub(crate) use format::Skipped;
pub use format::{ParseError, VERSION};
pub(crate) use memory::Book;
pub(crate) use store::Store;
pub use store::{BookError, MAX_FILE_SIZE, Recovered};

/// One peer of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The peer.
    pub peer: PeerId,
    /// Its addresses that parse (the ones dialled).
    pub addrs: Vec<Multiaddr>,
    /// Its addresses as stored, those that do not parse included (kept, never dropped).
    pub raw_addrs: Vec<String>,
    /// Its Ed25519 public key, once a handshake gave it.
    pub public_key: Option<[u8; 32]>,
    /// Application metadata.
    pub metadata: BTreeMap<String, String>,
    /// When a connection to it was last up; `None` if never.
    pub last_seen: Option<OffsetDateTime>,
    /// Whether it is blacklisted.
    pub blacklisted: bool,
    /// When the entry was made.
    pub created_at: OffsetDateTime,
    /// When the entry last changed (not counting `last_seen`).
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests;
