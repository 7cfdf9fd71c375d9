//! Node configuration: three required fields, everything else with Go Glueberry's default.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;
use libp2p::identity::ed25519;

use crate::crypto::OVERHEAD;
use crate::wire::{MAX_FRAME_LEN, codec};

pub mod defaults;
mod peers;
mod validate;

/// Why a [`Config`] is refused by [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No address-book path.
    #[error("address_book_path is empty")]
    MissingAddressBookPath,
    /// No listen address.
    #[error("listen_addrs is empty")]
    MissingListenAddrs,
    /// A size or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The reconnect delays are in the wrong order.
    #[error("reconnect_max_delay ({max:?}) is below reconnect_base_delay ({base:?})")]
    ReconnectDelays {
        /// Base delay.
        base: Duration,
        /// Maximum delay.
        max: Duration,
    },
    /// A low watermark is not below its high watermark.
    #[error("{what}: low watermark {low} must be below high watermark {high}")]
    Watermarks {
        /// Which pair.
        what: &'static str,
        /// Low watermark.
        low: usize,
        /// High watermark.
        high: usize,
    },
    /// `max_message_size` would make frames longer than the 64 MiB v1 limit.
    #[error("max_message_size {0} is above the protocol limit of {max}", max = Config::MAX_MESSAGE_SIZE_LIMIT)]
    MessageSizeAboveProtocolLimit(usize),
    /// A receive budget cannot hold what it must (docs/configuration.md, "Receive budgets").
    #[error("{what} of {budget} bytes is below the {needed} bytes it must hold")]
    BudgetTooSmall {
        /// Which budget.
        what: &'static str,
        /// Its value, in bytes.
        budget: usize,
        /// The least it may be, in bytes.
        needed: usize,
    },
    /// The built-in handshake's Hello does not fit in one handshake message.
    #[error(
        "the handshake Hello payload of {size} bytes is above {max} bytes (max_handshake_message_size minus the tag byte)"
    )]
    HelloTooLarge {
        /// The payload's length, in bytes.
        size: usize,
        /// The longest payload allowed, in bytes.
        max: usize,
    },
    /// The built-in handshake names a stream that cannot be encrypted.
    #[error("handshake stream {name:?}: {reason}")]
    HandshakeStream {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: crate::wire::protocol::NameError,
    },
    /// The built-in handshake prepares no stream.
    #[error("the built-in handshake names no stream to prepare")]
    NoHandshakeStreams,
    /// The scoring model is inconsistent.
    #[error("scoring: {0}")]
    Scoring(&'static str),
    /// A persistent peer cannot be kept connected as given.
    #[error("persistent peer {peer}: {reason}")]
    PersistentPeer {
        /// The peer.
        peer: libp2p::PeerId,
        /// What is wrong: no address, an address naming another peer, or this node itself.
        reason: &'static str,
    },
}

