//! Serde helpers for the JSON forms of statistics, health and debug state: `PeerId`s as
//! strings, times as RFC 3339, durations as seconds.

use std::time::{Duration, SystemTime};

use libp2p::PeerId;
use serde::Serializer;

pub(crate) fn peer_id<S: Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

pub(crate) fn duration_secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn opt_duration_secs<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `SystemTime` as an RFC 3339 string.
pub(crate) mod time_rfc3339 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&rfc3339(*t))
    }
}

/// `Option<SystemTime>` as an RFC 3339 string or null.
pub(crate) mod opt_time {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&rfc3339(*t)),
            None => s.serialize_none(),
        }
    }
}
