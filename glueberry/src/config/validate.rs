//! Checking a configuration before a node is built from it.

use std::time::Duration;

use super::{Config, ConfigError};

impl Config {
    /// Checks every field; [`Node::new`](crate::Node::new) calls it.
    ///
    /// # Errors
    ///
    /// The first problem found, as a [`ConfigError`]: a missing path or listen address, a zero
    /// where a positive size or duration is needed, reconnect delays or watermarks in the wrong
    /// order, a message size above the protocol limit, a receive budget too small for the largest
    /// message, or a built-in handshake whose Hello or streams do not fit.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.address_book_path.as_os_str().is_empty() {
            return Err(ConfigError::MissingAddressBookPath);
        }
        if self.listen_addrs.is_empty() {
            return Err(ConfigError::MissingListenAddrs);
        }
        for (value, name) in [
            (self.event_buffer_size, "event_buffer_size"),
            (self.message_buffer_size, "message_buffer_size"),
            (
                self.max_handshake_message_size,
                "max_handshake_message_size",
            ),
            (self.high_watermark, "high_watermark"),
            (self.conn_high_watermark, "conn_high_watermark"),
            (self.max_stats_peers, "max_stats_peers"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.dial_timeout.is_zero() {
            return Err(ConfigError::Zero("dial_timeout"));
        }
        if self.stats_cleanup_interval.is_zero() {
            return Err(ConfigError::Zero("stats_cleanup_interval"));
        }
        if self.book_flush_interval.is_zero() {
            return Err(ConfigError::Zero("book_flush_interval"));
        }
        for (d, name) in [
            (self.ping_interval, "ping_interval"),
            (self.ping_timeout, "ping_timeout"),
            (
                self.security_handshake_timeout,
                "security_handshake_timeout",
            ),
            (self.frame_timeout.unwrap_or(Duration::MAX), "frame_timeout"),
            (self.fault_window, "fault_window"),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        // A limit of zero would refuse everything: say so instead.
        for (limit, name) in [
            (self.max_inbound_connections, "max_inbound_connections"),
            (self.max_connections_per_peer, "max_connections_per_peer"),
            (self.max_pending_inbound, "max_pending_inbound"),
            (self.max_inbound_per_ip, "max_inbound_per_ip"),
            (self.max_strangers, "max_strangers"),
            (self.max_stream_name_length, "max_stream_name_length"),
        ] {
            if limit == Some(0) {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.reconnect_base_delay.is_zero() {
            return Err(ConfigError::Zero("reconnect_base_delay"));
        }
        if self.reconnect_max_delay < self.reconnect_base_delay {
            return Err(ConfigError::ReconnectDelays {
                base: self.reconnect_base_delay,
                max: self.reconnect_max_delay,
            });
        }
        for (low, high, what) in [
            (self.low_watermark, self.high_watermark, "flow control"),
            (
                self.conn_low_watermark,
                self.conn_high_watermark,
                "connections",
            ),
        ] {
            if low >= high {
                return Err(ConfigError::Watermarks { what, low, high });
            }
        }
        if self.max_message_size > Self::MAX_MESSAGE_SIZE_LIMIT {
            return Err(ConfigError::MessageSizeAboveProtocolLimit(
                self.max_message_size,
            ));
        }
        if self.persistent_max_delay.is_zero() {
            return Err(ConfigError::Zero("persistent_max_delay"));
        }
        self.validate_handshake()?;
        self.validate_persistent_peers()?;
        self.validate_scoring()?;
        if self.max_new_streams == Some(0) {
            return Err(ConfigError::Zero("max_new_streams"));
        }
        if self.max_pings == Some(0) {
            return Err(ConfigError::Zero("max_pings"));
        }
        if self.max_handshake_streams == Some(0) {
            return Err(ConfigError::Zero("max_handshake_streams"));
        }
        for q in self.stream_quotas.values() {
            if q.messages_per_sec == Some(0) || q.bytes_per_sec == Some(0) {
                return Err(ConfigError::Zero("a stream quota"));
            }
        }
        self.validate_budgets()
    }

    fn validate_persistent_peers(&self) -> Result<(), ConfigError> {
        let me = libp2p::PeerId::from_public_key(&self.keypair.public().into());
        for (peer, addrs) in &self.persistent_peers {
            let wrong = |reason| {
                Err(ConfigError::PersistentPeer {
                    peer: *peer,
                    reason,
                })
            };
            if *peer == me {
                return wrong("it is this node");
            }
            if addrs.is_empty() {
                return wrong("no address to dial");
            }
            let other = addrs.iter().any(|a| {
                a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(id) if id != *peer))
            });
            if other {
                return wrong("an address ends in /p2p/ of another peer");
            }
        }
        Ok(())
    }

    fn validate_scoring(&self) -> Result<(), ConfigError> {
        let s = &self.scoring;
        let wrong = |what| Err(ConfigError::Scoring(what));
        if s.penalties.iter().any(|p| !p.is_finite() || *p < 0.0) {
            return wrong("penalties must be finite and not negative");
        }
        if s.half_life.is_zero() || s.ban_duration.is_zero() {
            return wrong("half_life and ban_duration must not be zero");
        }
        if s.ban_duration > crate::scoring::MAX_BAN {
            return wrong("ban_duration is longer than a year: blacklist the peer instead");
        }
        if !(s.disconnect_below < 0.0 && s.ban_below <= s.disconnect_below) {
            return wrong("need ban_below <= disconnect_below < 0");
        }
        Ok(())
    }

    fn validate_handshake(&self) -> Result<(), ConfigError> {
        let Some(hs) = &self.handshake else {
            return Ok(());
        };
        let max = self
            .max_message_size_for(crate::wire::HANDSHAKE)
            .saturating_sub(1);
        if hs.hello.len() > max {
            return Err(ConfigError::HelloTooLarge {
                size: hs.hello.len(),
                max,
            });
        }
        if hs.streams.is_empty() {
            return Err(ConfigError::NoHandshakeStreams);
        }
        for name in hs.streams.iter() {
            crate::wire::protocol::validate_encrypted_name(name, self.max_stream_name_length)
                .map_err(|reason| ConfigError::HandshakeStream {
                    name: name.clone(),
                    reason,
                })?;
        }
        Ok(())
    }

    /// Every budget must let one largest message through the share its streams may use, with
    /// room for a read-ahead beside it, or a stream could wait for ever (strangers only have the
    /// handshake stream, which is `High`); the total's reserve must hold one peer's floor.
    fn validate_budgets(&self) -> Result<(), ConfigError> {
        let bulk = |b: usize| b - b / 4;
        let data = self.largest_read("");
        for (budget, needed, what) in [
            (
                bulk(self.peer_receive_budget),
                data,
                "three quarters of peer_receive_budget",
            ),
            (
                self.stranger_receive_budget,
                self.largest_read(crate::wire::HANDSHAKE),
                "stranger_receive_budget",
            ),
            (
                self.strangers_receive_budget,
                self.stranger_receive_budget,
                "strangers_receive_budget",
            ),
            (
                self.receive_budget,
                self.peer_receive_budget,
                "receive_budget",
            ),
            (self.receive_budget / 4, data, "a quarter of receive_budget"),
        ] {
            if budget < needed {
                return Err(ConfigError::BudgetTooSmall {
                    what,
                    budget,
                    needed,
                });
            }
        }
        Ok(())
    }
}