/// Everything a [`Node`](crate::Node) needs. Build it with [`Config::new`] and the `with_*`
/// setters; [`Node::new`](crate::Node::new) validates it.
///
/// ```
/// use std::time::Duration;
/// use glueberry::{Config, identity::ed25519};
///
/// let config = Config::new(
///     ed25519::Keypair::generate(),
///     "/var/lib/node/peers.json",
///     vec!["/ip4/0.0.0.0/tcp/9000".parse().unwrap(), "/ip4/0.0.0.0/udp/9000/quic-v1".parse().unwrap()],
/// )
/// .with_handshake_timeout(Some(Duration::from_secs(10)))
/// .with_reconnect_max_attempts(None) // validators: never give up
/// .with_max_inbound_per_ip(Some(8));
/// assert!(config.validate().is_ok());
/// assert!(config.clone().with_low_watermark(5000).validate().is_err());
/// ```
///
/// Where Go Glueberry turns a zero into its default, this type says "unlimited" or
/// "disabled" with `None`.
#[derive(Clone)]
pub struct Config {
    pub(crate) keypair: ed25519::Keypair,
    pub(crate) address_book_path: PathBuf,
    pub(crate) listen_addrs: Vec<Multiaddr>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) reconnect_base_delay: Duration,
    pub(crate) reconnect_max_delay: Duration,
    pub(crate) reconnect_max_attempts: Option<u32>,
    pub(crate) failed_handshake_cooldown: Duration,
    pub(crate) event_buffer_size: usize,
    pub(crate) message_buffer_size: usize,
    pub(crate) high_watermark: usize,
    pub(crate) low_watermark: usize,
    pub(crate) backpressure: bool,
    pub(crate) max_message_size: usize,
    pub(crate) max_handshake_message_size: usize,
    pub(crate) peer_receive_budget: usize,
    pub(crate) stranger_receive_budget: usize,
    pub(crate) strangers_receive_budget: usize,
    pub(crate) receive_budget: usize,
    pub(crate) stream_priorities: std::collections::HashMap<String, crate::message::Priority>,
    pub(crate) conn_low_watermark: usize,
    pub(crate) conn_high_watermark: usize,
    pub(crate) max_inbound_connections: Option<usize>,
    pub(crate) max_connections_per_peer: Option<usize>,
    pub(crate) max_pending_inbound: Option<usize>,
    pub(crate) max_inbound_per_ip: Option<usize>,
    pub(crate) max_strangers: Option<usize>,
    pub(crate) security_handshake_timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) ping_timeout: Duration,
    pub(crate) frame_timeout: Option<Duration>,
    pub(crate) max_stream_name_length: Option<usize>,
    pub(crate) max_metadata_size: Option<usize>,
    pub(crate) dial_timeout: Duration,
    pub(crate) max_stream_failures: Option<u32>,
    pub(crate) fault_report_interval: Duration,
    pub(crate) max_faults: Option<u32>,
    pub(crate) fault_window: Duration,
    pub(crate) fault_cooldown: Duration,
    pub(crate) idle_connection_timeout: Duration,
    pub(crate) stats_max_age: Option<Duration>,
    pub(crate) stats_cleanup_interval: Duration,
    pub(crate) max_stats_peers: usize,
    pub(crate) reconnect_learned_peers: bool,
    pub(crate) shutdown_drain_timeout: Duration,
    pub(crate) book_flush_interval: Duration,
    pub(crate) handshake: Option<crate::handshake::Config>,
    pub(crate) rejection_cooldown: Duration,
    pub(crate) persistent_peers: Vec<(libp2p::PeerId, Vec<Multiaddr>)>,
    pub(crate) persistent_max_delay: Duration,
    pub(crate) scoring: crate::scoring::Config,
    pub(crate) stream_quotas: std::collections::HashMap<String, crate::quota::Quota>,
    pub(crate) max_new_streams: Option<u32>,
    pub(crate) max_handshake_streams: Option<u32>,
    pub(crate) max_pings: Option<u32>,
    #[cfg(feature = "libp2p-metrics")]
    pub(crate) libp2p_metrics: Option<std::sync::Arc<libp2p::metrics::Metrics>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "peer_id",
                &libp2p::PeerId::from_public_key(&self.keypair.public().into()),
            )
            .field("address_book_path", &self.address_book_path)
            .field("listen_addrs", &self.listen_addrs)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("reconnect_base_delay", &self.reconnect_base_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("reconnect_max_attempts", &self.reconnect_max_attempts)
            .field("failed_handshake_cooldown", &self.failed_handshake_cooldown)
            .field("event_buffer_size", &self.event_buffer_size)
            .field("message_buffer_size", &self.message_buffer_size)
            .field("peer_receive_budget", &self.peer_receive_budget)
            .field("stranger_receive_budget", &self.stranger_receive_budget)
            .field("strangers_receive_budget", &self.strangers_receive_budget)
            .field("receive_budget", &self.receive_budget)
            .field("stream_priorities", &self.stream_priorities)
            .field("fault_report_interval", &self.fault_report_interval)
            .field("max_faults", &self.max_faults)
            .field("fault_window", &self.fault_window)
            .field("fault_cooldown", &self.fault_cooldown)
            .field("high_watermark", &self.high_watermark)
            .field("low_watermark", &self.low_watermark)
            .field("backpressure", &self.backpressure)
            .field("max_message_size", &self.max_message_size)
            .field(
                "max_handshake_message_size",
                &self.max_handshake_message_size,
            )
            .field("conn_low_watermark", &self.conn_low_watermark)
            .field("conn_high_watermark", &self.conn_high_watermark)
            .field("max_inbound_connections", &self.max_inbound_connections)
            .field("max_connections_per_peer", &self.max_connections_per_peer)
            .field("max_pending_inbound", &self.max_pending_inbound)
            .field("max_inbound_per_ip", &self.max_inbound_per_ip)
            .field("max_strangers", &self.max_strangers)
            .field(
                "security_handshake_timeout",
                &self.security_handshake_timeout,
            )
            .field("ping_interval", &self.ping_interval)
            .field("ping_timeout", &self.ping_timeout)
            .field("frame_timeout", &self.frame_timeout)
            .field("max_stream_name_length", &self.max_stream_name_length)
            .field("max_metadata_size", &self.max_metadata_size)
            .field("dial_timeout", &self.dial_timeout)
            .field("max_stream_failures", &self.max_stream_failures)
            .field("idle_connection_timeout", &self.idle_connection_timeout)
            .field("stats_max_age", &self.stats_max_age)
            .field("stats_cleanup_interval", &self.stats_cleanup_interval)
            .field("max_stats_peers", &self.max_stats_peers)
            .field("reconnect_learned_peers", &self.reconnect_learned_peers)
            .field("shutdown_drain_timeout", &self.shutdown_drain_timeout)
            .field("book_flush_interval", &self.book_flush_interval)
            .field("handshake", &self.handshake)
            .field("rejection_cooldown", &self.rejection_cooldown)
            .field("persistent_peers", &self.persistent_peers)
            .field("persistent_max_delay", &self.persistent_max_delay)
            .field("scoring", &self.scoring)
            .field("stream_quotas", &self.stream_quotas)
            .field("max_new_streams", &self.max_new_streams)
            .field("max_handshake_streams", &self.max_handshake_streams)
            .field("max_pings", &self.max_pings)
            .finish_non_exhaustive()
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident, $field:ident: $ty:ty) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, $field: $ty) -> Self {
            self.$field = $field;
            self
        }
    };
}

