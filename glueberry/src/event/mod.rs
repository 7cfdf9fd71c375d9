//! Events the node reports, and subscriptions to them.

pub(crate) mod forwarder;

use std::time::SystemTime;

use libp2p::PeerId;

use crate::peer::{DisconnectReason, State};

/// A peer changed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// The peer.
    pub peer: PeerId,
    /// Its new state.
    pub state: State,
    /// Why the peer left an active state (set for Disconnected and Cooldown, and for
    /// Reconnecting after a failed dial).
    pub reason: Option<DisconnectReason>,
    /// During reconnection (Reconnecting, Connecting): the attempt number, from 1.
    pub attempt: Option<u32>,
    /// For Reconnecting: the delay before the attempt.
    pub delay: Option<std::time::Duration>,
    /// When the node saw the change.
    pub at: SystemTime,
}

/// A peer sent something that breaks the protocol on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFault {
    /// The peer.
    pub peer: PeerId,
    /// The stream name.
    pub stream: String,
    /// What was wrong (a framing error or an undecryptable body).
    pub error: String,
    /// Whether the node reset the stream because of it.
    pub reset: bool,
    /// How many faults of this peer this report stands for: reports are rate-limited per peer
    /// (`fault_report_interval`, one a second by default), so 1 for the first and then the
    /// faults since the last report, this one included. Every fault is counted in the stream's
    /// statistics whether reported or not.
    pub faults: u64,
    /// When it happened.
    pub at: SystemTime,
}

/// The peer reset a stream the node was writing on (docs/protocol.md, "Streams").
///
/// A peer that follows Go Glueberry's rule resets the node's stream of a name when both sides
/// opened one at once; what the node wrote on it while the peer could not have read it yet is
/// written again on the peer's own stream of that name (or, if that has not come yet, on the
/// next stream of the name), after which the rest of the queue follows in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReset {
    /// The peer.
    pub peer: PeerId,
    /// The stream name.
    pub stream: String,
    /// Messages that go on another stream of the name instead, in their order: those written
    /// while the peer could not have read them yet, written again; and, when no other stream
    /// was there yet, those still queued, kept for the next stream of the name.
    pub resent: u64,
    /// Messages that may not have reached the peer and are not written again: those that were
    /// being written when the reset came, on a stream that had settled (docs/protocol.md). Each
    /// is counted in `dropped.stream_closed`.
    pub lost: u64,
    /// When the node saw the reset.
    pub at: SystemTime,
}

/// Why the node refused a connection, or closed one to make room (docs/admission.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdmissionCause {
    /// An inbound connection still in its security handshake was closed: all
    /// `max_pending_inbound` places were taken and it was the oldest.
    PendingEvicted,
    /// An inbound connection was refused before its security handshake: its IP address already
    /// had `max_inbound_per_ip` connections that have not finished the application handshake.
    PerIp,
    /// A stranger's connection (inbound, from a peer neither in the address book nor
    /// handshaked) was closed: `max_strangers` were connected and it was the oldest.
    StrangerEvicted,
    /// A stranger's connection was refused: the node has `conn_high_watermark` established
    /// connections.
    Total,
    /// A stranger's connection was refused: the node has `max_inbound_connections` established
    /// inbound connections.
    Inbound,
    /// A peer's older connection was closed for a new one: it had `max_connections_per_peer`
    /// (a restarted peer connects again while its old connection lingers).
    Superseded,
    /// A peer sent `max_faults` bad frames within `fault_window`: it was disconnected and is
    /// kept out for `fault_cooldown` (docs/admission.md, "Faulting peers").
    Faults,
    /// The application rejected a peer (the built-in handshake's check, or
    /// `Node::reject_peer`): it was disconnected and is kept out for `rejection_cooldown`.
    Rejected,
    /// A peer's score fell to the ban threshold: it was disconnected and is banned for
    /// `scoring::Config::ban_duration` (docs/scoring.md).
    Banned,
}

impl AdmissionCause {
    /// Every cause, in a fixed order.
    pub const ALL: [AdmissionCause; 9] = [
        AdmissionCause::PendingEvicted,
        AdmissionCause::PerIp,
        AdmissionCause::StrangerEvicted,
        AdmissionCause::Total,
        AdmissionCause::Inbound,
        AdmissionCause::Superseded,
        AdmissionCause::Faults,
        AdmissionCause::Rejected,
        AdmissionCause::Banned,
    ];

    /// The cause as a metric label (`pending_evicted`, `per_ip`, ...).
    pub fn label(self) -> &'static str {
        match self {
            AdmissionCause::PendingEvicted => "pending_evicted",
            AdmissionCause::PerIp => "per_ip",
            AdmissionCause::StrangerEvicted => "stranger_evicted",
            AdmissionCause::Total => "total",
            AdmissionCause::Inbound => "inbound",
            AdmissionCause::Superseded => "superseded",
            AdmissionCause::Faults => "faults",
            AdmissionCause::Rejected => "rejected",
            AdmissionCause::Banned => "banned",
        }
    }
}

