//! Events the node reports, and subscriptions to them.

use std::time::SystemTime;

use libp2p::PeerId;
use tokio::sync::broadcast;

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
    /// When it happened.
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
}

impl Event {
    /// The peer the event is about.
    pub fn peer(&self) -> PeerId {
        match self {
            Event::Connection(e) => e.peer,
            Event::StreamFault(f) => f.peer,
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

    /// Whether `event` passes.
    pub fn matches(&self, event: &Event) -> bool {
        if let Some(peers) = &self.peers
            && !peers.contains(&event.peer())
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
    /// The subscriber fell behind: this many events were overwritten before it read them.
    /// The next `recv` continues with the oldest event still held.
    #[error("subscriber lagged: {0} events missed")]
    Lagged(u64),
    /// The node shut down and every event has been read.
    #[error("node shut down")]
    Closed,
}

/// A subscription to the node's events, from [`Node::subscribe_events`](crate::Node::subscribe_events).
///
/// Each subscription reads a bounded ring shared with the others; one that falls behind never
/// blocks the node or the other subscribers: it gets [`RecvError::Lagged`] with the count of
/// events it missed. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
    filter: Filter,
}

impl Subscription {
    pub(crate) fn new(rx: broadcast::Receiver<Event>, filter: Filter) -> Self {
        Self { rx, filter }
    }

    /// The next event that passes the filter.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.filter.matches(&e) => return Ok(e),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    metrics::counter!("glueberry_subscriber_lagged_events_total").increment(n);
                    return Err(RecvError::Lagged(n));
                }
                Err(broadcast::error::RecvError::Closed) => return Err(RecvError::Closed),
            }
        }
    }

    /// The next event already queued, without waiting; `Ok(None)` when none is.
    pub fn try_recv(&mut self) -> Result<Option<Event>, RecvError> {
        loop {
            match self.rx.try_recv() {
                Ok(e) if self.filter.matches(&e) => return Ok(Some(e)),
                Ok(_) => continue,
                Err(broadcast::error::TryRecvError::Empty) => return Ok(None),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    metrics::counter!("glueberry_subscriber_lagged_events_total").increment(n);
                    return Err(RecvError::Lagged(n));
                }
                Err(broadcast::error::TryRecvError::Closed) => return Err(RecvError::Closed),
            }
        }
    }
}
