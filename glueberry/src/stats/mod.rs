//! Per-peer and per-stream statistics.
//!
//! [`Node::peer_stats`](crate::Node::peer_stats) and
//! [`Node::all_peer_stats`](crate::Node::all_peer_stats) return [`PeerStats`] snapshots. The
//! counters behind them are atomics updated on the send and receive paths without a lock;
//! what changes per connection (state, connect times, round-trip time) is written by the driver
//! only. Stream entries exist only for the names prepared for a peer (and `handshake`), so
//! their number is bounded by the application.
//!
//! Byte counts are plaintext payload lengths, as in Go Glueberry, not wire bytes.
//!
//! A cleanup task removes the statistics of peers that have been disconnected for longer than
//! [`Config::with_stats_max_age`](crate::Config::with_stats_max_age).

pub(crate) mod cleanup;
mod registry;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use libp2p::PeerId;
use serde::Serialize;

use crate::peer::State;

pub(crate) use registry::{Handshake, PeerEntry, Registry, StreamCounters};

/// Messages a node did not deliver, by cause. Every one of them is also counted in the
/// `glueberry_messages_dropped_total{cause}` metric (or, for frames, in
/// `glueberry_decryption_errors_total` and `glueberry_stream_faults_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dropped {
    /// Outbound messages accepted by a send (queued) that were never written: their stream
    /// failed or closed, the peer's connection went, or the node shut down first. Every
    /// message a send accepted is either in `messages_written` or here (docs/concurrency.md,
    /// "Delivery accounting").
    pub stream_closed: u64,
    /// Outbound messages written on a stream the peer then reset (Go's rule when both sides
    /// open a name at once) that could not be written again on another stream of the name.
    /// They are counted in `messages_written` too: they may or may not have been read.
    pub reset_after_write: u64,
    /// Inbound frames whose body did not decrypt (wrong key, tampered, or too short).
    pub decryption_failed: u64,
    /// Inbound messages larger than `max_message_size`: a body that decrypted to more, or a
    /// frame announced over the frame limit (which also reset its stream, its framing being
    /// lost).
    pub oversized: u64,
    /// Inbound frames that broke the framing (bad prefix, inner length past the frame,
    /// truncated); each one also reset its stream.
    pub malformed: u64,
    /// Inbound messages received (and counted as received) but not handed to the message
    /// queue: the node shut down, or the peer's connection went, while the queue was full.
    pub undelivered: u64,
}

impl Dropped {
    fn add(&mut self, other: &Dropped) {
        self.stream_closed += other.stream_closed;
        self.reset_after_write += other.reset_after_write;
        self.decryption_failed += other.decryption_failed;
        self.oversized += other.oversized;
        self.malformed += other.malformed;
        self.undelivered += other.undelivered;
    }
}

/// Connections refused or evicted by admission since the node started, by cause
/// ([`Node::admission_stats`](crate::Node::admission_stats); docs/admission.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AdmissionStats {
    /// Inbound connections closed in their security handshake to make room for a newer one.
    pub pending_evicted: u64,
    /// Inbound connections refused by `max_inbound_per_ip`.
    pub per_ip: u64,
    /// Strangers' connections closed to make room for a newer one (`max_strangers`).
    pub stranger_evicted: u64,
    /// Strangers' connections refused by `conn_high_watermark`.
    pub total: u64,
    /// Strangers' connections refused by `max_inbound_connections`.
    pub inbound: u64,
    /// Older connections of a peer closed for its new one (`max_connections_per_peer`).
    pub superseded: u64,
    /// Peers disconnected and kept out for `fault_cooldown` after `max_faults` bad frames.
    pub faults: u64,
    /// Peers the application rejected, disconnected and kept out for `rejection_cooldown`.
    pub rejected: u64,
    /// Peers banned for their score (docs/scoring.md), at the ban or at start from the book.
    pub banned: u64,
}

impl AdmissionStats {
    /// The count for `cause`.
    pub fn get(&self, cause: crate::event::AdmissionCause) -> u64 {
        use crate::event::AdmissionCause as C;
        match cause {
            C::PendingEvicted => self.pending_evicted,
            C::PerIp => self.per_ip,
            C::StrangerEvicted => self.stranger_evicted,
            C::Total => self.total,
            C::Inbound => self.inbound,
            C::Superseded => self.superseded,
            C::Faults => self.faults,
            C::Rejected => self.rejected,
            C::Banned => self.banned,
        }
    }

    pub(crate) fn get_mut(&mut self, cause: crate::event::AdmissionCause) -> &mut u64 {
        use crate::event::AdmissionCause as C;
        match cause {
            C::PendingEvicted => &mut self.pending_evicted,
            C::PerIp => &mut self.per_ip,
            C::StrangerEvicted => &mut self.stranger_evicted,
            C::Total => &mut self.total,
            C::Inbound => &mut self.inbound,
            C::Superseded => &mut self.superseded,
            C::Faults => &mut self.faults,
            C::Rejected => &mut self.rejected,
            C::Banned => &mut self.banned,
        }
    }
}

