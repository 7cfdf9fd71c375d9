//! Swarm events: one handler per kind of event.

use std::time::Instant;

use libp2p::swarm::{ConnectionError, ConnectionId, SwarmEvent};
use libp2p::{PeerId, ping};
use time::OffsetDateTime;

use super::{Conn, Driver};
use crate::admission;
use crate::behaviour::BehaviourEvent;
use crate::event::AdmissionCause;
use crate::peer::{DisconnectReason, Input, State};
use crate::shared::lock;
use crate::telemetry::{self as m, direction};

impl Driver {
    /// A connection came up: record it, settle duplicates and a restarted peer's extra
    /// connections, open the session on the first one, feed the machine, answer waiters.
    pub(super) fn on_connection_established(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: libp2p::core::ConnectedPoint,
        num_established: std::num::NonZeroU32,
    ) {
        let outbound = endpoint.is_dialer();
        metrics::counter!(m::CONNECTIONS_OPENED, "direction" => direction(outbound)).increment(1);
        if outbound {
            metrics::counter!(m::CONNECTION_ATTEMPTS, "result" => "success").increment(1);
        }
        let after_established = self.state(&peer_id) == State::Established;
        // A peer outside the book is dialable only for the reconnection series after
        // a loss (see ConnectionClosed): once connected again, that series is over.
        if self.book.get(&peer_id).is_none()
            && let Some(p) = self.peers.get_mut(&peer_id)
        {
            p.machine.set_dialable(false);
        }
        if outbound {
            self.learn(peer_id, [endpoint.get_remote_address().clone()]);
        }
        let quic = endpoint
            .get_remote_address()
            .iter()
            .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1));
        // QUIC keeps its own liveness (its idle timeout); TCP is watched by pings.
        self.liveness
            .on_established(connection_id, !quic, Instant::now());
        let switch = self.switches.take(peer_id, &endpoint);
        self.peer(peer_id).conns.push(Conn {
            id: connection_id,
            outbound,
            switch,
            retired: false,
            after_established,
        });
        self.supersede_oldest(peer_id, connection_id);
        if num_established.get() > 1 {
            // Both dialled at once, or (while Established) the peer restarted behind a
            // lingering connection: settle on one now; a handshake stream on the newest
            // connection later says it was a restart (`on_handshake_stream`).
            self.settle_duplicates(peer_id);
        }
        if num_established.get() == 1 {
            let now = tokio::time::Instant::now();
            let stats = self.shared.stats.peer(peer_id, now);
            stats.connection_up(outbound, now);
            self.shared
                .sessions
                .open(peer_id, &self.shared.token, stats);
            if self.book.touch(&peer_id, OffsetDateTime::now_utc()) {
                self.book_dirty = true;
            }
            let _ = self.apply(
                peer_id,
                Input::ConnectionEstablished {
                    outbound: endpoint.is_dialer(),
                },
            );
        }
        if matches!(self.state(&peer_id), State::Connected | State::Established)
            && let Some(p) = self.peers.get_mut(&peer_id)
        {
            for w in p.waiting.drain(..) {
                let _ = w.send(Ok(()));
            }
        }
        self.refresh_view(peer_id);
    }

    /// A connection closed: forget it; on the peer's last one, close the session and feed
    /// the machine the reason.
    pub(super) fn on_connection_closed(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        endpoint: libp2p::core::ConnectedPoint,
        num_established: u32,
        cause: Option<ConnectionError>,
    ) {
        metrics::counter!(m::CONNECTIONS_CLOSED, "direction" => direction(endpoint.is_dialer()))
            .increment(1);
        if let Some(p) = self.peers.get_mut(&peer_id) {
            p.conns.retain(|c| c.id != connection_id);
        }
        self.liveness.on_closed(connection_id);
        let recorded = self.closing.remove(&connection_id);
        if num_established == 0 {
            if let Some(e) = self.shared.stats.get(&peer_id) {
                e.connection_down(tokio::time::Instant::now());
            }
            self.shared.sessions.close(&peer_id);
            self.swarm.behaviour_mut().stream.forget(&peer_id);
            let reason = recorded.unwrap_or_else(|| close_reason(cause));
            // An established peer outside the book whose connection was lost (not
            // closed by the peer on purpose): reconnect it with what we learned.
            if self.shared.config.reconnect_learned_peers
                && !matches!(reason, DisconnectReason::RemoteClosed)
                && self.state(&peer_id) == State::Established
                && self.book.get(&peer_id).is_none()
                && self.learned.get(&peer_id).is_some_and(|a| !a.is_empty())
                && let Some(p) = self.peers.get_mut(&peer_id)
            {
                p.machine.set_dialable(true);
            }
            let _ = self.apply(peer_id, Input::ConnectionClosed(reason));
        }
        if self.peers.contains_key(&peer_id) {
            self.refresh_view(peer_id);
        }
    }

    pub(super) fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        #[cfg(feature = "libp2p-metrics")]
        if let Some(m) = &self.shared.config.libp2p_metrics {
            use libp2p::metrics::Recorder as _;
            match &event {
                SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => m.record(e),
                SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => m.record(e),
                _ => {}
            }
            m.record(&event);
        }
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => self.on_connection_established(peer_id, connection_id, endpoint, num_established),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                cause,
                ..
            } => {
                self.on_connection_closed(peer_id, connection_id, endpoint, num_established, cause)
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "dial failed");
                self.dial_failed(peer);
                if !self.swarm.is_connected(&peer) {
                    let _ = self.apply(peer, Input::DialFailed(error.to_string()));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Ok(rtt),
            })) => {
                self.liveness.on_pong(connection, Instant::now());
                if let Some(e) = self.shared.stats.get(&peer) {
                    e.rtt(rtt);
                }
                metrics::histogram!(m::PING_RTT).record(rtt.as_secs_f64());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Stream(inbound)) => self.on_inbound(inbound),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => {
                // A glueberry-rs peer never resets a stream of ours (it reads every stream): no
                // need to keep copies for it (docs/protocol.md, "Streams").
                if info
                    .agent_version
                    .starts_with(crate::behaviour::AGENT_PREFIX)
                {
                    self.shared.sessions.never_resets(&peer_id);
                }
                self.learn(peer_id, info.listen_addrs);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(failure),
            })) => {
                // Liveness decides from the answers (`on_liveness_timeout`), not from how
                // libp2p-ping reports failures (it keeps the first one to itself).
                tracing::debug!(%peer, %connection, %failure, "ping failed");
                if matches!(failure, ping::Failure::Unsupported) {
                    self.liveness.on_unsupported(connection);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Admission(report)) => self.on_admission(report),
            SwarmEvent::IncomingConnectionError { .. } => {
                let evicted = self.pending.evicted();
                for _ in self.pending_evicted..evicted {
                    self.on_admission(admission::Report {
                        cause: AdmissionCause::PendingEvicted,
                        peer: None,
                        remote: None,
                        connection: None,
                    });
                }
                self.pending_evicted = evicted;
            }
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::info!(%address, "listening");
                lock(&self.shared.listen_addrs).push(address);
                self.listener_ready(listener_id, None);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                lock(&self.shared.listen_addrs).retain(|a| a != &address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                self.listeners.remove(&listener_id);
                let why = match reason {
                    Ok(()) => "listener closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                self.listener_ready(listener_id, Some(why));
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.listener_ready(listener_id, Some(error.to_string()));
            }
            _ => {}
        }
    }
}