impl Config {
    /// The largest `max_message_size` the v1 frame allows: a 64 MiB frame minus the AEAD
    /// overhead and the inner prefix.
    pub const MAX_MESSAGE_SIZE_LIMIT: usize = MAX_FRAME_LEN - OVERHEAD - 4;

    /// A configuration with the three required fields and every default.
    ///
    /// The Ed25519 `keypair` is both the libp2p identity (it gives the `PeerId`) and the
    /// source of the X25519 key of the encryption layer. It is cloned, never zeroed in place.
    pub fn new(
        keypair: ed25519::Keypair,
        address_book_path: impl Into<PathBuf>,
        listen_addrs: Vec<Multiaddr>,
    ) -> Self {
        Self {
            keypair,
            address_book_path: address_book_path.into(),
            listen_addrs,
            handshake_timeout: Some(defaults::HANDSHAKE_TIMEOUT),
            reconnect_base_delay: defaults::RECONNECT_BASE_DELAY,
            reconnect_max_delay: defaults::RECONNECT_MAX_DELAY,
            reconnect_max_attempts: Some(defaults::RECONNECT_MAX_ATTEMPTS),
            failed_handshake_cooldown: defaults::FAILED_HANDSHAKE_COOLDOWN,
            event_buffer_size: defaults::EVENT_BUFFER_SIZE,
            message_buffer_size: defaults::MESSAGE_BUFFER_SIZE,
            high_watermark: defaults::HIGH_WATERMARK,
            low_watermark: defaults::LOW_WATERMARK,
            backpressure: true,
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_handshake_message_size: defaults::MAX_HANDSHAKE_MESSAGE_SIZE,
            peer_receive_budget: defaults::PEER_RECEIVE_BUDGET,
            stranger_receive_budget: defaults::STRANGER_RECEIVE_BUDGET,
            strangers_receive_budget: defaults::STRANGERS_RECEIVE_BUDGET,
            receive_budget: defaults::RECEIVE_BUDGET,
            stream_priorities: Default::default(),
            conn_low_watermark: defaults::CONN_LOW_WATERMARK,
            conn_high_watermark: defaults::CONN_HIGH_WATERMARK,
            max_inbound_connections: None,
            max_connections_per_peer: Some(defaults::MAX_CONNECTIONS_PER_PEER),
            max_pending_inbound: Some(defaults::MAX_PENDING_INBOUND),
            max_inbound_per_ip: Some(defaults::MAX_INBOUND_PER_IP),
            max_strangers: Some(defaults::MAX_STRANGERS),
            security_handshake_timeout: defaults::SECURITY_HANDSHAKE_TIMEOUT,
            ping_interval: defaults::PING_INTERVAL,
            ping_timeout: defaults::PING_TIMEOUT,
            frame_timeout: Some(defaults::FRAME_TIMEOUT),
            max_stream_name_length: Some(defaults::MAX_STREAM_NAME_LENGTH),
            max_metadata_size: Some(defaults::MAX_METADATA_SIZE),
            dial_timeout: defaults::DIAL_TIMEOUT,
            max_stream_failures: Some(defaults::MAX_STREAM_FAILURES),
            fault_report_interval: defaults::FAULT_REPORT_INTERVAL,
            max_faults: Some(defaults::MAX_FAULTS),
            fault_window: defaults::FAULT_WINDOW,
            fault_cooldown: defaults::FAULT_COOLDOWN,
            idle_connection_timeout: defaults::IDLE_CONNECTION_TIMEOUT,
            stats_max_age: Some(defaults::STATS_MAX_AGE),
            stats_cleanup_interval: defaults::STATS_CLEANUP_INTERVAL,
            max_stats_peers: defaults::MAX_STATS_PEERS,
            reconnect_learned_peers: false,
            shutdown_drain_timeout: defaults::SHUTDOWN_DRAIN_TIMEOUT,
            book_flush_interval: defaults::BOOK_FLUSH_INTERVAL,
            handshake: None,
            rejection_cooldown: defaults::REJECTION_COOLDOWN,
            persistent_peers: Vec::new(),
            persistent_max_delay: defaults::PERSISTENT_MAX_DELAY,
            scoring: crate::scoring::Config::default(),
            stream_quotas: Default::default(),
            max_new_streams: Some(defaults::MAX_NEW_STREAMS),
            max_handshake_streams: Some(defaults::MAX_HANDSHAKE_STREAMS),
            max_pings: Some(defaults::MAX_PINGS),
            #[cfg(feature = "libp2p-metrics")]
            libp2p_metrics: None,
        }
    }

