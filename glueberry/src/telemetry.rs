//! The names of every metric the node emits through the [`metrics`] facade.
//!
//! They follow Go Glueberry's Prometheus adapter (`glueberry_` prefix, same labels), plus what
//! Go lacks. Install any `metrics` recorder (for example `metrics-exporter-prometheus`) to
//! collect them; with none installed they cost almost nothing. Stream names appear as labels
//! only for names the application prepared (and `handshake`), so label cardinality is bounded
//! by the application.
//!
//! Histogram buckets are the exporter's to set; Go uses
//! [`HANDSHAKE_DURATION_BUCKETS`] and [`BACKPRESSURE_WAIT_BUCKETS`].

// Go Glueberry's metrics.
/// Counter `glueberry_connections_opened_total`: Connections established, by direction (inbound, outbound).
pub const CONNECTIONS_OPENED: &str = "glueberry_connections_opened_total";
/// Counter `glueberry_connections_closed_total`: Connections closed, by direction.
pub const CONNECTIONS_CLOSED: &str = "glueberry_connections_closed_total";
/// Counter `glueberry_connection_attempts_total`: Outbound connection attempts, by result (success, failure).
pub const CONNECTION_ATTEMPTS: &str = "glueberry_connection_attempts_total";
/// Counter `glueberry_handshake_results_total`: Handshakes ended, by result (success, timeout, failure).
pub const HANDSHAKE_RESULTS: &str = "glueberry_handshake_results_total";
/// Histogram `glueberry_handshake_duration_seconds`: Time from Connected to Established.
pub const HANDSHAKE_DURATION: &str = "glueberry_handshake_duration_seconds";
/// Counter `glueberry_messages_sent_total`: Messages queued for sending, by stream.
pub const MESSAGES_SENT: &str = "glueberry_messages_sent_total";
/// Counter `glueberry_quota_waits_total`: Times reading a peer's stream paused for its rate quota, by stream.
pub const QUOTA_WAITS: &str = "glueberry_quota_waits_total";
/// Counter `glueberry_pings_paced_total`: Times a connection's ping protocol waited for `max_pings`.
pub const PINGS_PACED: &str = "glueberry_pings_paced_total";
/// Counter `glueberry_peers_banned_total`: Peers banned for their score (docs/scoring.md).
pub const PEERS_BANNED: &str = "glueberry_peers_banned_total";
/// Counter `glueberry_messages_written_total`: Messages written to the transport (each once), by stream.
pub const MESSAGES_WRITTEN: &str = "glueberry_messages_written_total";
/// Counter `glueberry_messages_received_total`: Messages delivered to the application queue, by stream.
pub const MESSAGES_RECEIVED: &str = "glueberry_messages_received_total";
/// Counter `glueberry_bytes_sent_total`: Plaintext bytes queued for sending, by stream.
pub const BYTES_SENT: &str = "glueberry_bytes_sent_total";
/// Counter `glueberry_bytes_received_total`: Plaintext bytes delivered, by stream.
pub const BYTES_RECEIVED: &str = "glueberry_bytes_received_total";
/// Counter `glueberry_streams_opened_total`: libp2p streams started (either side), by stream name.
pub const STREAMS_OPENED: &str = "glueberry_streams_opened_total";
/// Counter `glueberry_streams_closed_total`: libp2p streams ended, by stream name.
pub const STREAMS_CLOSED: &str = "glueberry_streams_closed_total";
/// Counter `glueberry_encryption_errors_total`: Messages that could not be encrypted.
pub const ENCRYPTION_ERRORS: &str = "glueberry_encryption_errors_total";
/// Counter `glueberry_decryption_errors_total`: Inbound bodies that failed authentication.
pub const DECRYPTION_ERRORS: &str = "glueberry_decryption_errors_total";
/// Counter `glueberry_key_derivations_total`: Stream keys derived, by cached (always false: keys are per handshake).
pub const KEY_DERIVATIONS: &str = "glueberry_key_derivations_total";
/// Counter `glueberry_events_emitted_total`: Connection events emitted, by state.
pub const EVENTS_EMITTED: &str = "glueberry_events_emitted_total";
/// Counter `glueberry_events_dropped_total`: Events the forwarder could not take; every subscription is told with Lagged.
pub const EVENTS_DROPPED: &str = "glueberry_events_dropped_total";
/// Counter `glueberry_messages_dropped_total`: Messages not delivered, by cause (stream_closed, decryption_failed, oversized, malformed, undelivered).
pub const MESSAGES_DROPPED: &str = "glueberry_messages_dropped_total";
/// Counter `glueberry_backpressure_engaged_total`: Times a send queue reached its high watermark, by stream.
pub const BACKPRESSURE_ENGAGED: &str = "glueberry_backpressure_engaged_total";
/// Histogram `glueberry_backpressure_wait_seconds`: Time sends waited at the flow-control gate, by stream.
pub const BACKPRESSURE_WAIT: &str = "glueberry_backpressure_wait_seconds";
/// Gauge `glueberry_pending_messages`: Messages queued for sending and not yet written, by stream (all peers).
pub const PENDING_MESSAGES: &str = "glueberry_pending_messages";

