//! Health, readiness and a debug dump of a node, all serde-serialisable.

use std::time::{Duration, SystemTime};

use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use crate::peer::State;
use crate::stats::PeerStats;

/// Liveness and readiness of a node, from [`Node::health`](crate::Node::health).
///
/// Its JSON form (`serde_json::to_string(&health)`) is what a `/health` endpoint serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// Live: started, not shut down, listening, and the driver task running.
    pub healthy: bool,
    /// Healthy and at least one peer Established.
    pub ready: bool,
    /// [`Node::start`](crate::Node::start) succeeded.
    pub started: bool,
    /// [`Node::shutdown`](crate::Node::shutdown) was called (or every handle dropped).
    pub shut_down: bool,
    /// At least one listen address is bound.
    pub listening: bool,
    /// The task that owns the swarm is running.
    pub driver_alive: bool,
    /// Peers Established.
    pub established_peers: usize,
    /// Peers Connected or Established.
    pub connected_peers: usize,
    /// The bound listen addresses.
    #[serde(serialize_with = "addrs")]
    pub listen_addrs: Vec<Multiaddr>,
    /// When this was measured.
    #[serde(with = "crate::ser::time_rfc3339")]
    pub checked_at: SystemTime,
}

fn addrs<S: serde::Serializer>(a: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(a.iter().map(|a| a.to_string()))
}

/// The address book in numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookSummary {
    /// Entries, blacklisted ones included.
    pub total_peers: usize,
    /// Blacklisted entries.
    pub blacklisted_peers: usize,
    /// Every entry's `PeerId`.
    pub peer_ids: Vec<String>,
}

/// The flow-control state of one (peer, stream) send queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowState {
    /// The peer.
    #[serde(serialize_with = "crate::ser::peer_id")]
    pub peer: PeerId,
    /// The stream name.
    pub stream: String,
    /// Messages queued and not yet taken by the writer.
    pub queued: usize,
    /// The most ever queued at once.
    pub peak: usize,
    /// Whether senders wait (the queue reached the high watermark and has not drained to the
    /// low one).
    pub blocked: bool,
}

/// The settings that matter most when reading a debug dump.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigSummary {
    /// Handshake timeout (`None`: disabled).
    #[serde(serialize_with = "crate::ser::opt_duration_secs")]
    pub handshake_timeout: Option<Duration>,
    /// Longest reconnection delay.
    #[serde(serialize_with = "crate::ser::duration_secs")]
    pub reconnect_max_delay: Duration,
    /// Reconnection attempts (`None`: unlimited).
    pub reconnect_max_attempts: Option<u32>,
    /// Flow control high watermark, in messages.
    pub high_watermark: usize,
    /// Flow control low watermark, in messages.
    pub low_watermark: usize,
    /// Largest message, in bytes.
    pub max_message_size: usize,
    /// Capacity of the message queue.
    pub message_buffer_size: usize,
    /// Capacity of each event subscription.
    pub event_buffer_size: usize,
}

/// Everything about a node at one moment, from [`Node::debug_state`](crate::Node::debug_state):
/// serialise it to JSON for a debug endpoint or a bug report. It holds no key material (only
/// the public key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebugState {
    /// This node.
    #[serde(serialize_with = "crate::ser::peer_id")]
    pub peer_id: PeerId,
    /// Its Ed25519 public key, hex.
    pub public_key: String,
    /// The crate version.
    pub version: &'static str,
    /// Health at the same moment.
    pub health: Health,
    /// The address book.
    pub address_book: BookSummary,
    /// Main settings.
    pub config: ConfigSummary,
    /// Every peer the node is not Disconnected from, with its state.
    #[serde(serialize_with = "states")]
    pub peer_states: Vec<(PeerId, State)>,
    /// Statistics of every peer the node keeps statistics for.
    pub peers: Vec<PeerStats>,
    /// Every open send queue.
    pub flow_controllers: Vec<FlowState>,
    /// When this was captured.
    #[serde(with = "crate::ser::time_rfc3339")]
    pub captured_at: SystemTime,
}

fn states<S: serde::Serializer>(v: &[(PeerId, State)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(p, st)| (p.to_string(), st)))
}
