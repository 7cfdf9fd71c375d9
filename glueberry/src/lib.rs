#![deny(missing_docs)]
//! # glueberry
//!
//! Secure peer-to-peer messaging on rust-libp2p, wire-compatible with Go Glueberry
//! (protocol v1).
//!
//! A [`Node`] wraps a libp2p swarm (TCP + Noise + yamux, and QUIC) owned by one driver task.
//! Peers run an application-controlled two-phase handshake over the unencrypted `handshake`
//! stream, then exchange messages on named streams encrypted with ChaCha20-Poly1305 under a
//! key derived from both Ed25519 identities.
//!
//! ```no_run
//! use glueberry::{Config, Node};
//! use libp2p::identity::ed25519;
//!
//! # async fn run() -> Result<(), glueberry::Error> {
//! let config = Config::new(
//!     ed25519::Keypair::generate(),
//!     "peers.json",
//!     vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
//! );
//! let node = Node::new(config)?;
//! node.start().await?;
//! let messages = node.messages();
//! while let Ok(msg) = messages.recv().await {
//!     println!("{} on {}: {} bytes", msg.peer, msg.stream, msg.data.len());
//! }
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! See `ARCHITECTURE.md` for the tasks and channels, and `docs/protocol.md` for the wire format.

mod admission;
mod behaviour;
pub mod book;
pub mod config;
mod crypto;
mod driver;
pub mod error;
pub mod event;
mod faults;
mod flow;
pub mod handshake;
pub mod health;
mod inbox;
#[cfg(feature = "libp2p-metrics")]
pub mod libp2p_metrics;
mod liveness;
pub mod message;
mod node;
mod peer;
mod persist;
pub mod quota;
pub mod scoring;
mod ser;
mod shared;
pub mod stats;
mod stream;
pub mod telemetry;
mod throttle;
mod transport;
pub mod unstable;
pub mod wire;

pub use config::Config;
pub use error::{Error, Result};
pub use event::{
    AdmissionCause, AdmissionEvent, ConnectionEvent, Event, Filter, RecvError, StreamFault,
    StreamReset, Subscription,
};
pub use health::{DebugState, Health};
pub use message::{IncomingMessage, Messages, Priority};
pub use node::{Node, Recipients};
pub use peer::{DisconnectReason, State};
pub use scoring::Severity;
pub use stats::{AdmissionStats, InboxStats, PeerStats, StreamStats};

/// Re-exported libp2p types that appear in the API (`multiaddr::Protocol` to take a
/// `/p2p/<id>` apart).
pub use libp2p::{Multiaddr, PeerId, identity, multiaddr};

/// The byte buffer of `send`'s payloads and of [`IncomingMessage::data`] (the `bytes` crate's),
/// re-exported so that applications need not depend on `bytes` themselves.
pub use bytes::Bytes;