// Ours.
/// Counter `glueberry_backpressure_waits_total`: Sends that waited at the flow-control gate.
pub const BACKPRESSURE_WAITS: &str = "glueberry_backpressure_waits_total";
/// Counter `glueberry_subscriber_lagged_events_total`: Events a subscription missed because its queue was full.
pub const SUBSCRIBER_LAGGED: &str = "glueberry_subscriber_lagged_events_total";
/// Counter `glueberry_reconnect_attempts_total`: Reconnection attempts started.
pub const RECONNECT_ATTEMPTS: &str = "glueberry_reconnect_attempts_total";
/// Counter `glueberry_frames_written_total`: Frames written to streams (several per write when coalesced).
pub const FRAMES_WRITTEN: &str = "glueberry_frames_written_total";
/// Counter `glueberry_stream_faults_total`: Bad frames from peers, by whether the stream was reset.
pub const STREAM_FAULTS: &str = "glueberry_stream_faults_total";
/// Counter `glueberry_inbound_streams_refused_total`: Inbound streams refused (over `max_new_streams` or `max_handshake_streams`, too many waiting, not prepared, peer gone).
pub const INBOUND_STREAMS_REFUSED: &str = "glueberry_inbound_streams_refused_total";
/// Counter `glueberry_connections_refused_total`: Inbound connections refused by a limit, by limit.
pub const CONNECTIONS_REFUSED: &str = "glueberry_connections_refused_total";
/// Counter `glueberry_connections_evicted_total`: Connections closed to make room for newer ones, by cause (`pending`, `stranger`, `superseded`).
pub const CONNECTIONS_EVICTED: &str = "glueberry_connections_evicted_total";
/// Counter `glueberry_connections_severed_total`: Connections ended because the peer stopped answering.
pub const CONNECTIONS_SEVERED: &str = "glueberry_connections_severed_total";
/// Counter `glueberry_stream_resets_total`: Streams the node wrote on that the peer reset, by outcome (`moved`: onto the peer's stream; `kept`: kept for the next stream; `settled`: nothing to write again).
pub const STREAM_RESETS: &str = "glueberry_stream_resets_total";
/// Counter `glueberry_duplicate_connections_total`: Duplicate connections retired (simultaneous dials).
pub const DUPLICATE_CONNECTIONS: &str = "glueberry_duplicate_connections_total";
/// Counter `glueberry_address_book_save_errors_total`: Address-book saves that failed.
pub const ADDRESS_BOOK_SAVE_ERRORS: &str = "glueberry_address_book_save_errors_total";
/// Counter `glueberry_stats_evicted_total`: Peer statistics evicted because the registry was full.
pub const STATS_EVICTED: &str = "glueberry_stats_evicted_total";
/// Counter `glueberry_stats_pruned_total`: Peer statistics removed by the cleanup task.
pub const STATS_PRUNED: &str = "glueberry_stats_pruned_total";
/// Histogram `glueberry_ping_rtt_seconds`: Round-trip times measured by libp2p ping.
pub const PING_RTT: &str = "glueberry_ping_rtt_seconds";
/// Gauge `glueberry_peers`: Peers by state.
pub const PEERS: &str = "glueberry_peers";

/// Go's buckets for [`HANDSHAKE_DURATION`], in seconds.
pub const HANDSHAKE_DURATION_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Go's buckets for [`BACKPRESSURE_WAIT`], in seconds.
pub const BACKPRESSURE_WAIT_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0];