impl std::fmt::Display for AdmissionCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Connections refused or evicted by admission. To keep a flood from becoming a flood of
/// events, at most one is sent per cause per second (refusals held back in between are
/// reported within [`Config::with_book_flush_interval`](crate::Config::with_book_flush_interval)
/// after that); `count` says how many refusals it stands for. Every one is counted in
/// [`Node::admission_stats`](crate::Node::admission_stats) and in the
/// `glueberry_connections_refused_total` / `glueberry_connections_evicted_total` metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionEvent {
    /// Why.
    pub cause: AdmissionCause,
    /// Refusals or evictions of this cause this event stands for (at least 1).
    pub count: u64,
    /// The peer of the last of them, when known (not before the security handshake).
    pub peer: Option<PeerId>,
    /// The remote address of the last of them, when known.
    pub remote: Option<libp2p::Multiaddr>,
    /// When the node reported it.
    pub at: SystemTime,
}

/// Anything a subscription receives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer changed state.
    Connection(ConnectionEvent),
    /// A peer broke the protocol on a stream.
    StreamFault(StreamFault),
    /// The address book file was corrupt when the node opened it: it was moved aside and the
    /// node started with an empty book. Sent once, when the node starts.
    BookRecovered(crate::book::Recovered),
    /// The peer reset a stream the node was writing on.
    StreamReset(StreamReset),
    /// Connections were refused or evicted by admission (rate-limited: see
    /// [`AdmissionEvent`]).
    Admission(AdmissionEvent),
}

impl Event {
    /// The peer the event is about, if any.
    pub fn peer(&self) -> Option<PeerId> {
        match self {
            Event::Connection(e) => Some(e.peer),
            Event::StreamFault(f) => Some(f.peer),
            Event::StreamReset(r) => Some(r.peer),
            Event::BookRecovered(_) => None,
            Event::Admission(a) => a.peer,
        }
    }
}

/// Which events a subscription wants. The default takes everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    peers: Option<Vec<PeerId>>,
    states: Option<Vec<State>>,
}

impl Filter {
    /// Every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events about these peers.
    #[must_use]
    pub fn peers(mut self, peers: impl IntoIterator<Item = PeerId>) -> Self {
        self.peers = Some(peers.into_iter().collect());
        self
    }

    /// Only connection events into these states (stream faults are left out).
    #[must_use]
    pub fn states(mut self, states: impl IntoIterator<Item = State>) -> Self {
        self.states = Some(states.into_iter().collect());
        self
    }

    /// Whether a peer in `state` passes (for snapshots).
    pub(crate) fn matches_state(&self, peer: &PeerId, state: State) -> bool {
        self.peers.as_ref().is_none_or(|ps| ps.contains(peer))
            && self.states.as_ref().is_none_or(|ss| ss.contains(&state))
    }

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(peers) = &self.peers
            && !event.peer().is_some_and(|p| peers.contains(&p))
        {
            return false;
        }
        match (&self.states, event) {
            (None, _) => true,
            (Some(states), Event::Connection(e)) => states.contains(&e.state),
            (Some(_), _) => false,
        }
    }
}

/// Why [`Subscription::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind: this many events that passed its filter were not queued
    /// for it. The next `recv` continues with the events that came after them. (In the rare
    /// case where the node's forwarder itself fell behind, the count includes the events it
    /// could not take, whatever the filter: it may overstate the loss, never understate it.)
    #[error("subscriber lagged: {0} events missed")]
    Lagged(u64),
    /// The node shut down and every event has been read.
    #[error("node shut down")]
    Closed,
}

/// A subscription to the node's events, from
/// [`Node::subscribe_events`](crate::Node::subscribe_events).
///
/// Each subscription has its own bounded queue (`event_buffer_size`), filled by the node's
/// forwarder task with the events that pass its filter. One that falls behind never blocks the
/// node or the other subscribers: the events it has no room for are counted, and it receives
/// [`RecvError::Lagged`] with that count where they would have been. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: tokio::sync::mpsc::Receiver<forwarder::Item>,
    final_missed: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Subscription {
    /// The next event.
    ///
    /// # Errors
    ///
    /// - [`RecvError::Lagged`]`(n)`: this subscription fell behind and `n` events were dropped
    ///   for it; the next call returns the events after them;
    /// - [`RecvError::Closed`]: the node shut down and every event was delivered.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        match self.rx.recv().await {
            Some(forwarder::Item::Event(e)) => Ok(e),
            Some(forwarder::Item::Lagged(n)) => Err(RecvError::Lagged(n)),
            None => Err(self.end()),
        }
    }

    fn end(&self) -> RecvError {
        match self
            .final_missed
            .swap(0, std::sync::atomic::Ordering::AcqRel)
        {
            0 => RecvError::Closed,
            n => RecvError::Lagged(n),
        }
    }

    /// The next event already queued, without waiting; `Ok(None)` when none is.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv); `Ok(None)` when no event is waiting.
    pub fn try_recv(&mut self) -> Result<Option<Event>, RecvError> {
        use tokio::sync::mpsc::error::TryRecvError;
        match self.rx.try_recv() {
            Ok(forwarder::Item::Event(e)) => Ok(Some(e)),
            Ok(forwarder::Item::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.end()),
        }
    }
}