    setter!(
        /// Handshake timeout counted from Connected; `None` disables it. Default 30 s.
        with_handshake_timeout, handshake_timeout: Option<Duration>);
    setter!(
        /// First reconnection delay. Default 1 s.
        with_reconnect_base_delay, reconnect_base_delay: Duration);
    setter!(
        /// Longest reconnection delay. Default 5 min.
        with_reconnect_max_delay, reconnect_max_delay: Duration);
    setter!(
        /// Reconnection attempts; `None` is unlimited. Default 10.
        with_reconnect_max_attempts, reconnect_max_attempts: Option<u32>);
    setter!(
        /// Cooldown after a handshake timeout. Default 1 min.
        with_failed_handshake_cooldown, failed_handshake_cooldown: Duration);
    setter!(
        /// Capacity of each event subscription. Default 100.
        with_event_buffer_size, event_buffer_size: usize);
    setter!(
        /// The most messages one peer may have waiting for the application (every stream and
        /// queue), beside the byte budgets. When it is reached, that peer's streams are no
        /// longer read and the muxer pushes back on its sends: nothing is dropped. Default 1000.
        /// (Go: the capacity of its one shared queue.)
        with_message_buffer_size, message_buffer_size: usize);
    setter!(
        /// What one handshaked peer may make the node hold of received data, in bytes:
        /// messages waiting for the application, frames being read, read-ahead
        /// (docs/configuration.md, "Receive budgets"). A quarter of it is kept for the peer's
        /// `High` streams. When it is spent, the peer's streams are no longer read until the
        /// application takes messages: backpressure, nothing is dropped. Default 16 MiB.
        with_peer_receive_budget, peer_receive_budget: usize);
    setter!(
        /// As [`with_peer_receive_budget`](Self::with_peer_receive_budget), for a peer that
        /// has not finished the handshake. Default 2 MiB.
        with_stranger_receive_budget, stranger_receive_budget: usize);
    setter!(
        /// What all peers that have not finished the handshake may make the node hold
        /// together, in bytes. Default 32 MiB.
        with_strangers_receive_budget, strangers_receive_budget: usize);
    setter!(
        /// What all peers together may make the node hold of received data, in bytes. A
        /// quarter of it is kept for `High` streams and for peers holding less than one
        /// maximum message, so that peers with deep backlogs do not lock a quiet one out.
        /// Default 256 MiB.
        with_receive_budget, receive_budget: usize);
    setter!(
        /// Flow control high watermark and capacity of each (peer, stream) send queue, in
        /// messages: `send` waits (and `try_send` fails) when this many are queued. Default 1000.
        with_high_watermark, high_watermark: usize);
    setter!(
        /// Flow control low watermark, in queued messages per (peer, stream): senders blocked at
        /// the high watermark resume when the queue has drained to this. Default 100.
        with_low_watermark, low_watermark: usize);
    setter!(
        /// Enables flow control with watermarks (default). Without it, sends still wait for
        /// room in the bounded queue, but resume as soon as one message is written.
        with_backpressure, backpressure: bool);
    setter!(
        /// Largest plaintext message in bytes, on send and on receive, for every stream.
        /// Exactly this size is allowed. Default 1 MiB; at most
        /// [`MAX_MESSAGE_SIZE_LIMIT`](Self::MAX_MESSAGE_SIZE_LIMIT).
        with_max_message_size, max_message_size: usize);
    setter!(
        /// Largest message on the `handshake` stream, in bytes, on send and on receive (never
        /// above `max_message_size`). That stream is open to every connected peer, handshaked or
        /// not, so its limit bounds what a stranger can make the node buffer per frame. A
        /// larger handshake message is refused by `send` (`MessageTooLarge`) and, received,
        /// counted as `oversized`. Default 16 KiB (Go's handshake messages are tens of bytes;
        /// Go itself allows `max_message_size`).
        with_max_handshake_message_size, max_handshake_message_size: usize);
    setter!(
        /// Connection-count low watermark. Default 100. Kept for Go parity and checked against
        /// the high watermark, but unused: glueberry never trims connections (Go's connection
        /// manager trimmed established peers behind its back).
        with_conn_low_watermark, conn_low_watermark: usize);
    setter!(
        /// Connection-count high watermark: once the node has this many established
        /// connections (in and out), strangers' connections are refused
        /// ([`AdmissionCause::Total`](crate::event::AdmissionCause::Total)). The node's own
        /// dials and connections of address-book and handshaked peers are never refused
        /// (docs/admission.md). Default 400.
        with_conn_high_watermark, conn_high_watermark: usize);
    setter!(
        /// The most established inbound connections at which strangers' connections are
        /// refused; `None` leaves only the total limit. Default `None`.
        with_max_inbound_connections, max_inbound_connections: Option<usize>);
    setter!(
        /// The most established connections to one peer. A connection past it that comes up
        /// while the peer is Established (it restarted while its old connection lingers) is
        /// let in and the peer's oldest (a retired duplicate first) is closed
        /// ([`AdmissionCause::Superseded`](crate::event::AdmissionCause::Superseded)). The
        /// duplicate of a simultaneous dial is retired and drains first, so the peer may hold
        /// one connection above the limit meanwhile. `None` is unlimited. Default 2.
        with_max_connections_per_peer, max_connections_per_peer: Option<usize>);
    setter!(
        /// The most inbound connections in their security handshake at once. When all places
        /// are taken the oldest is evicted for the new one
        /// ([`AdmissionCause::PendingEvicted`](crate::event::AdmissionCause::PendingEvicted)),
        /// so connections that never speak cannot lock new peers out. `None` is unlimited.
        /// Default 128.
        with_max_pending_inbound, max_pending_inbound: Option<usize>);
    setter!(
        /// The most inbound connections from one IP address that have not finished the
        /// application handshake (in their security handshake, or from a stranger), checked
        /// before the security handshake; handshaked and address-book peers do not count, so
        /// many validators behind one NAT get in. `None` disables the check. Default 16.
        with_max_inbound_per_ip, max_inbound_per_ip: Option<usize>);
    setter!(
        /// The most connections from strangers: inbound, from peers neither in the address
        /// book nor handshaked. A new stranger past it is let in and the oldest stranger's
        /// connection is closed
        /// ([`AdmissionCause::StrangerEvicted`](crate::event::AdmissionCause::StrangerEvicted)).
        /// `None` is unlimited. Default 64.
        with_max_strangers, max_strangers: Option<usize>);
    setter!(
        /// Time a peer has to complete a frame it started sending, counted from its first
        /// bytes (time the node spends not reading, its message queue full, does not count).
        /// Past it the stream is reset and the frame counted as `malformed`, with a
        /// [`StreamFault`](crate::StreamFault) ("frame not completed in time"). `None` waits
        /// for ever. Default 20 s: a 1 MiB frame at 0.4 Mbit/s.
        with_frame_timeout, frame_timeout: Option<Duration>);
    setter!(
        /// Time a new connection has to finish its security handshake and muxer negotiation
        /// (TCP: Noise and yamux; QUIC: its TLS handshake), after which it is closed. Default
        /// 10 s.
        with_security_handshake_timeout, security_handshake_timeout: Duration);
    setter!(
        /// How often each connection is pinged (libp2p ping). Over TCP a connection whose
        /// pings go unanswered for `ping_interval + ping_timeout` is severed and its peer
        /// reported Disconnected with
        /// [`DisconnectReason::Unresponsive`](crate::DisconnectReason::Unresponsive)
        /// (docs/lifecycle.md, "Liveness"). Default 15 s.
        with_ping_interval, ping_interval: Duration);
    setter!(
        /// How long a ping may take. It is also QUIC's idle timeout: a QUIC connection that
        /// hears nothing from its peer (QUIC keep-alives go every quarter of it, and one sent
        /// after the last packet received restarts the timer: 1.25 × this in all) is closed,
        /// and its peer reported Disconnected with
        /// [`DisconnectReason::Unresponsive`](crate::DisconnectReason::Unresponsive). Default
        /// 20 s.
        with_ping_timeout, ping_timeout: Duration);
    setter!(
        /// Longest stream name in bytes; `None` is unlimited. Default 64.
        with_max_stream_name_length, max_stream_name_length: Option<usize>);
    setter!(
        /// Largest address-book metadata (sum of key and value bytes); `None` is unlimited.
        /// Default 4096.
        with_max_metadata_size, max_metadata_size: Option<usize>);
    setter!(
        /// How long [`Node::connect`](crate::Node::connect) waits for the connection (the dial
        /// itself goes on, and reconnection with it, when it gives up), and how long opening a
        /// stream may take. Default 30 s.
        with_dial_timeout, dial_timeout: Duration);
    setter!(
        /// Bad messages (undecryptable bodies, or plaintext above `max_message_size`) on one
        /// stream before it is reset: the N-th resets it. `None` never resets. A framing error
        /// always resets at once. Default 8.
        with_max_stream_failures, max_stream_failures: Option<u32>);
    setter!(
        /// How often one peer's faults (bad frames, frames not finished in time, streams
        /// dropped inside a frame) are logged and reported as `Event::StreamFault`: the first at
        /// once, then at most one per interval carrying how many it stands for
        /// (`StreamFault::faults`). Zero reports every fault. Every fault is counted in the
        /// stream's statistics either way. Default 1 s.
        with_fault_report_interval, fault_report_interval: Duration);
    setter!(
        /// Faults of one peer within `fault_window` at which it is disconnected
        /// ([`DisconnectReason::Faults`](crate::DisconnectReason::Faults)) and kept out for
        /// `fault_cooldown`, counted as
        /// [`AdmissionCause::Faults`](crate::event::AdmissionCause::Faults). `None` never
        /// disconnects for faults. Default 32.
        with_max_faults, max_faults: Option<u32>);
    setter!(
        /// The window `max_faults` is counted in, from a peer's first fault in it. Default 10 s.
        with_fault_window, fault_window: Duration);
    setter!(
        /// How long a peer disconnected for its faults is kept out: its connections are closed
        /// and it is not dialled. An address-book peer is reconnected afterwards. Default 60 s.
        with_fault_cooldown, fault_cooldown: Duration);
    setter!(
        /// How long a retired duplicate connection (both peers dialled at once and the other one
        /// is kept, or a restarted peer's old one) stays after its last stream closed, so that
        /// the last frames reach the peer. Connections glueberry keeps are never closed for
        /// idleness: the handshake timeout, `disconnect` and liveness close them. Default 1 s.
        with_idle_connection_timeout, idle_connection_timeout: Duration);
    setter!(
        /// How long the statistics of a peer that went Disconnected are kept; `None` keeps
        /// them (within `max_stats_peers`). Default 24 h.
        with_stats_max_age, stats_max_age: Option<Duration>);
    setter!(
        /// How often the statistics cleanup task runs. Default 1 h.
        with_stats_cleanup_interval, stats_cleanup_interval: Duration);
    setter!(
        /// The most peers statistics are kept for; past it, the statistics of the peer
        /// disconnected longest are evicted (counted in `glueberry_stats_evicted_total`).
        /// Default 10 000.
        with_max_stats_peers, max_stats_peers: usize);
    setter!(
        /// Whether an Established peer outside the address book (one that dialled us) is
        /// reconnected when its connection is lost (reset, error, ping timeout; not when the
        /// peer closed it cleanly), with the addresses the node learned from it: the listen
        /// addresses it announces through identify. Address-book peers are always
        /// reconnected. Default false: a peer that dialled in is expected to dial again (a
        /// reset may also be how a remote `disconnect` looks from here).
        with_reconnect_learned_peers, reconnect_learned_peers: bool);
    setter!(
        /// How long [`Node::shutdown`](crate::Node::shutdown) lets every stream write what is
        /// queued on it (messages `send` returned for) before closing connections; what is
        /// left then is counted as dropped (`stream_closed`). Zero skips the drain. Default 2 s.
        with_shutdown_drain_timeout, shutdown_drain_timeout: Duration);
    setter!(
        /// How often batched address-book changes (`last_seen` on each connection, public keys
        /// recorded at handshake) are written; shutdown writes what is left. Changes made
        /// through the API (`add_peer`, `remove_peer`, blacklisting) are written at once.
        /// Default 5 s.
        with_book_flush_interval, book_flush_interval: Duration);

