//! The node handle: the public API. Cheap to clone; every method is safe from any number of
//! tasks at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use libp2p::identity::{PublicKey, ed25519};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{OnceCell, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::Config;
use crate::crypto::{Cipher, LocalKey};
use crate::driver::{COMMAND_BUFFER, Command, Driver, OPEN_BUFFER};
use crate::error::{Error, Result};
use crate::event::forwarder::Hub;
use crate::event::{Filter, Subscription};
use crate::message::Messages;
use crate::peer::State;
use crate::persist::{Saved, Snapshot};
use crate::shared::{Shared, lock};
use crate::stream::{self, Sessions};
use crate::wire::{self, HANDSHAKE};

mod book;
mod handshake;
mod observe;
mod receive;
mod scores;
mod send;

pub use send::Recipients;

/// A Glueberry node: a libp2p swarm driven by one task, the handshake stream, and encrypted
/// named streams per peer.
///
/// `Node` is `Clone + Send + Sync`; clones share one node. Dropping every clone stops it, but
/// only [`Node::shutdown`] waits for its tasks to end.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    messages: Messages,
    peer_id: PeerId,
    public_key: [u8; 32],
    started: AtomicBool,
    shutdown: OnceCell<()>,
    /// The last address-book version on disk.
    saved: watch::Receiver<Saved>,
    /// A corrupt book found at open, reported when the node starts.
    recovered: std::sync::Mutex<Option<crate::book::Recovered>>,
    /// The built-in handshake's inputs, until `start` spawns its router.
    handshake: std::sync::Mutex<Option<HandshakeInputs>>,
}

type HandshakeInputs = (
    crate::handshake::Config,
    mpsc::UnboundedReceiver<crate::handshake::run::Change>,
    Messages,
);

/// A node handle that does not keep the node alive (for its own tasks).
#[derive(Clone)]
pub(crate) struct WeakNode(std::sync::Weak<Inner>);

