//! The address-book file format of Go Glueberry (version 1), parsed and written.
//!
//! ```json
//! {
//!   "version": 1,
//!   "peers": {
//!     "12D3KooW...": {
//!       "peer_id": "12D3KooW...",
//!       "public_key": "<base64 of the 32-byte Ed25519 key>",
//!       "metadata": {"name": "peer"},
//!       "last_seen": "0001-01-01T00:00:00Z",
//!       "blacklisted": false,
//!       "created_at": "2026-01-29T14:01:41.123456789+02:00",
//!       "updated_at": "2026-01-29T14:01:41.123456789+02:00",
//!       "multiaddrs": ["/ip4/127.0.0.1/tcp/9001"]
//!     }
//!   }
//! }
//! ```
//!
//! `public_key` and `metadata` are left out when empty; `last_seen` is Go's zero time when the
//! peer was never seen. Times are RFC 3339 with nanoseconds.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use libp2p::{Multiaddr, PeerId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Entry;

/// The only version this crate reads and writes.
pub const VERSION: u64 = 1;

/// Go's zero `time.Time`, written for "never".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Serialize, Deserialize)]
struct FileRepr {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    peers: BTreeMap<String, EntryRepr>,
    /// Timed bans (glueberry-rs only; Go's reader ignores the field): peer → RFC 3339 end.
    /// Read leniently (`parse_bans`): a malformed field costs the bans, not the book.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    bans: serde_json::Value,
}

/// The timed bans recorded in a book file, peer → end: entries that do not parse are left out
/// (a ban is a precaution, not data to keep). Nothing for a file that does not parse.
pub fn parse_bans(bytes: &[u8]) -> BTreeMap<PeerId, OffsetDateTime> {
    let Ok(file) = serde_json::from_slice::<FileRepr>(bytes) else {
        return BTreeMap::new();
    };
    let Some(bans) = file.bans.as_object() else {
        return BTreeMap::new();
    };
    bans.iter()
        .filter_map(|(peer, until)| {
            Some((
                peer.parse().ok()?,
                OffsetDateTime::parse(until.as_str()?, &Rfc3339).ok()?,
            ))
        })
        .collect()
}

#[derive(Serialize, Deserialize)]
struct EntryRepr {
    peer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    last_seen: Option<String>,
    #[serde(default)]
    blacklisted: bool,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    multiaddrs: Vec<String>,
}

/// Why a file's content is not a usable address book.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, wrong types, or values that mean nothing (peer IDs, keys, times).
    #[error("corrupt address book: {0}")]
    Corrupt(String),
    /// A `version` this crate does not know (a newer format): the file is left alone.
    #[error("address book version {0} is not supported (this crate reads version {VERSION})")]
    UnsupportedVersion(u64),
}

/// Something skipped while loading, worth a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The peer.
    pub peer: PeerId,
    /// The multiaddress that did not parse (kept in the file, not dialled).
    pub addr: String,
}

fn corrupt(what: impl std::fmt::Display) -> ParseError {
    ParseError::Corrupt(what.to_string())
}

fn parse_time(
    s: Option<&str>,
    field: &str,
    peer: &str,
) -> Result<Option<OffsetDateTime>, ParseError> {
    match s {
        None | Some(ZERO_TIME) | Some("") => Ok(None),
        Some(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| (t.year() > 1).then_some(t))
            .map_err(|e| corrupt(format!("{peer}: {field} {s:?}: {e}"))),
    }
}

fn format_time(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ZERO_TIME.to_owned())
}

/// Parses a whole file. Empty (or blank) content is an empty book, as in Go.
pub fn parse(bytes: &[u8]) -> Result<(BTreeMap<PeerId, Entry>, Vec<Skipped>), ParseError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((BTreeMap::new(), Vec::new()));
    }
    // serde would take a JSON array for a struct; the file is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(corrupt("not a JSON object"));
    }
    let file: FileRepr = serde_json::from_slice(bytes).map_err(corrupt)?;
    match file.version {
        None | Some(VERSION) => {}
        Some(v) => return Err(ParseError::UnsupportedVersion(v)),
    }
    let mut peers = BTreeMap::new();
    let mut skipped = Vec::new();
    for (key, e) in file.peers {
        let peer: PeerId = key
            .parse()
            .map_err(|err| corrupt(format!("peer ID {key:?}: {err}")))?;
        if e.peer_id != key {
            return Err(corrupt(format!(
                "entry {key:?} holds peer_id {:?}",
                e.peer_id
            )));
        }
        let public_key = match e.public_key.as_deref() {
            None | Some("") => None,
            Some(b64) => {
                let bytes = BASE64
                    .decode(b64)
                    .map_err(|err| corrupt(format!("{key}: public_key: {err}")))?;
                let key32: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                    corrupt(format!("{key}: public_key is {} bytes, not 32", b.len()))
                })?;
                Some(key32)
            }
        };
        let mut addrs = Vec::new();
        for raw in &e.multiaddrs {
            match raw.parse::<Multiaddr>() {
                Ok(a) => addrs.push(a),
                Err(_) => skipped.push(Skipped {
                    peer,
                    addr: raw.clone(),
                }),
            }
        }
        let now = OffsetDateTime::now_utc();
        let created_at = parse_time(e.created_at.as_deref(), "created_at", &key)?.unwrap_or(now);
        let updated_at = parse_time(e.updated_at.as_deref(), "updated_at", &key)?.unwrap_or(now);
        peers.insert(
            peer,
            Entry {
                peer,
                addrs,
                raw_addrs: e.multiaddrs,
                public_key,
                metadata: e.metadata,
                last_seen: parse_time(e.last_seen.as_deref(), "last_seen", &key)?,
                blacklisted: e.blacklisted,
                created_at,
                updated_at,
            },
        );
    }
    Ok((peers, skipped))
}

/// Writes a whole file, as Go's encoder lays it out (2-space indent, keys sorted).
pub fn write<'a>(entries: impl Iterator<Item = &'a Entry>) -> Vec<u8> {
    write_with_bans(entries, &BTreeMap::new())
}

/// [`write()`], with the timed bans.
pub fn write_with_bans<'a>(
    entries: impl Iterator<Item = &'a Entry>,
    bans: &BTreeMap<PeerId, OffsetDateTime>,
) -> Vec<u8> {
    let peers = entries
        .map(|e| {
            (
                e.peer.to_string(),
                EntryRepr {
                    peer_id: e.peer.to_string(),
                    public_key: e.public_key.map(|k| BASE64.encode(k)),
                    metadata: e.metadata.clone(),
                    last_seen: Some(format_time(e.last_seen)),
                    blacklisted: e.blacklisted,
                    created_at: Some(format_time(Some(e.created_at))),
                    updated_at: Some(format_time(Some(e.updated_at))),
                    multiaddrs: e.raw_addrs.clone(),
                },
            )
        })
        .collect();
    let file = FileRepr {
        version: Some(VERSION),
        peers,
        bans: if bans.is_empty() {
            serde_json::Value::Null
        } else {
            bans.iter()
                .map(|(p, until)| (p.to_string(), format_time(Some(*until)).into()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        },
    };
    let mut out = serde_json::to_vec_pretty(&file).expect("plain data serializes");
    out.push(b'\n');
    out
}