    /// Records libp2p's own metrics (swarm, identify, ping) into `registry`, under the
    /// `libp2p_` prefix; encode them with
    /// [`libp2p_metrics::encode`](crate::libp2p_metrics::encode). Feature `libp2p-metrics`.
    #[cfg(feature = "libp2p-metrics")]
    #[must_use]
    pub fn with_libp2p_metrics(mut self, registry: &mut libp2p::metrics::Registry) -> Self {
        self.libp2p_metrics = Some(std::sync::Arc::new(libp2p::metrics::Metrics::new(registry)));
        self
    }

    /// The node's Ed25519 identity.
    pub fn keypair(&self) -> &ed25519::Keypair {
        &self.keypair
    }

    /// The address-book path.
    pub fn address_book_path(&self) -> &std::path::Path {
        &self.address_book_path
    }

    /// The listen addresses.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Gives stream `name`'s received messages a [`Priority`](crate::Priority) (default
    /// `Normal`; the handshake stream is always `High`). `High` streams (votes) are taken
    /// first and may use the part of the receive budgets kept back from bulk streams.
    #[must_use]
    pub fn with_stream_priority(
        mut self,
        name: impl Into<String>,
        priority: crate::message::Priority,
    ) -> Self {
        self.stream_priorities.insert(name.into(), priority);
        self
    }

