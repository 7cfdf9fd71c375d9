//! The peers of the book in memory: plain data, no I/O.

use std::collections::BTreeMap;

use libp2p::{Multiaddr, PeerId};
use time::OffsetDateTime;

use super::Entry;

/// The peers of the book. Plain data: the driver owns it and hands snapshots to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    peers: BTreeMap<PeerId, Entry>,
    /// Timed bans, peer → end (kept until they expire, also for peers not in the book).
    bans: BTreeMap<PeerId, OffsetDateTime>,
}

impl Book {
    /// A book with these entries.
    pub fn from_entries(peers: BTreeMap<PeerId, Entry>) -> Self {
        Self {
            peers,
            bans: BTreeMap::new(),
        }
    }

    /// The book with these timed bans.
    pub fn with_bans(mut self, bans: BTreeMap<PeerId, OffsetDateTime>) -> Self {
        self.bans = bans;
        self
    }

    /// Records a ban of `peer` until `until` (a longer one stands).
    pub fn ban(&mut self, peer: PeerId, until: OffsetDateTime) {
        let end = self.bans.entry(peer).or_insert(until);
        *end = (*end).max(until);
    }

    /// Forgets `peer`'s ban; whether it had one.
    pub fn unban(&mut self, peer: &PeerId) -> bool {
        self.bans.remove(peer).is_some()
    }

    /// The timed bans, peer → end.
    pub fn bans(&self) -> &BTreeMap<PeerId, OffsetDateTime> {
        &self.bans
    }

    fn entry(&mut self, peer: PeerId, now: OffsetDateTime) -> &mut Entry {
        self.peers.entry(peer).or_insert_with(|| Entry {
            peer,
            addrs: Vec::new(),
            raw_addrs: Vec::new(),
            public_key: None,
            metadata: BTreeMap::new(),
            last_seen: None,
            blacklisted: false,
            created_at: now,
            updated_at: now,
        })
    }

    /// Adds `peer`, or replaces its addresses and (if given) its metadata.
    pub fn add(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        metadata: Option<BTreeMap<String, String>>,
        now: OffsetDateTime,
    ) {
        let e = self.entry(peer, now);
        e.raw_addrs = addrs.iter().map(ToString::to_string).collect();
        e.addrs = addrs;
        if let Some(m) = metadata {
            e.metadata = m;
        }
        e.updated_at = now;
    }

    /// Removes `peer`; false if it was not there.
    pub fn remove(&mut self, peer: &PeerId) -> bool {
        self.peers.remove(peer).is_some()
    }

    /// Blacklists or unblacklists `peer`, making an entry for it if needed (a peer can be
    /// blacklisted without being in the book, so that the blacklist persists).
    pub fn set_blacklisted(&mut self, peer: PeerId, blacklisted: bool, now: OffsetDateTime) {
        if !blacklisted && !self.peers.contains_key(&peer) {
            return;
        }
        let e = self.entry(peer, now);
        e.blacklisted = blacklisted;
        e.updated_at = now;
    }

    /// Records the peer's public key; false (nothing changed) if the peer is not in the book
    /// or the key is already the one recorded.
    pub fn set_public_key(&mut self, peer: &PeerId, key: [u8; 32], now: OffsetDateTime) -> bool {
        match self.peers.get_mut(peer) {
            Some(e) if e.public_key != Some(key) => {
                e.public_key = Some(key);
                e.updated_at = now;
                true
            }
            _ => false,
        }
    }

    /// Records that the peer was seen now; false if it is not in the book.
    pub fn touch(&mut self, peer: &PeerId, now: OffsetDateTime) -> bool {
        match self.peers.get_mut(peer) {
            Some(e) => {
                e.last_seen = Some(now);
                true
            }
            None => false,
        }
    }

    /// The entry of `peer`.
    pub fn get(&self, peer: &PeerId) -> Option<&Entry> {
        self.peers.get(peer)
    }

    /// Every entry, blacklisted ones included, in `PeerId` order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.peers.values()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The file content for this book.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::format::write_with_bans(self.peers.values(), &self.bans)
    }
}
