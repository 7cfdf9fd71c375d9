//! A Glueberry v1 peer that handles streams as Go Glueberry does (upstream-glueberry.md §4.4):
//! one stream per name, whichever comes first (its own, opened by its first send, or an inbound
//! one); a second inbound stream of a name while one is stored and open is reset at once; it
//! writes and reads only the stored stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::io::WriteHalf;
use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use glueberry::identity::ed25519;
use glueberry::{Multiaddr, PeerId};
use libp2p::{Stream, StreamProtocol};
use tokio::sync::Notify;
use tokio::sync::{Mutex, mpsc};
use tokio_util::codec::FramedRead;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;

use crate::{RawPeer, frame, seal};

/// How the peer treats a stream that arrives for a name.
#[derive(Debug, Clone, Copy)]
pub enum Arrival {
    /// Go's rule, after `delay` (the time Go takes to get to its handler).
    GoRule {
        /// Wait before handling an inbound stream.
        delay: Duration,
    },
    /// Reset every inbound stream of the name at once (as if its own were stored); a test then
    /// sends after [`GoPeer::reset_seen`], so that the reset reaches the node before the peer's
    /// own stream does.
    ResetFirst,
}

struct Stored {
    id: u64,
    write: WriteHalf<Stream>,
}

struct Inner {
    raw_control: libp2p_stream::Control,
    node: PeerId,
    cipher: glueberry::unstable::crypto::Cipher,
    streams: Mutex<HashMap<String, Stored>>,
    next_id: std::sync::atomic::AtomicU64,
    received: mpsc::UnboundedSender<(String, Vec<u8>)>,
    resets: Notify,
    reset_count: std::sync::atomic::AtomicU64,
}

/// The peer; its swarm runs until it is dropped.
pub struct GoPeer {
    raw: RawPeer,
    inner: Arc<Inner>,
    /// Messages received, by stream name, in order.
    pub received: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn protocol(name: &str) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("/glueberry/stream/{name}/1.0.0")).unwrap()
}

impl GoPeer {
    /// Dials the node at `addr` whose identity is `node` (`node_key`: its Ed25519 public key),
    /// and handles streams of `names` as `arrival` says.
    pub async fn dial(
        addr: Multiaddr,
        node: PeerId,
        node_key: &[u8; 32],
        names: &[&str],
        arrival: Arrival,
    ) -> Self {
        let mut raw = RawPeer::dial_as(ed25519::Keypair::generate(), addr);
        raw.outcome().await.expect("connected");
        let (tx, received) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            raw_control: raw.control.clone(),
            node,
            cipher: raw.cipher(node_key),
            streams: Mutex::new(HashMap::new()),
            next_id: Default::default(),
            received: tx,
            resets: Notify::new(),
            reset_count: Default::default(),
        });
        let mut tasks = Vec::new();
        for name in names {
            let mut incoming = raw.control.clone().accept(protocol(name)).unwrap();
            let (inner, name) = (inner.clone(), name.to_string());
            tasks.push(tokio::spawn(async move {
                while let Some((_, stream)) = incoming.next().await {
                    let (inner, name) = (inner.clone(), name.clone());
                    tokio::spawn(async move { inner.arrived(&name, stream, arrival).await });
                }
            }));
        }
        Self {
            raw,
            inner,
            received,
            tasks,
        }
    }

    /// Its `PeerId`.
    pub fn peer_id(&self) -> PeerId {
        self.raw.peer_id
    }

    /// Its Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.raw.public_key()
    }

    /// How many inbound streams it reset.
    pub fn resets(&self) -> u64 {
        self.inner
            .reset_count
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until it reset an inbound stream ([`Arrival::ResetFirst`]).
    pub async fn reset_seen(&self) {
        self.inner.resets.notified().await;
    }

    /// Sends `data` on `name`, as Go's `Send` does: on the stored stream, or on a new one.
    pub async fn send(&self, name: &str, data: &[u8]) {
        self.inner.send(name, data).await;
    }
}

impl Drop for GoPeer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Inner {
    async fn arrived(self: Arc<Self>, name: &str, stream: Stream, arrival: Arrival) {
        match arrival {
            Arrival::GoRule { delay } => {
                tokio::time::sleep(delay).await;
                let mut streams = self.streams.lock().await;
                if streams.contains_key(name) {
                    // A non-closed stream of this name is stored: reject and reset.
                    drop(stream);
                    self.reset_count
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                self.store(&mut streams, name, stream);
            }
            Arrival::ResetFirst => {
                drop(stream);
                self.reset_count
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.resets.notify_one();
            }
        }
    }

    /// Stores `stream` for `name` and reads it.
    fn store(self: &Arc<Self>, streams: &mut HashMap<String, Stored>, name: &str, stream: Stream) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (read, write) = stream.split();
        streams.insert(name.to_owned(), Stored { id, write });
        let (inner, name) = (self.clone(), name.to_owned());
        tokio::spawn(async move {
            let mut frames = FramedRead::new(
                read.compat(),
                glueberry::unstable::wire::Decoder::new(1 << 21),
            );
            while let Some(Ok(mut body)) = frames.next().await {
                let range = inner.cipher.open_in_place(&mut body).expect("decrypts");
                let _ = inner.received.send((name.clone(), body[range].to_vec()));
            }
            // Closed: the next send opens a new stream.
            let mut streams = inner.streams.lock().await;
            if streams.get(&name).is_some_and(|s| s.id == id) {
                streams.remove(&name);
            }
        });
    }

    async fn send(self: &Arc<Self>, name: &str, data: &[u8]) {
        let mut streams = self.streams.lock().await;
        if !streams.contains_key(name) {
            let stream = self
                .raw_control
                .clone()
                .open_stream(self.node, protocol(name))
                .await
                .expect("open stream");
            self.store(&mut streams, name, stream);
        }
        let stored = streams.get_mut(name).unwrap();
        let bytes = frame(&seal(&self.cipher, data));
        if stored.write.write_all(&bytes).await.is_err() || stored.write.flush().await.is_err() {
            panic!("the peer's own stream failed");
        }
    }
}
