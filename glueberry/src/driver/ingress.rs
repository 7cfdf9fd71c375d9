//! What a node handle asks the driver: one [`Command`] per request, each with a oneshot reply.

use std::collections::BTreeMap;
use std::sync::Arc;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use crate::book;
use crate::crypto::Cipher;
use crate::error::Result;

pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// What a node handle asks the driver.
pub(crate) enum Command {
    Start {
        reply: Reply<Vec<Multiaddr>>,
    },
    AddPeer {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        metadata: Option<BTreeMap<String, String>>,
        reply: Reply<u64>,
    },
    RemovePeer {
        peer: PeerId,
        reply: Reply<u64>,
    },
    GetPeer {
        peer: PeerId,
        reply: Reply<Option<book::Entry>>,
    },
    ListPeers {
        reply: Reply<Vec<book::Entry>>,
    },
    Connect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Disconnect {
        peer: PeerId,
        reply: Reply<()>,
    },
    CancelReconnection {
        peer: PeerId,
        reply: Reply<()>,
    },
    Blacklist {
        peer: PeerId,
        blacklisted: bool,
        reply: Reply<u64>,
    },
    Prepare {
        peer: PeerId,
        public_key: [u8; 32],
        cipher: Arc<Cipher>,
        names: Vec<String>,
        reply: Reply<()>,
    },
    Finalize {
        peer: PeerId,
        reply: Reply<()>,
    },
    Reject {
        peer: PeerId,
        reason: String,
        reply: Reply<()>,
    },
    Dial {
        peer: PeerId,
        addr: Multiaddr,
        reply: Reply<()>,
    },
    Report {
        peer: PeerId,
        severity: crate::scoring::Severity,
        reply: Reply<f64>,
    },
    Score {
        peer: PeerId,
        reply: Reply<f64>,
    },
}