    /// The largest plaintext message.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The longest outer frame accepted on receive: a frame that carries an encrypted
    /// `max_message_size` message. Checked before anything is allocated for a frame.
    #[cfg(test)]
    pub(crate) fn max_frame_len(&self) -> usize {
        codec::outer_len(self.max_message_size + OVERHEAD)
    }

    /// The largest message on stream `name`: `max_handshake_message_size` on the handshake
    /// stream (never above `max_message_size`), `max_message_size` elsewhere.
    pub(crate) fn max_message_size_for(&self, name: &str) -> usize {
        if name == crate::wire::HANDSHAKE {
            self.max_handshake_message_size.min(self.max_message_size)
        } else {
            self.max_message_size
        }
    }

    /// [`max_frame_len`](Self::max_frame_len) for stream `name`.
    pub(crate) fn max_frame_len_for(&self, name: &str) -> usize {
        codec::outer_len(self.max_message_size_for(name) + OVERHEAD)
    }

    /// How peers' faults are reported and punished.
    pub(crate) fn fault_limits(&self) -> crate::faults::Limits {
        crate::faults::Limits {
            report_every: self.fault_report_interval,
            window: self.fault_window,
            max: self.max_faults,
        }
    }

    /// The receive budgets (docs/configuration.md, "Receive budgets").
    pub(crate) fn inbox_limits(&self) -> crate::inbox::Limits {
        crate::inbox::Limits {
            peer: self.peer_receive_budget,
            stranger: self.stranger_receive_budget,
            strangers: self.strangers_receive_budget,
            total: self.receive_budget,
            floor: self.largest_read(""),
            messages: self.message_buffer_size,
            finish_stranger: self.largest_read(crate::wire::HANDSHAKE),
            finish_peer: self.largest_read(""),
        }
    }

