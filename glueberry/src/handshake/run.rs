//! The built-in handshake's tasks: one router, and one worker per peer in handshake.
//!
//! The router takes the `handshake` stream's messages (a queue of their own) and the peers'
//! state changes (from the driver, in order, none lost) and hands them to the peer's worker. A
//! worker runs the peer's [`Machine`] and carries out its actions with the node's API, so a
//! peer that is slow to take our messages holds up its own handshake only.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::Config;
use super::machine::{Action, Machine};
use crate::error::Error;
use crate::message::Messages;
use crate::node::WeakNode;
use crate::peer::State;
use crate::wire::HANDSHAKE;

/// Steps a worker may have waiting. A peer runs three messages per handshake; one that keeps
/// more than this waiting floods the handshake stream and is rejected.
const WORKER_QUEUE: usize = 32;

/// A peer's state change, from the driver.
pub(crate) type Change = (PeerId, State);

enum Step {
    Connected,
    Message(Bytes),
}

struct Worker {
    tx: mpsc::Sender<Step>,
    flooded: bool,
}

/// The router: ends when the node shuts down (the queue or the changes end, or the token).
pub(crate) async fn route(
    node: WeakNode,
    config: Config,
    mut changes: mpsc::UnboundedReceiver<Change>,
    messages: Messages,
) {
    let Some((token, tracker)) = node.upgrade().map(|n| n.tasks()) else {
        return;
    };
    let config = Arc::new(config);
    let mut workers: HashMap<PeerId, Worker> = HashMap::new();
    loop {
        let (peer, step) = tokio::select! {
            biased;
            _ = token.cancelled() => break,
            c = changes.recv() => match c {
                Some((peer, State::Connected)) => (peer, Step::Connected),
                Some((peer, State::Established)) => {
                    // Done: the worker stays for a new round (a restarted peer's Hello).
                    let _ = peer;
                    continue;
                }
                Some((peer, _)) => {
                    // Gone (Disconnected, Cooldown, Reconnecting): the worker ends after what
                    // it has; a new connection starts a fresh one.
                    workers.remove(&peer);
                    continue;
                }
                None => break,
            },
            m = messages.recv() => match m {
                Ok(m) => (m.peer, Step::Message(m.data)),
                Err(_) => break,
            },
        };
        let worker = workers.entry(peer).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(WORKER_QUEUE);
            tracker.spawn(work(node.clone(), config.clone(), peer, rx));
            Worker { tx, flooded: false }
        });
        if worker.flooded {
            continue;
        }
        match worker.tx.try_send(step) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                worker.flooded = true;
                tracing::info!(%peer, "built-in handshake: the peer floods the handshake stream");
                let node = node.clone();
                tracker.spawn(async move {
                    if let Some(node) = node.upgrade() {
                        let _ = node
                            .reject_peer(peer, "floods the handshake stream".to_owned())
                            .await;
                    }
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                // Its worker gave up (the node is going): nothing more to do for it.
                workers.remove(&peer);
            }
        }
    }
}

/// One peer's worker: runs its machine, one step at a time, in order.
async fn work(node: WeakNode, config: Arc<Config>, peer: PeerId, mut rx: mpsc::Receiver<Step>) {
    let hello = config.hello_message();
    let mut machine = Machine::default();
    while let Some(step) = rx.recv().await {
        let Some(n) = node.upgrade() else { return };
        let public_key = n.public_key();
        let actions = match step {
            Step::Connected => machine.on_connected(&hello),
            Step::Message(m) => machine.on_message(&m, &hello, &public_key, |payload| {
                config.judge(peer, payload)
            }),
        };
        for action in actions {
            match perform(&n, peer, action).await {
                Ok(()) => {}
                Err(Error::Shutdown) => return,
                Err(e @ (Error::NotConnected(_) | Error::InvalidState { .. })) => {
                    // The connection went, or the peer is refused: the next connection
                    // starts a new round.
                    tracing::debug!(%peer, error = %e, "built-in handshake: step failed");
                    break;
                }
                Err(e) => {
                    // The handshake timeout ends this round (streams the check chose that
                    // cannot be prepared, a handshake stream that would not open).
                    tracing::warn!(%peer, error = %e, "built-in handshake: step failed; the round waits for the handshake timeout");
                    break;
                }
            }
        }
    }
}

async fn perform(node: &crate::Node, peer: PeerId, action: Action) -> crate::Result<()> {
    match action {
        Action::Send(m) => node.send(peer, HANDSHAKE, m).await,
        Action::Prepare { key, streams } => match node.prepare_streams(peer, key, &streams).await {
            Err(e @ (Error::InvalidPublicKey { .. } | Error::PublicKeyMismatch { .. })) => {
                node.reject_peer(peer, format!("its PubKey: {e}")).await?;
                Err(e)
            }
            r => r,
        },
        Action::Finalize => match node.finalize_handshake(peer).await {
            // Finalized already (a duplicate after a race).
            Err(Error::InvalidState {
                state: State::Established,
                ..
            }) => Ok(()),
            r => r,
        },
        Action::Reject(reason) => {
            tracing::info!(%peer, %reason, "built-in handshake: peer rejected");
            node.reject_peer(peer, reason).await
        }
    }
}
