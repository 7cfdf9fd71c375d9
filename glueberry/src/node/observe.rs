//! What the node handle reads without asking the driver: states, statistics, health.

use super::*;

impl Node {
    /// The peer's state; `Disconnected` for peers the node does not know.
    pub fn connection_state(&self, peer: &PeerId) -> State {
        lock(&self.shared().states)
            .get(peer)
            .map_or(State::Disconnected, |v| v.state)
    }

    /// Whether the connection kept for `peer` was dialled by this node; `None` when not
    /// Connected or Established. When both dialled at once, both nodes keep the same
    /// connection, so once the duplicate is settled exactly one of them says `true`.
    pub fn is_outbound(&self, peer: &PeerId) -> Option<bool> {
        lock(&self.shared().states)
            .get(peer)
            .and_then(|v| v.outbound)
    }

    /// The peers that are Established now, ordered by `PeerId`.
    pub fn established_peers(&self) -> Vec<PeerId> {
        let mut peers: Vec<PeerId> = lock(&self.shared().states)
            .iter()
            .filter(|(_, v)| v.state == State::Established)
            .map(|(p, _)| *p)
            .collect();
        peers.sort();
        peers
    }

    /// The number of established libp2p connections to `peer` (a retired duplicate counts
    /// until it has closed).
    pub fn connection_count(&self, peer: &PeerId) -> usize {
        lock(&self.shared().states)
            .get(peer)
            .map_or(0, |v| v.connections)
    }

    /// A snapshot of `peer`'s statistics; `None` if the node keeps none for it (never seen,
    /// or removed by the cleanup task).
    ///
    /// ```no_run
    /// # fn f(node: glueberry::Node, peer: glueberry::PeerId) {
    /// if let Some(s) = node.peer_stats(&peer) {
    ///     println!(
    ///         "{}: {} sent, {} received, rtt {:?}, {} undecryptable",
    ///         s.state, s.messages_sent, s.messages_received, s.last_rtt, s.dropped.decryption_failed
    ///     );
    ///     for (name, st) in &s.streams {
    ///         println!("  {name}: {} bytes out, {} waits", st.bytes_sent, st.backpressure_waits);
    ///     }
    /// }
    /// # }
    /// ```
    pub fn peer_stats(&self, peer: &PeerId) -> Option<crate::stats::PeerStats> {
        self.shared().stats.snapshot(peer, Instant::now())
    }

    /// Snapshots of the statistics of every peer the node keeps statistics for, ordered by
    /// `PeerId`.
    pub fn all_peer_stats(&self) -> Vec<crate::stats::PeerStats> {
        self.shared().stats.snapshot_all(Instant::now())
    }

    /// Connections refused or evicted by admission since the node started, by cause
    /// (docs/admission.md). Each is also reported as an [`Event::Admission`](crate::Event)
    /// (rate-limited) and counted in the `glueberry_connections_refused_total` and
    /// `glueberry_connections_evicted_total` metrics.
    pub fn admission_stats(&self) -> crate::stats::AdmissionStats {
        *crate::shared::lock(&self.shared().admission)
    }

    /// Liveness and readiness: started, listening, driver running, peers established. Cheap;
    /// never waits.
    pub fn health(&self) -> crate::health::Health {
        let shared = self.shared();
        let started = self.inner.started.load(Ordering::Acquire);
        let shut_down = shared.closing.is_cancelled();
        let listen_addrs = self.listen_addrs();
        let driver_alive = !self.inner.commands.is_closed() && !shut_down;
        let (mut established, mut connected) = (0, 0);
        for v in lock(&shared.states).values() {
            match v.state {
                State::Established => {
                    established += 1;
                    connected += 1;
                }
                State::Connected => connected += 1,
                _ => {}
            }
        }
        let healthy = started && !shut_down && driver_alive && !listen_addrs.is_empty();
        crate::health::Health {
            healthy,
            ready: healthy && established > 0,
            started,
            shut_down,
            listening: !listen_addrs.is_empty(),
            driver_alive,
            established_peers: established,
            connected_peers: connected,
            listen_addrs,
            checked_at: std::time::SystemTime::now(),
        }
    }

    /// Everything about the node at this moment, for a debug endpoint or a bug report (serialise
    /// it with serde). Asks the driver for the address book; after shutdown that part is empty.
    pub async fn debug_state(&self) -> crate::health::DebugState {
        let book = self.list_peers().await.unwrap_or_default();
        let c = &self.shared().config;
        let mut peer_states: Vec<(PeerId, State)> = lock(&self.shared().states)
            .iter()
            .filter(|(_, v)| v.state != State::Disconnected)
            .map(|(p, v)| (*p, v.state))
            .collect();
        peer_states.sort_by_key(|(p, _)| *p);
        crate::health::DebugState {
            peer_id: self.peer_id(),
            public_key: self
                .public_key()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            version: env!("CARGO_PKG_VERSION"),
            health: self.health(),
            address_book: crate::health::BookSummary {
                total_peers: book.len(),
                blacklisted_peers: book.iter().filter(|e| e.blacklisted).count(),
                peer_ids: book.iter().map(|e| e.peer.to_string()).collect(),
            },
            config: crate::health::ConfigSummary {
                handshake_timeout: c.handshake_timeout,
                reconnect_max_delay: c.reconnect_max_delay,
                reconnect_max_attempts: c.reconnect_max_attempts,
                high_watermark: c.high_watermark,
                low_watermark: c.low_watermark,
                max_message_size: c.max_message_size,
                message_buffer_size: c.message_buffer_size,
                event_buffer_size: c.event_buffer_size,
            },
            peer_states,
            peers: self.all_peer_stats(),
            flow_controllers: self.shared().sessions.flows(),
            captured_at: std::time::SystemTime::now(),
        }
    }
}