    /// The most one stream of `name` may need charged at once: one frame of its largest
    /// message (both prefixes), a read-ahead and a message's overhead.
    fn largest_read(&self, name: &str) -> usize {
        self.max_frame_len_for(name) + 10 + crate::inbox::READAHEAD + crate::inbox::MESSAGE_OVERHEAD
    }

    /// The admission limits (docs/admission.md).
    pub(crate) fn admission_limits(&self) -> crate::admission::Limits {
        crate::admission::Limits {
            per_ip: self.max_inbound_per_ip,
            strangers: self.max_strangers,
            total: self.conn_high_watermark,
            inbound: self.max_inbound_connections,
        }
    }

    /// The timing parameters of the peer state machines.
    pub(crate) fn machine_params(&self) -> crate::peer::Params {
        crate::peer::Params {
            handshake_timeout: self.handshake_timeout,
            cooldown: self.failed_handshake_cooldown,
            fault_cooldown: self.fault_cooldown,
            rejection_cooldown: self.rejection_cooldown,
            backoff: crate::peer::Backoff {
                base: self.reconnect_base_delay,
                max: self.reconnect_max_delay,
                max_attempts: self.reconnect_max_attempts,
                jitter: 0.1,
            },
            persistent_max_delay: self.persistent_max_delay,
        }
    }
}

#[cfg(test)]
mod tests;
