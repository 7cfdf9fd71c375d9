//! State shared by the node handle, the driver and the stream tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::crypto::LocalKey;
use crate::event::Event;
use crate::event::forwarder::Hub;
use crate::peer::State;
use crate::stream::Sessions;

/// What the node handle can read of a peer without asking the driver.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerView {
    pub(crate) state: State,
    /// Direction of the connection kept, while connected.
    pub(crate) outbound: Option<bool>,
    pub(crate) connections: usize,
}

/// A request to open an outbound stream.
pub(crate) struct OpenStream {
    pub(crate) peer: PeerId,
    pub(crate) protocol: libp2p::StreamProtocol,
    pub(crate) reply: crate::behaviour::streams::OpenReply,
}

/// What every task of one node can reach. Each field has one writer, named in its doc.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) local_key: LocalKey,
    /// Requests to open outbound streams, to the driver (which picks the connection).
    pub(crate) opens: tokio::sync::mpsc::Sender<OpenStream>,
    /// Per-peer streams and keys. Entries are added and removed by the driver only (on the
    /// first connection up, on the last connection down); stream slots inside are added by
    /// senders and the driver.
    pub(crate) sessions: Sessions,
    /// Read-only view of the peers' states. Written by the driver only.
    pub(crate) states: Mutex<HashMap<PeerId, PeerView>>,
    /// Bound listen addresses. Written by the driver only.
    pub(crate) listen_addrs: Mutex<Vec<Multiaddr>>,
    /// Decoded messages waiting for the application, and the byte budgets readers charge
    /// before reading. Readers push, receivers take; the driver says who is handshaked.
    pub(crate) inbox: Arc<crate::inbox::Inbox>,
    /// Peers' faults: what is reported, who is punished. Written by stream readers.
    pub(crate) faults: Mutex<crate::faults::Faults>,
    /// What stream readers and connections find against peers (faults past `max_faults`,
    /// quota excess, refused streams), to the driver, which keeps the scores. Posted by any
    /// task, taken by the driver.
    pub(crate) mail: Arc<crate::scoring::mailbox::Mailbox>,
    /// Event fan-out to subscriptions, through the forwarder task.
    pub(crate) events: Hub,
    /// Per-peer statistics: connection fields written by the driver, counters by the stream
    /// paths; entries removed by the cleanup task.
    pub(crate) stats: Arc<crate::stats::Registry>,
    /// Admission refusals and evictions by cause. Written by the driver only.
    pub(crate) admission: Mutex<crate::stats::AdmissionStats>,
    /// Root of every task's cancellation.
    pub(crate) token: CancellationToken,
    /// Cancelled when shutdown begins (a child of `token`): no new sends or commands, while
    /// the writers drain what is queued.
    pub(crate) closing: CancellationToken,
    /// Every task the node starts but the writers and the forwarder.
    pub(crate) tracker: TaskTracker,
    /// The stream writer tasks (shutdown lets them drain first).
    pub(crate) writers: TaskTracker,
    /// The forwarder task, which ends last (after delivering the final events).
    pub(crate) forwarder: TaskTracker,
    /// Peers' state changes, to the built-in handshake's router (when it runs). Written by the
    /// driver only, in order; bounded by the peers' state changes, which admission bounds.
    pub(crate) handshakes:
        Option<tokio::sync::mpsc::UnboundedSender<crate::handshake::run::Change>>,
}

impl Shared {
    /// Sends `event` to every subscription; never waits.
    pub(crate) fn emit(&self, event: Event) {
        self.events.emit(event);
    }
}

/// Locks a mutex, ignoring poisoning: no critical section here can leave state half-written.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
