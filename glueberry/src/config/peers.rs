//! The settings of a consensus node's peers: the built-in handshake, rejection, persistent
//! peers.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use super::Config;

impl Config {
    /// Runs the built-in handshake ([`handshake`](crate::handshake): Go's byte-tag protocol)
    /// with every connected peer. Without it (the default), the application runs its own
    /// handshake with [`Node::prepare_streams`](crate::Node::prepare_streams) and
    /// [`Node::finalize_handshake`](crate::Node::finalize_handshake).
    ///
    /// [`Node::new`](crate::Node::new) checks that the Hello payload fits in
    /// `max_handshake_message_size` with its tag byte (`ConfigError::HelloTooLarge`) and that
    /// the streams are valid names for encrypted streams (`ConfigError::HandshakeStream`,
    /// `ConfigError::NoHandshakeStreams`).
    #[must_use]
    pub fn with_handshake(mut self, handshake: crate::handshake::Config) -> Self {
        self.handshake = Some(handshake);
        self
    }

    /// How long a peer the application rejected (the built-in handshake's check, or
    /// [`Node::reject_peer`](crate::Node::reject_peer)) is kept out: its connections are
    /// closed in both directions and it is not dialled. An address-book peer is reconnected
    /// afterwards. Default 5 min.
    #[must_use]
    pub fn with_rejection_cooldown(mut self, cooldown: Duration) -> Self {
        self.rejection_cooldown = cooldown;
        self
    }

    /// Keeps `peer` connected for good (a validator): [`Node::start`](crate::Node::start)
    /// writes it into the address book with `addrs` (replacing the addresses recorded there)
    /// and dials it at once; whenever it is lost it is reconnected without limit, at most
    /// `persistent_max_delay` apart, whatever `reconnect_max_attempts` says. Blacklisting it,
    /// or removing it from the book, stops that until the next start. Call once per peer;
    /// a peer given twice keeps the last addresses.
    #[must_use]
    pub fn with_persistent_peer(mut self, peer: PeerId, addrs: Vec<Multiaddr>) -> Self {
        self.persistent_peers.retain(|(p, _)| *p != peer);
        self.persistent_peers.push((peer, addrs));
        self
    }

    /// [`with_persistent_peer`](Self::with_persistent_peer) for each of `peers`.
    #[must_use]
    pub fn with_persistent_peers(
        self,
        peers: impl IntoIterator<Item = (PeerId, Vec<Multiaddr>)>,
    ) -> Self {
        peers
            .into_iter()
            .fold(self, |c, (peer, addrs)| c.with_persistent_peer(peer, addrs))
    }

    /// A rate quota on what each peer may send on stream `name` (docs/scoring.md, "Quotas"):
    /// messages and plaintext bytes per second, one second's worth at once. A peer over it is
    /// slowed to it (its stream is not read until it is back within; the muxer pushes back, so
    /// nothing is dropped), counted in `StreamStats::quota_waits`, and loses score (a `Low`
    /// verdict) for every 10 s it stays over. No quota by default. `"handshake"` works too.
    #[must_use]
    pub fn with_stream_quota(
        mut self,
        name: impl Into<String>,
        quota: crate::quota::Quota,
    ) -> Self {
        self.stream_quotas.insert(name.into(), quota);
        self
    }

    /// How many inbound streams one peer may open per second over all its connections, whatever
    /// their protocol (glueberry's, the handshake stream, identify, ping, and streams whose
    /// negotiation fails), one second's worth at once. Each is charged before its negotiation;
    /// the ones over it are dropped at once (which resets them), counted in
    /// `PeerStats::refused_streams`, and a peer that keeps at it loses score (a `Medium` verdict
    /// for every 10 s over without a break; docs/scoring.md, "Quotas"). `None` is unlimited.
    /// Default 32.
    #[must_use]
    pub fn with_max_new_streams(mut self, per_sec: Option<u32>) -> Self {
        self.max_new_streams = per_sec;
        self
    }

    /// How many handshake streams (handshake attempts) one peer may open per minute, all at
    /// once if it likes; each is charged once negotiated, and the ones over it are dropped and
    /// counted as `max_new_streams` does; a peer that keeps at it for 10 s loses score
    /// (`Medium`). `None` is unlimited. Default 30.
    #[must_use]
    pub fn with_max_handshake_streams(mut self, per_minute: Option<u32>) -> Self {
        self.max_handshake_streams = per_minute;
        self
    }

    /// How many of a peer's pings are answered per second at most, over all its connections,
    /// one second's worth at once: past it an answer waits, so a ping flood is answered at that rate and the
    /// muxer pushes back on the flooder (counted in `glueberry_pings_paced_total`), and a peer
    /// that stays over it for 10 s loses score (a `Low` verdict per 10 s; docs/scoring.md,
    /// "Quotas"). The node's own pings are never held up by it. `None` is unlimited (libp2p's
    /// ping as it is). Default 100.
    #[must_use]
    pub fn with_max_pings(mut self, per_sec: Option<u32>) -> Self {
        self.max_pings = per_sec;
        self
    }

    /// The peer-scoring model: penalties by severity, decay, the disconnect and ban thresholds,
    /// the ban's length (docs/scoring.md). `Node::new` checks it (`ConfigError::Scoring`).
    #[must_use]
    pub fn with_scoring(mut self, scoring: crate::scoring::Config) -> Self {
        self.scoring = scoring;
        self
    }

    /// Longest delay between two reconnection attempts to a persistent peer (before ±10 %
    /// jitter; never above `reconnect_max_delay`). Must not be zero. Default 30 s.
    #[must_use]
    pub fn with_persistent_max_delay(mut self, delay: Duration) -> Self {
        self.persistent_max_delay = delay;
        self
    }
}