/// Why a connection closed, from what the swarm reports.
fn close_reason(cause: Option<ConnectionError>) -> DisconnectReason {
    match cause {
        // An active close by this node; the state machine knows when it asked for one.
        None => DisconnectReason::RemoteClosed,
        Some(ConnectionError::KeepAliveTimeout) => DisconnectReason::IdleTimeout,
        Some(ConnectionError::IO(outer)) => {
            // Muxer errors arrive boxed in io::Errors (one per StreamMuxerBox): look inside.
            let mut e = &outer;
            while let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<std::io::Error>()) {
                e = inner;
            }
            // Our muxer (`transport::muxer`) passes yamux's error on as it is.
            let yamux_closed = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<yamux::ConnectionError>())
                .is_some_and(|y| matches!(y, yamux::ConnectionError::Closed));
            // quinn reports a peer's close as "closed by peer" (ApplicationClosed) inside
            // libp2p-quic's error, which is not reachable by downcasting.
            if yamux_closed
                || e.kind() == std::io::ErrorKind::UnexpectedEof
                || e.to_string().contains("closed by peer")
            {
                DisconnectReason::RemoteClosed
            } else if e.kind() == std::io::ErrorKind::TimedOut
                || e.to_string().contains("timed out")
            {
                // QUIC's idle timeout: the path went silent (our severed connections carry
                // their reason in `closing`).
                DisconnectReason::Unresponsive
            } else {
                DisconnectReason::Error(e.to_string())
            }
        }
    }
}
