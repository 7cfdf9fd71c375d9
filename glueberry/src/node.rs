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
use crate::driver::{COMMAND_BUFFER, Command, Driver, FAULTY_BUFFER, OPEN_BUFFER};
use crate::error::{Error, Result};
use crate::event::forwarder::Hub;
use crate::event::{Filter, Subscription};
use crate::message::Messages;
use crate::peer::State;
use crate::persist::{Saved, Snapshot};
use crate::shared::{Shared, lock};
use crate::stream::{self, Sessions};
use crate::wire::{self, HANDSHAKE};

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
        let built = crate::behaviour::build_swarm(&config)?;
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
        let (faulty_tx, faulty_rx) = mpsc::channel(FAULTY_BUFFER);
        let faults = std::sync::Mutex::new(crate::faults::Faults::new(config.fault_limits()));
        let stats = Arc::new(crate::stats::Registry::new(config.max_stats_peers));
        let token = CancellationToken::new();
        let closing = token.child_token();
        let shared = Arc::new(Shared {
            config,
            local_key,
            opens: opens_tx,
            sessions: Sessions::default(),
            states: Default::default(),
            listen_addrs: Default::default(),
            inbox,
            faults,
            faulty: faulty_tx,
            events,
            stats,
            admission: Default::default(),
            token,
            closing,
            tracker: TaskTracker::new(),
            writers: TaskTracker::new(),
            forwarder: TaskTracker::new(),
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
            faulty_rx,
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
            }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
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

    /// Waits until address-book version `version` is on disk.
    async fn durable(&self, version: u64) -> Result<()> {
        let mut saved = self.inner.saved.clone();
        let s = saved
            .wait_for(|s| s.version >= version)
            .await
            .map_err(|_| Error::Shutdown)?;
        match &s.error {
            Some(e) if s.version == version => Err(Error::AddressBook(e.clone())),
            _ => Ok(()),
        }
    }

    /// Adds `peer` to the address book, or replaces its addresses and (unless `metadata` is
    /// empty: Go keeps it only for a nil map, which an empty map stands for here) its metadata,
    /// and returns once the book is on disk. A started node then connects to it (and reconnects to it
    /// whenever it is lost). A blacklisted peer cannot be added.
    pub async fn add_peer(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        metadata: HashMap<String, String>,
    ) -> Result<()> {
        if let Some(max) = self.shared().config.max_metadata_size {
            let size: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
            if size > max {
                return Err(Error::MetadataTooLarge { size, max });
            }
        }
        let version = self
            .request(|reply| Command::AddPeer {
                peer,
                addrs,
                metadata: (!metadata.is_empty()).then(|| metadata.into_iter().collect()),
                reply,
            })
            .await?;
        self.durable(version).await
    }

    /// Removes `peer` from the address book (and returns once that is on disk): it will not
    /// be dialled or reconnected any more (a reconnection under way stops). Its connection, if
    /// any, stays.
    pub async fn remove_peer(&self, peer: PeerId) -> Result<()> {
        let version = self
            .request(|reply| Command::RemovePeer { peer, reply })
            .await?;
        self.durable(version).await
    }

    /// The address-book entry of `peer`.
    pub async fn get_peer(&self, peer: PeerId) -> Result<Option<crate::book::Entry>> {
        self.request(|reply| Command::GetPeer { peer, reply }).await
    }

    /// Every address-book entry, blacklisted ones included.
    pub async fn list_peers(&self) -> Result<Vec<crate::book::Entry>> {
        self.request(|reply| Command::ListPeers { reply }).await
    }

    /// Blacklists `peer`, whether in the address book or not: its connections close at once,
    /// new ones are refused in both directions, and it is never reconnected.
    pub async fn blacklist_peer(&self, peer: PeerId) -> Result<()> {
        let version = self
            .request(|reply| Command::Blacklist {
                peer,
                blacklisted: true,
                reply,
            })
            .await?;
        self.durable(version).await
    }

    /// Takes `peer` off the blacklist. It is not reconnected by itself; call
    /// [`connect`](Self::connect).
    pub async fn unblacklist_peer(&self, peer: PeerId) -> Result<()> {
        let version = self
            .request(|reply| Command::Blacklist {
                peer,
                blacklisted: false,
                reply,
            })
            .await?;
        self.durable(version).await
    }

    /// Stops the reconnection of a Reconnecting peer: it goes Disconnected.
    pub async fn cancel_reconnection(&self, peer: PeerId) -> Result<()> {
        self.check_running()?;
        self.request(|reply| Command::CancelReconnection { peer, reply })
            .await
    }

    /// Dials a peer of the address book and returns once connected (state Connected), or with
    /// the dial error. The remote node sees the connection a moment later: on that side, act on
    /// its own `Connected` event (or the peer's first handshake message), not on this return. Returns at once if the peer is already connected. If the dial fails,
    /// the node goes on reconnecting by itself (state Reconnecting) while this returns the
    /// error.
    pub async fn connect(&self, peer: PeerId) -> Result<()> {
        self.check_running()?;
        let timeout = self.shared().config.dial_timeout;
        match tokio::time::timeout(
            timeout,
            self.request(|reply| Command::Connect { peer, reply }),
        )
        .instrument(tracing::info_span!("glueberry.connect", %peer))
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Error::Dial {
                peer,
                reason: format!("timed out after {timeout:?}"),
            }),
        }
    }

    /// Closes every connection to `peer`. Subscribers see `Disconnected` with reason
    /// `LocalRequest` once the connections are closed.
    pub async fn disconnect(&self, peer: PeerId) -> Result<()> {
        self.check_running()?;
        self.request(|reply| Command::Disconnect { peer, reply })
            .await
    }

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

    /// The queue of received messages of every stream (the handshake stream included) not
    /// received apart with [`messages_for`](Self::messages_for). Clone it freely: each
    /// message goes to exactly one receiver. Peers are served in turn, one message each, so
    /// a peer's backlog delays another's message by one message per busy peer; stream
    /// classes by [`Priority`](crate::Priority).
    pub fn messages(&self) -> Messages {
        self.inner.messages.clone()
    }

    /// A queue of its own for the messages of stream `name` (for instance `"handshake"`, or
    /// the consensus stream), so that they never wait behind other streams' messages in
    /// [`messages`](Self::messages). Messages of `name` already waiting there move to it, in
    /// order. Later calls for the same name share the queue while one of its clones is
    /// alive; when the last one is dropped, the stream goes back to `messages()` with what
    /// waits in its queue. Nothing is lost either way.
    pub fn messages_for(&self, name: &str) -> Messages {
        self.shared().inbox.messages_for(name)
    }

    /// Memory held for received messages now and at its peak, in bytes, against the receive
    /// budgets (docs/configuration.md, "Receive budgets").
    pub fn inbox_stats(&self) -> crate::InboxStats {
        self.shared().inbox.stats()
    }

    /// Subscribes to every event.
    pub fn subscribe_events(&self) -> Subscription {
        self.subscribe_filtered(Filter::all())
    }

    /// Subscribes to the events that pass `filter` (by peer, by state, or both).
    ///
    /// ```no_run
    /// # async fn f(node: glueberry::Node, validator: glueberry::PeerId) {
    /// use glueberry::{Event, Filter, RecvError, State};
    ///
    /// let mut lost = node.subscribe_filtered(
    ///     Filter::all().peers([validator]).states([State::Disconnected, State::Reconnecting]),
    /// );
    /// loop {
    ///     match lost.recv().await {
    ///         Ok(Event::Connection(e)) => println!("{} is {} ({:?})", e.peer, e.state, e.reason),
    ///         Ok(_) => {}
    ///         // This subscription fell behind: n events are gone, the next ones follow.
    ///         Err(RecvError::Lagged(n)) => println!("missed {n} events"),
    ///         Err(RecvError::Closed) => break,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe_filtered(&self, filter: Filter) -> Subscription {
        self.shared().events.subscribe(filter).1
    }

    /// Subscribes to the events that pass `filter`, and returns with it the current state of
    /// every peer that passes it (peers not listed are Disconnected). The snapshot and the
    /// subscription fit: no change is missed or seen twice between them. Both follow the event
    /// stream, which can trail [`connection_state`](Self::connection_state) by the few events
    /// still on their way to the forwarder.
    pub fn subscribe_with_snapshot(&self, filter: Filter) -> (Vec<(PeerId, State)>, Subscription) {
        self.shared().events.subscribe(filter)
    }

    /// First phase of the handshake: checks that `peer_public_key` (Ed25519, 32 bytes) belongs
    /// to `peer`, derives the stream key, and accepts the peer's inbound streams of `names`
    /// (other peers' streams of those names are still refused). From here on this node can
    /// receive on those streams, and send once the peer has prepared them too (the handshake's
    /// Complete message says so). Calling it again adds names.
    ///
    /// The key may be borrowed (`&msg.data[1..]`) or owned (`other.public_key()`).
    pub async fn prepare_streams<S: AsRef<str>>(
        &self,
        peer: PeerId,
        peer_public_key: impl AsRef<[u8]>,
        names: &[S],
    ) -> Result<()> {
        let span = tracing::info_span!("glueberry.handshake", %peer, phase = "prepare");
        self.prepare_inner(peer, peer_public_key.as_ref(), names)
            .instrument(span)
            .await
    }

    async fn prepare_inner<S: AsRef<str>>(
        &self,
        peer: PeerId,
        peer_public_key: &[u8],
        names: &[S],
    ) -> Result<()> {
        self.check_running()?;
        if names.is_empty() {
            return Err(Error::NoStreams);
        }
        let max = self.shared().config.max_stream_name_length;
        let mut owned = Vec::with_capacity(names.len());
        for n in names {
            let n = n.as_ref();
            wire::protocol::validate_encrypted_name(n, max).map_err(|reason| {
                Error::InvalidStreamName {
                    name: n.to_owned(),
                    reason,
                }
            })?;
            owned.push(n.to_owned());
        }
        let key = ed25519::PublicKey::try_from_bytes(peer_public_key).map_err(|_| {
            Error::InvalidPublicKey {
                peer,
                reason: crate::crypto::x25519_public_from_ed25519(peer_public_key)
                    .err()
                    .unwrap_or(crate::crypto::KeyError::NotACurvePoint),
            }
        })?;
        let actual = PeerId::from_public_key(&PublicKey::from(key));
        if actual != peer {
            return Err(Error::PublicKeyMismatch { peer, actual });
        }
        let stream_key = self
            .shared()
            .local_key
            .stream_key(peer_public_key)
            .map_err(|reason| Error::InvalidPublicKey { peer, reason })?;
        metrics::counter!(crate::telemetry::KEY_DERIVATIONS, "cached" => "false").increment(1);
        tracing::debug!(streams = ?owned, "stream key derived, preparing streams");
        let cipher = Arc::new(Cipher::new(&stream_key));
        let public_key: [u8; 32] = peer_public_key.try_into().expect("checked above: 32 bytes");
        self.request(|reply| Command::Prepare {
            peer,
            public_key,
            cipher,
            names: owned,
            reply,
        })
        .await
    }

    /// Second phase of the handshake: the peer is Established. Call it once the peer has said
    /// it prepared its streams. Closes the handshake stream (after what is queued on it).
    pub async fn finalize_handshake(&self, peer: PeerId) -> Result<()> {
        self.check_running()?;
        self.request(|reply| Command::Finalize { peer, reply })
            .instrument(tracing::info_span!("glueberry.handshake", %peer, phase = "finalize"))
            .await
    }

    /// [`prepare_streams`](Self::prepare_streams) then [`finalize_handshake`](Self::finalize_handshake).
    pub async fn complete_handshake<S: AsRef<str>>(
        &self,
        peer: PeerId,
        peer_public_key: impl AsRef<[u8]>,
        names: &[S],
    ) -> Result<()> {
        self.prepare_streams(peer, peer_public_key, names).await?;
        self.finalize_handshake(peer).await
    }

    /// Sends `data` to `peer` on stream `stream` (`"handshake"` for the unencrypted handshake
    /// stream). Returns once the message is queued on the stream's writer; waits while the
    /// queue is full (backpressure). Opens the stream if it is the first message on it.
    ///
    /// ```no_run
    /// # async fn f(node: glueberry::Node, peer: glueberry::PeerId) -> glueberry::Result<()> {
    /// use std::time::Duration;
    ///
    /// node.send(peer, "consensus", b"prevote".to_vec()).await?;
    /// // Give up after 100 ms if the peer is not reading (the error is retriable).
    /// if let Err(e) = node
    ///     .send_timeout(peer, "mempool", vec![0u8; 256], Duration::from_millis(100))
    ///     .await
    /// {
    ///     assert!(e.is_retriable());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, peer: PeerId, stream: &str, data: impl Into<Bytes>) -> Result<()> {
        let data = data.into();
        let span = tracing::debug_span!("glueberry.send", %peer, stream, len = data.len());
        // Most sends find the stream open and room in its queue: they queue without waiting.
        let data = match span.in_scope(|| self.queue_now(peer, stream, data)) {
            Ok(()) => return Ok(()),
            Err(data) => data,
        };
        self.send_inner(peer, stream, data, None)
            .instrument(span)
            .await
    }

    /// Queues `data` if that needs no waiting and no stream opening, and gives it back
    /// otherwise (including every error case: [`send_inner`](Self::send_inner) then tells
    /// which error it is). What `send` does for most messages: one short lock, no await.
    fn queue_now(&self, peer: PeerId, name: &str, data: Bytes) -> std::result::Result<(), Bytes> {
        let shared = self.shared();
        if data.len() > shared.config.max_message_size_for(name) {
            return Err(data);
        }
        let Some(slot) = shared.sessions.ready_slot(&peer, name) else {
            return Err(data);
        };
        let Some(writer) = slot.cell.get() else {
            return Err(data);
        };
        if !writer.try_place(&slot.stats) {
            return Err(data);
        }
        let len = data.len();
        match writer.tx.try_send(data) {
            Ok(()) => {
                slot.stats.sent(len);
                Ok(())
            }
            Err(e) => {
                writer.unplace(&slot.stats);
                Err(match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                })
            }
        }
    }

    /// [`send`](Self::send), giving up with [`Error::Timeout`] (retriable) if the message is
    /// not queued within `timeout`.
    pub async fn send_timeout(
        &self,
        peer: PeerId,
        stream: &str,
        data: impl Into<Bytes>,
        timeout: Duration,
    ) -> Result<()> {
        let data = data.into();
        let span = tracing::debug_span!("glueberry.send", %peer, stream, len = data.len());
        self.send_inner(peer, stream, data, Some(Instant::now() + timeout))
            .instrument(span)
            .await
    }

    /// Queues `data` at once, or fails at once: [`Error::QueueFull`] when the stream's queue
    /// is at its high watermark, [`Error::StreamNotOpen`] when the node has no stream to write
    /// on for (peer, name) yet, or no more (it closed): call [`send`](Self::send), which opens
    /// one. A stream the peer opened counts. Both errors are retriable.
    pub fn try_send(&self, peer: PeerId, stream: &str, data: impl Into<Bytes>) -> Result<()> {
        self.check_running()?;
        let data = data.into();
        self.check_message(stream, &data)?;
        let route = self.shared().sessions.route(&peer, stream)?;
        let Some(writer) = route.slot.cell.get() else {
            return Err(Error::StreamNotOpen {
                peer,
                stream: stream.to_owned(),
            });
        };
        let full = || Error::QueueFull {
            peer,
            stream: stream.to_owned(),
        };
        let stats = &route.slot.stats;
        if !writer.try_place(stats) {
            return Err(full());
        }
        let len = data.len();
        match writer.tx.try_send(data) {
            Ok(()) => {
                stats.sent(len);
                Ok(())
            }
            Err(e) => {
                writer.unplace(stats);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(full()),
                    mpsc::error::TrySendError::Closed(_) => {
                        self.shared()
                            .sessions
                            .invalidate(&peer, &route.name, &route.slot);
                        Err(Error::StreamClosed {
                            peer,
                            stream: stream.to_owned(),
                        })
                    }
                }
            }
        }
    }

    fn check_message(&self, name: &str, data: &Bytes) -> Result<()> {
        if name != HANDSHAKE {
            wire::protocol::validate_name(name, self.shared().config.max_stream_name_length)
                .map_err(|reason| Error::InvalidStreamName {
                    name: name.to_owned(),
                    reason,
                })?;
        }
        let max = self.shared().config.max_message_size_for(name);
        if data.len() > max {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max,
            });
        }
        Ok(())
    }

    async fn send_inner(
        &self,
        peer: PeerId,
        name: &str,
        data: Bytes,
        deadline: Option<Instant>,
    ) -> Result<()> {
        self.check_running()?;
        self.check_message(name, &data)?;
        let queue = self.queue(peer, name, data);
        let token = &self.shared().closing;
        let r = tokio::select! {
            biased;
            _ = token.cancelled() => Err(Error::Shutdown),
            r = async {
                match deadline {
                    None => queue.await,
                    Some(d) => tokio::time::timeout_at(d, queue).await.unwrap_or_else(|_| {
                        Err(Error::Timeout { peer, stream: name.to_owned() })
                    }),
                }
            } => r,
        };
        r
    }

    /// Queues `data` on the writer of (peer, name), opening the stream first if needed. If the
    /// writer turns out to be gone (its stream closed), tries once more on a fresh stream: the
    /// message was not queued, so nothing is sent twice.
    async fn queue(&self, peer: PeerId, name: &str, data: Bytes) -> Result<()> {
        let shared = self.shared();
        let mut data = data;
        let len = data.len();
        for attempt in 0..2 {
            let route = shared.sessions.route(&peer, name)?;
            let writer = route
                .slot
                .cell
                .get_or_try_init(|| stream::open(shared, peer, &route))
                .await?
                .clone();
            let stats = &route.slot.stats;
            writer.place(stats).await;
            // With a gate the queue has room for every place the gate gives, so the message
            // goes in without waiting: no await between taking a place and queueing, and a
            // cancelled send never holds a place.
            let queued = match &writer.gate {
                Some(_) => writer.tx.try_send(data).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d) => d,
                }),
                None => writer.tx.send(data).await.map_err(|e| e.0),
            };
            match queued {
                Ok(()) => {
                    stats.sent(len);
                    return Ok(());
                }
                Err(back) => {
                    writer.unplace(stats);
                    shared.sessions.invalidate(&peer, &route.name, &route.slot);
                    data = back;
                    tracing::debug!(%peer, stream = name, attempt, "writer gone, reopening");
                }
            }
        }
        Err(Error::StreamClosed {
            peer,
            stream: name.to_owned(),
        })
    }
}