/// Registers the help text and unit of every metric with the installed recorder, and makes the
/// counters that may stay at zero for a long time visible at zero. The node calls it when it
/// is created; calling it again is harmless.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        CONNECTIONS_OPENED,
        "Connections established, by direction (inbound, outbound)."
    );
    describe_counter!(CONNECTIONS_CLOSED, "Connections closed, by direction.");
    describe_counter!(
        CONNECTION_ATTEMPTS,
        "Outbound connection attempts, by result (success, failure)."
    );
    describe_counter!(
        HANDSHAKE_RESULTS,
        "Handshakes ended, by result (success, timeout, failure)."
    );
    describe_histogram!(
        HANDSHAKE_DURATION,
        Unit::Seconds,
        "Time from Connected to Established."
    );
    describe_counter!(MESSAGES_SENT, "Messages queued for sending, by stream.");
    describe_counter!(
        QUOTA_WAITS,
        "Times reading a peer's stream paused for its rate quota, by stream."
    );
    describe_counter!(
        PINGS_PACED,
        "Times a connection's ping protocol waited for max_pings."
    );
    describe_counter!(
        PEERS_BANNED,
        "Peers banned for their score (docs/scoring.md)."
    );
    describe_counter!(
        MESSAGES_WRITTEN,
        "Messages written to the transport, each once, by stream."
    );
    describe_counter!(
        MESSAGES_RECEIVED,
        "Messages delivered to the application queue, by stream."
    );
    describe_counter!(
        BYTES_SENT,
        Unit::Bytes,
        "Plaintext bytes queued for sending, by stream."
    );
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "Plaintext bytes delivered, by stream."
    );
    describe_counter!(
        STREAMS_OPENED,
        "libp2p streams started (either side), by stream name."
    );
    describe_counter!(STREAMS_CLOSED, "libp2p streams ended, by stream name.");
    describe_counter!(ENCRYPTION_ERRORS, "Messages that could not be encrypted.");
    describe_counter!(
        DECRYPTION_ERRORS,
        "Inbound bodies that failed authentication."
    );
    describe_counter!(
        KEY_DERIVATIONS,
        "Stream keys derived, by cached (always false: keys are per handshake)."
    );
    describe_counter!(EVENTS_EMITTED, "Connection events emitted, by state.");
    describe_counter!(
        EVENTS_DROPPED,
        "Events the forwarder could not take; every subscription is told with Lagged."
    );
    describe_counter!(
        MESSAGES_DROPPED,
        "Messages not delivered, by cause (stream_closed, reset_after_write, decryption_failed, oversized, malformed, undelivered)."
    );
    describe_counter!(
        BACKPRESSURE_ENGAGED,
        "Times a send queue reached its high watermark, by stream."
    );
    describe_histogram!(
        BACKPRESSURE_WAIT,
        Unit::Seconds,
        "Time sends waited at the flow-control gate, by stream."
    );
    describe_gauge!(
        PENDING_MESSAGES,
        "Messages queued for sending and not yet written, by stream (all peers)."
    );
    describe_counter!(
        BACKPRESSURE_WAITS,
        "Sends that waited at the flow-control gate."
    );
    describe_counter!(
        SUBSCRIBER_LAGGED,
        "Events a subscription missed because its queue was full."
    );
    describe_counter!(RECONNECT_ATTEMPTS, "Reconnection attempts started.");
    describe_counter!(
        FRAMES_WRITTEN,
        "Frames written to streams (several per write when coalesced)."
    );
    describe_counter!(
        STREAM_FAULTS,
        "Bad frames from peers, by whether the stream was reset."
    );
    describe_counter!(
        INBOUND_STREAMS_REFUSED,
        "Inbound streams refused (over max_new_streams or max_handshake_streams, too many waiting, not prepared, peer gone)."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Inbound connections refused by a limit, by limit."
    );
    describe_counter!(
        CONNECTIONS_EVICTED,
        "Connections closed to make room for newer ones, by cause."
    );
    describe_counter!(
        STREAM_RESETS,
        "Streams the node wrote on that the peer reset, by outcome."
    );
    describe_counter!(
        CONNECTIONS_SEVERED,
        "Connections ended because the peer stopped answering."
    );
    describe_counter!(
        DUPLICATE_CONNECTIONS,
        "Duplicate connections retired (simultaneous dials)."
    );
    describe_counter!(ADDRESS_BOOK_SAVE_ERRORS, "Address-book saves that failed.");
    describe_counter!(
        STATS_EVICTED,
        "Peer statistics evicted because the registry was full."
    );
    describe_counter!(STATS_PRUNED, "Peer statistics removed by the cleanup task.");
    describe_histogram!(
        PING_RTT,
        Unit::Seconds,
        "Round-trip times measured by libp2p ping."
    );
    describe_gauge!(PEERS, "Peers by state.");
    for name in [ENCRYPTION_ERRORS, DECRYPTION_ERRORS, EVENTS_DROPPED] {
        metrics::counter!(name).increment(0);
    }
}

/// The `direction` label of a connection.
pub(crate) fn direction(outbound: bool) -> &'static str {
    if outbound { "outbound" } else { "inbound" }
}

/// The `state` label of a peer state.
pub(crate) fn state_label(state: crate::peer::State) -> &'static str {
    match state {
        crate::peer::State::Disconnected => "disconnected",
        crate::peer::State::Connecting => "connecting",
        crate::peer::State::Connected => "connected",
        crate::peer::State::Established => "established",
        crate::peer::State::Reconnecting => "reconnecting",
        crate::peer::State::Cooldown => "cooldown",
    }
}