impl WeakNode {
    pub(crate) fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.token.cancel();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("peer_id", &self.inner.peer_id)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Builds a node from `config`. It does not listen until [`start`](Self::start).
    ///
    /// Must be called from inside a tokio runtime: it spawns the driver task.
    ///
    /// # Errors
    ///
    /// - [`Error::Config`] if [`Config::validate`] refuses `config` (a bug: fix the setting);
    /// - [`Error::NoRuntime`] outside a tokio runtime;
    /// - [`Error::AddressBook`] if the book cannot be opened: locked by another process, too
    ///   large, of an unknown version, or an I/O error (a corrupt file is moved aside instead);
    /// - [`Error::Transport`] if libp2p cannot build the transport.
    pub fn new(config: Config) -> Result<Self> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (store, book, skipped, recovered) = crate::book::Store::open(&config.address_book_path)
            .map_err(|e| Error::AddressBook(Arc::new(e)))?;
        for s in &skipped {
            tracing::warn!(peer = %s.peer, addr = %s.addr, "address book: multiaddress does not parse, not dialled");
        }
        if let Some(r) = &recovered {
            tracing::warn!(backup = %r.backup.display(), reason = %r.reason, "address book was corrupt: moved aside, starting empty");
        }
        let mail = Arc::new(crate::scoring::mailbox::Mailbox::default());
        let built = crate::behaviour::build_swarm(&config, &mail)?;
        let seed: [u8; 32] = config
            .keypair
            .secret()
            .as_ref()
            .try_into()
            .expect("an Ed25519 seed is 32 bytes");
        let local_key = LocalKey::from_ed25519_seed(&seed);
        let public_key = config.keypair.public().to_bytes();
        let peer_id = *built.swarm.local_peer_id();
        let inbox =
            crate::inbox::Inbox::new(config.inbox_limits(), config.stream_priorities.clone());
        let messages = inbox.messages();
        crate::telemetry::describe();
        let (events, forwarder) = Hub::new(config.event_buffer_size);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_BUFFER);
        let (opens_tx, opens_rx) = mpsc::channel(OPEN_BUFFER);
        let faults = std::sync::Mutex::new(crate::faults::Faults::new(config.fault_limits()));
        let stats = Arc::new(crate::stats::Registry::new(config.max_stats_peers));
        let token = CancellationToken::new();
        let closing = token.child_token();
        // The built-in handshake reads the handshake stream from the start.
        let (handshakes, handshake) = match &config.handshake {
            Some(hs) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (
                    Some(tx),
                    Some((hs.clone(), rx, inbox.messages_for(HANDSHAKE))),
                )
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            config,
            local_key,
            opens: opens_tx,
            sessions: Sessions::default(),
            states: Default::default(),
            listen_addrs: Default::default(),
            inbox,
            faults,
            mail,
            events,
            stats,
            admission: Default::default(),
            token,
            closing,
            tracker: TaskTracker::new(),
            writers: TaskTracker::new(),
            forwarder: TaskTracker::new(),
            handshakes,
        });
        shared.forwarder.spawn_on(forwarder, &runtime);
        let (snapshots_tx, snapshots_rx) = watch::channel(Snapshot::default());
        let (saved_tx, saved_rx) = watch::channel(Saved::default());
        shared
            .tracker
            .spawn_on(crate::persist::run(store, snapshots_rx, saved_tx), &runtime);
        let driver = Driver::new(
            built,
            shared.clone(),
            commands_rx,
            opens_rx,
            book,
            snapshots_tx,
        );
        shared.tracker.spawn_on(driver.run(), &runtime);
        if let Some(max_age) = shared.config.stats_max_age {
            shared.tracker.spawn_on(
                crate::stats::cleanup::run(
                    shared.stats.clone(),
                    shared.config.stats_cleanup_interval,
                    max_age,
                    shared.token.clone(),
                ),
                &runtime,
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                commands: commands_tx,
                messages,
                peer_id,
                public_key,
                started: AtomicBool::new(false),
                shutdown: OnceCell::new(),
                saved: saved_rx,
                recovered: std::sync::Mutex::new(recovered),
                handshake: std::sync::Mutex::new(handshake),
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
    }

    pub(crate) fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// The node's root token and task tracker, for tasks it starts.
    pub(crate) fn tasks(&self) -> (CancellationToken, TaskTracker) {
        (self.shared().token.clone(), self.shared().tracker.clone())
    }

    fn check_running(&self) -> Result<()> {
        if self.shared().closing.is_cancelled() {
            return Err(Error::Shutdown);
        }
        if !self.inner.started.load(Ordering::Acquire) {
            return Err(Error::NotStarted);
        }
        Ok(())
    }

    /// Sends a command to the driver and waits for its answer.
    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command,
    ) -> Result<T> {
        let token = &self.shared().closing;
        if token.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let (tx, rx) = oneshot::channel();
        tokio::select! {
            biased;
            _ = token.cancelled() => return Err(Error::Shutdown),
            r = self.inner.commands.send(make(tx)) => r.map_err(|_| Error::Shutdown)?,
        }
        rx.await.unwrap_or(Err(Error::Shutdown))
    }

    /// Listens on the configured addresses and accepts handshake streams. Returns once every
    /// listener is bound, with the bound addresses.
    ///
    /// # Errors
    ///
    /// - [`Error::AlreadyStarted`] on a second call;
    /// - [`Error::Listen`] if an address cannot be bound (nothing is left listening then; the
    ///   call may be retried with the cause fixed);
    /// - [`Error::Shutdown`] after [`shutdown`](Self::shutdown).
    pub async fn start(&self) -> Result<Vec<Multiaddr>> {
        if self.shared().closing.is_cancelled() {
            return Err(Error::Shutdown);
        }
        if self.inner.started.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyStarted);
        }
        if let Some(r) = lock(&self.inner.recovered).take() {
            self.shared().emit(crate::event::Event::BookRecovered(r));
        }
        if let Some((config, changes, messages)) = lock(&self.inner.handshake).take() {
            self.shared().tracker.spawn(crate::handshake::run::route(
                self.downgrade(),
                config,
                changes,
                messages,
            ));
        }
        let r = self.request(|reply| Command::Start { reply }).await;
        if r.is_err() {
            self.inner.started.store(false, Ordering::Release);
        }
        r
    }

    /// Stops the node: closes every connection (subscribers see `Disconnected` with reason
    /// `Shutdown`), ends every task it started and returns when they have all ended. Later
    /// calls fail with [`Error::Shutdown`]; the message queue and subscriptions end once read.
    ///
    /// Idempotent and safe from many tasks at once: one performs the teardown, the others wait
    /// for it.
    pub async fn shutdown(&self) {
        let shared = self.shared().clone();
        self.inner
            .shutdown
            .get_or_init(|| async move {
                // First, no new sends or commands; what is queued is written (for at most
                // `shutdown_drain_timeout`), and each stream is closed cleanly.
                shared.closing.cancel();
                // Readers no longer wait for room: every stream is read to its end.
                shared.inbox.unlimit();
                shared.sessions.drop_all_writers();
                shared.writers.close();
                let drain = shared.config.shutdown_drain_timeout;
                if tokio::time::timeout(drain, shared.writers.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(?drain, "shutdown: queued messages not all written in time");
                }
                shared.token.cancel();
                shared.tracker.close();
                shared.tracker.wait().await;
                shared.writers.wait().await;
                shared.inbox.close();
                // Every emitter has ended: the forwarder delivers what it holds and ends.
                shared.events.close();
                shared.forwarder.close();
                shared.forwarder.wait().await;
                tracing::info!("node shut down");
            })
            .await;
    }

    /// This node's `PeerId`.
    pub fn peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    /// This node's Ed25519 public key (what peers pass to [`prepare_streams`](Self::prepare_streams)).
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.public_key
    }

    /// The addresses the node listens on, with ports resolved.
    pub fn listen_addrs(&self) -> Vec<Multiaddr> {
        lock(&self.shared().listen_addrs).clone()
    }
}