/// Statistics of one named stream of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStats {
    /// The stream name.
    pub name: String,
    /// Messages accepted (queued) by a send: `send`, `try_send`, `send_written`, `broadcast`.
    pub messages_sent: u64,
    /// Messages written to the transport (each once, however often it was written again
    /// after a reset). Once nothing is queued, `messages_sent == messages_written +
    /// dropped.stream_closed`.
    pub messages_written: u64,
    /// Messages received and handed to the message queue.
    pub messages_received: u64,
    /// Plaintext bytes queued.
    pub bytes_sent: u64,
    /// Plaintext bytes delivered.
    pub bytes_received: u64,
    /// When the last message was queued.
    #[serde(with = "crate::ser::opt_time")]
    pub last_sent_at: Option<SystemTime>,
    /// When the last message was delivered.
    #[serde(with = "crate::ser::opt_time")]
    pub last_received_at: Option<SystemTime>,
    /// Sends that had to wait for the flow-control gate (the queue was at its high watermark).
    pub backpressure_waits: u64,
    /// Times reading this peer's stream paused because it was over the stream's rate quota
    /// (`Config::with_stream_quota`).
    pub quota_waits: u64,
    /// What was not delivered, by cause.
    pub dropped: Dropped,
    /// Streams of this name opened (by either side) and closed.
    pub streams_opened: u64,
    /// Streams of this name that ended.
    pub streams_closed: u64,
}

/// Statistics of one peer: a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerStats {
    /// The peer.
    #[serde(serialize_with = "crate::ser::peer_id")]
    pub peer: PeerId,
    /// Its state when the snapshot was taken.
    pub state: State,
    /// Whether the kept connection was dialled by this node (while connected).
    pub outbound: Option<bool>,
    /// When the current connection came up; `None` while disconnected.
    #[serde(with = "crate::ser::opt_time")]
    pub connected_at: Option<SystemTime>,
    /// Time spent connected, over every connection so far (the current one included).
    #[serde(serialize_with = "crate::ser::duration_secs")]
    pub total_connected: Duration,
    /// How many times the peer became connected (a first connection came up).
    pub connection_count: u64,
    /// Dials to the peer that failed.
    pub failed_attempts: u64,
    /// The last round-trip time measured by libp2p ping.
    #[serde(serialize_with = "crate::ser::opt_duration_secs")]
    pub last_rtt: Option<Duration>,
    /// Messages queued to the peer, every stream.
    pub messages_sent: u64,
    /// Messages written to the transport, every stream.
    pub messages_written: u64,
    /// Messages received from the peer, every stream.
    pub messages_received: u64,
    /// Plaintext bytes queued to the peer.
    pub bytes_sent: u64,
    /// Plaintext bytes received from the peer.
    pub bytes_received: u64,
    /// When the last message was sent or received.
    #[serde(with = "crate::ser::opt_time")]
    pub last_message_at: Option<SystemTime>,
    /// What was not delivered, by cause, every stream.
    pub dropped: Dropped,
    /// Inbound streams refused: before negotiation, over `max_new_streams` or past the 32 that
    /// may wait per connection for the swarm; after it, over `max_handshake_streams`, too many
    /// for one name, or from a peer whose connection was already gone. (A stream of a name not
    /// prepared for the peer fails negotiation and is not counted here, but it counts against
    /// `max_new_streams`.)
    pub refused_streams: u64,
    /// Per stream name.
    pub streams: BTreeMap<String, StreamStats>,
}

impl PeerStats {
    /// Whether the peer is Established (Go's `Connected`).
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Decryption failures on every stream (the same as `dropped.decryption_failed`).
    pub fn decryption_failures(&self) -> u64 {
        self.dropped.decryption_failed
    }
}

/// Memory held for received messages, from [`Node::inbox_stats`](crate::Node::inbox_stats).
///
/// Bytes are what peers made the node hold: the frames read and not yet taken by the
/// application, each message's fixed overhead, the rest of every frame whose length was read
/// (reserved before its body is read) and a read-ahead per stream (docs/concurrency.md,
/// "Receiving").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InboxStats {
    /// Bytes held now, every peer.
    pub held_bytes: usize,
    /// The most bytes held at once since the node started.
    pub peak_bytes: usize,
    /// Bytes held now for peers that have not finished the handshake.
    pub strangers_held_bytes: usize,
    /// The most bytes held at once for such peers.
    pub strangers_peak_bytes: usize,
    /// The most bytes one such peer made the node hold.
    pub stranger_peak_bytes: usize,
    /// The most bytes one handshaked peer made the node hold.
    pub peer_peak_bytes: usize,
    /// Messages waiting in every queue now.
    pub queued_messages: usize,
    /// Times a stream reader stopped reading because a budget was spent (backpressure).
    pub read_waits: u64,
    /// Messages dropped during shutdown because their peer was over its budget (counted per
    /// stream as `undelivered` too).
    pub dropped_at_shutdown: u64,
}
