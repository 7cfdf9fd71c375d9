//! Go Glueberry's defaults (its code, not its docs), and ours for what it lacks.

use std::time::Duration;

/// Time from Connected to a finalized handshake before the peer is put in cooldown.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnection delay.
pub const RECONNECT_BASE_DELAY: Duration = Duration::from_secs(1);
/// Longest reconnection delay.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(300);
/// Reconnection attempts before giving up.
pub const RECONNECT_MAX_ATTEMPTS: u32 = 10;
/// Cooldown after a handshake timeout.
pub const FAILED_HANDSHAKE_COOLDOWN: Duration = Duration::from_secs(60);
/// Capacity of each event subscription.
pub const EVENT_BUFFER_SIZE: usize = 100;
/// Messages one peer may have waiting for the application.
pub const MESSAGE_BUFFER_SIZE: usize = 1000;
/// What one handshaked peer may make the node hold of received data, in bytes.
pub const PEER_RECEIVE_BUDGET: usize = 16 * 1024 * 1024;
/// What one peer that has not finished the handshake may make the node hold, in bytes.
pub const STRANGER_RECEIVE_BUDGET: usize = 2 * 1024 * 1024;
/// What all such peers together may make the node hold, in bytes.
pub const STRANGERS_RECEIVE_BUDGET: usize = 32 * 1024 * 1024;
/// What all peers together may make the node hold of received data, in bytes.
pub const RECEIVE_BUDGET: usize = 256 * 1024 * 1024;
/// Flow control: queued messages at which senders block.
pub const HIGH_WATERMARK: usize = 1000;
/// Flow control: queued messages at which blocked senders resume.
pub const LOW_WATERMARK: usize = 100;
/// Largest plaintext message, in bytes (inclusive).
pub const MAX_MESSAGE_SIZE: usize = 1024 * 1024;
/// Largest message on the handshake stream, in bytes (inclusive): it is open to every
/// connected peer, handshaked or not (Go's handshake messages are tens of bytes).
pub const MAX_HANDSHAKE_MESSAGE_SIZE: usize = 16 * 1024;
/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LENGTH: usize = 64;
/// Largest address-book metadata, as the sum of key and value lengths in bytes.
pub const MAX_METADATA_SIZE: usize = 4096;
/// Connection-count low watermark (Go's connmgr).
pub const CONN_LOW_WATERMARK: usize = 100;
/// Connection-count high watermark (Go's connmgr): the most established connections.
pub const CONN_HIGH_WATERMARK: usize = 400;
/// Established connections per peer: two, so that a duplicate from a simultaneous dial or
/// a restarted peer's new connection can coexist with the old one until it is settled.
pub const MAX_CONNECTIONS_PER_PEER: usize = 2;
/// Inbound connections in their security handshake at once; the oldest is evicted for a
/// new one.
pub const MAX_PENDING_INBOUND: usize = 128;
/// Inbound connections from one IP address that have not finished the application
/// handshake (in their security handshake, or from a stranger).
pub const MAX_INBOUND_PER_IP: usize = 16;
/// Connections from strangers (inbound, from peers neither in the address book nor
/// handshaked); the oldest is evicted for a new one.
pub const MAX_STRANGERS: usize = 64;
/// Time a new connection has to finish its security handshake (Noise and yamux, or QUIC's).
pub const SECURITY_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a connection is pinged (libp2p-ping's default).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// How long a ping may take (libp2p-ping's default); also QUIC's idle timeout.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Time a peer has to complete a frame it started (1 MiB at 0.4 Mbit/s).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(20);
/// Dial timeout (hard-coded in Go).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bad frames tolerated on one stream before it is reset (Go never resets).
pub const MAX_STREAM_FAILURES: u32 = 8;
/// How often one peer's faults are reported (the rest are counted and carried).
pub const FAULT_REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// Faults of one peer within `FAULT_WINDOW` at which it is disconnected and kept out.
pub const MAX_FAULTS: u32 = 32;
/// The window `MAX_FAULTS` is counted in.
pub const FAULT_WINDOW: Duration = Duration::from_secs(10);
/// How long a peer disconnected for its faults is kept out.
pub const FAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// How long a retired duplicate connection stays after its last stream closed, so that
/// the last frames (stream closes, window updates) reach the peer.
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the statistics of a disconnected peer are kept (Go: 24 h).
pub const STATS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How often the statistics cleanup runs (Go: 1 h).
pub const STATS_CLEANUP_INTERVAL: Duration = Duration::from_secs(3600);
/// The most peers statistics are kept for; past it, the longest-disconnected is evicted.
pub const MAX_STATS_PEERS: usize = 10_000;
/// How long shutdown lets the stream writers write what is queued.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often batched address-book changes (`last_seen`, public keys) are written.
pub const BOOK_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// How long a peer the application rejected is kept out (`Node::reject_peer`, the built-in
/// handshake's check). Longer than a handshake timeout's cooldown: a rejection (a wrong chain)
/// does not mend itself in a minute.
pub const REJECTION_COOLDOWN: Duration = Duration::from_secs(300);

/// Longest delay between two reconnection attempts to a persistent peer (before ±10 % jitter).
pub const PERSISTENT_MAX_DELAY: Duration = Duration::from_secs(30);

/// Inbound streams one peer may open per second (one second's worth at once). A node opens one
/// per stream name and connection; a peer that opens and drops streams in a loop is held to it.
pub const MAX_NEW_STREAMS: u32 = 32;

/// Handshake streams one peer may open per minute (all at once): handshake attempts. An honest
/// peer opens one per connection, a few when both dial at once or when it restarts.
pub const MAX_HANDSHAKE_STREAMS: u32 = 30;

/// A peer's pings answered per second at most, over all its connections. Honest peers ping
/// every 15 s (go-libp2p) or `ping_interval`.
pub const MAX_PINGS: u32 = 100;
