//! The commands of the node handle: a flat match, one arm per command, and the listeners.

use std::collections::HashSet;

use libp2p::core::transport::ListenerId;
use libp2p::{Multiaddr, PeerId};
use time::OffsetDateTime;

use super::{Command, Driver, Reply};
use crate::error::Error;
use crate::peer::{Input, State};
use crate::shared::lock;
use crate::wire::HANDSHAKE;

pub(super) struct Starting {
    pub(super) listeners: Vec<ListenerId>,
    pub(super) pending: HashSet<ListenerId>,
    pub(super) reply: Reply<Vec<Multiaddr>>,
}

impl Driver {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Start { reply } => self.start(reply),
            Command::AddPeer {
                peer,
                addrs,
                metadata,
                reply,
            } => {
                let r = if self.book.get(&peer).is_some_and(|e| e.blacklisted) {
                    Err(Error::Blacklisted(peer))
                } else {
                    self.book
                        .add(peer, addrs, metadata, OffsetDateTime::now_utc());
                    self.peer(peer).machine.set_dialable(true);
                    self.swarm.behaviour_mut().admission.trust(peer);
                    let version = self.save_book();
                    // A started node connects to the peers it is given.
                    if self.started {
                        let _ = self.apply(peer, Input::DialRequested);
                    }
                    Ok(version)
                };
                let _ = reply.send(r);
            }
            Command::RemovePeer { peer, reply } => {
                let r = if self.book.remove(&peer) {
                    if self.state(&peer) != State::Established {
                        self.swarm.behaviour_mut().admission.distrust(&peer);
                    }
                    if let Some(p) = self.peers.get_mut(&peer) {
                        p.machine.set_dialable(false);
                        p.machine.set_persistent(false);
                        // A reconnection series has nothing left to dial.
                        if p.machine.state() == State::Reconnecting {
                            let _ = self.apply(peer, Input::ReconnectionCancelled);
                        }
                    }
                    self.gc(peer);
                    Ok(self.save_book())
                } else {
                    Err(Error::UnknownPeer(peer))
                };
                let _ = reply.send(r);
            }
            Command::GetPeer { peer, reply } => {
                let _ = reply.send(Ok(self.book.get(&peer).cloned()));
            }
            Command::ListPeers { reply } => {
                let _ = reply.send(Ok(self.book.entries().cloned().collect()));
            }
            Command::Connect { peer, reply } => {
                if self.book.get(&peer).is_none() {
                    let _ = reply.send(Err(Error::UnknownPeer(peer)));
                    return;
                }
                self.connect(peer, reply);
            }
            Command::Dial { peer, addr, reply } => {
                // Tried first by the next dial of the peer, and forgotten: the book is not
                // touched, and a peer outside it is not reconnected.
                let bare = addr
                    .iter()
                    .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                    .collect();
                self.dial_once.insert(peer, bare);
                self.connect(peer, reply);
            }
            Command::Reject {
                peer,
                reason,
                reply,
            } => {
                self.on_rejected(peer, reason);
                let _ = reply.send(Ok(()));
            }
            Command::Report {
                peer,
                severity,
                reply,
            } => {
                let _ = reply.send(Ok(self.on_verdict(peer, severity)));
            }
            Command::Score { peer, reply } => {
                let now = std::time::Instant::now();
                let _ = reply.send(Ok(self.scores.score(&peer, now)));
            }
            Command::Disconnect { peer, reply } => {
                let r = if self.peers.contains_key(&peer) {
                    self.apply(peer, Input::DisconnectRequested)
                        .map_err(|_| Error::NotConnected(peer))
                } else {
                    Err(Error::NotConnected(peer))
                };
                let _ = reply.send(r);
            }
            Command::CancelReconnection { peer, reply } => {
                let r = if self.peers.contains_key(&peer) {
                    self.apply(peer, Input::ReconnectionCancelled)
                        .map_err(|refused| Error::InvalidState {
                            peer,
                            state: refused.state,
                            operation: "cancel_reconnection",
                        })
                } else {
                    Err(Error::InvalidState {
                        peer,
                        state: State::Disconnected,
                        operation: "cancel_reconnection",
                    })
                };
                let _ = reply.send(r);
            }
            Command::Blacklist {
                peer,
                blacklisted,
                reply,
            } => {
                // A timed ban outlasts taking the peer off the blacklist.
                let banned = self.banned_until(&peer).is_some();
                let blocked = &mut self.swarm.behaviour_mut().blocked;
                if blacklisted {
                    // Closes its connections at once and refuses new ones, both ways.
                    blocked.block_peer(peer);
                } else if !banned {
                    blocked.unblock_peer(peer);
                }
                self.book
                    .set_blacklisted(peer, blacklisted, OffsetDateTime::now_utc());
                if blacklisted || (self.peers.contains_key(&peer) && !banned) {
                    let dialable = self.book.get(&peer).is_some();
                    let machine = &mut self.peer(peer).machine;
                    machine.set_dialable(dialable);
                    if blacklisted {
                        machine.set_persistent(false);
                    }
                    let input = if blacklisted {
                        Input::Blacklisted
                    } else {
                        Input::Unblacklisted
                    };
                    let _ = self.apply(peer, input);
                }
                let _ = reply.send(Ok(self.save_book()));
            }
            Command::Prepare {
                peer,
                public_key,
                cipher,
                names,
                reply,
            } => {
                let allowed = if self.peers.contains_key(&peer) {
                    self.apply(peer, Input::StreamsPrepared)
                        .map_err(|refused| refused.state)
                } else {
                    Err(State::Disconnected)
                };
                let r = match allowed {
                    Ok(()) => {
                        if self.shared.sessions.prepare(&peer, cipher, &names) {
                            // The application accepted the peer: it gets the larger receive
                            // budget, which its data streams need.
                            self.shared
                                .inbox
                                .set_kind(&peer, crate::inbox::Kind::Trusted);
                            if self.book.set_public_key(
                                &peer,
                                public_key,
                                OffsetDateTime::now_utc(),
                            ) {
                                self.book_dirty = true;
                            }
                            self.accept_from(peer, &names);
                            Ok(())
                        } else {
                            Err(Error::NotConnected(peer))
                        }
                    }
                    Err(State::Disconnected | State::Connecting | State::Reconnecting) => {
                        Err(Error::NotConnected(peer))
                    }
                    Err(state) => Err(Error::InvalidState {
                        peer,
                        state,
                        operation: "prepare_streams",
                    }),
                };
                let _ = reply.send(r);
            }
            Command::Finalize { peer, reply } => {
                let r = if self.peers.contains_key(&peer) {
                    match self.apply(peer, Input::HandshakeFinalized) {
                        Ok(()) => {
                            // The handshake stream has done its job: close our side once drained.
                            self.shared.sessions.drop_writer(&peer, HANDSHAKE);
                            Ok(())
                        }
                        Err(refused)
                            if matches!(
                                refused.state,
                                State::Disconnected | State::Connecting | State::Reconnecting
                            ) =>
                        {
                            Err(Error::NotConnected(peer))
                        }
                        Err(refused) => Err(Error::InvalidState {
                            peer,
                            state: refused.state,
                            operation: "finalize_handshake",
                        }),
                    }
                } else {
                    Err(Error::NotConnected(peer))
                };
                let _ = reply.send(r);
            }
        }
    }

    /// Dials `peer` unless it is connected; `reply` gets the outcome.
    fn connect(&mut self, peer: PeerId, reply: Reply<()>) {
        if let Some(until) = self.banned_until(&peer) {
            self.dial_once.remove(&peer);
            let _ = reply.send(Err(Error::Banned { peer, until }));
            return;
        }
        let p = self.peer(peer);
        match p.machine.state() {
            State::Connected | State::Established => {
                self.dial_once.remove(&peer);
                let _ = reply.send(Ok(()));
            }
            state => {
                p.waiting.push(reply);
                if let Err(refused) = self.apply(peer, Input::DialRequested) {
                    self.dial_once.remove(&peer);
                    self.fail_waiting(peer, || {
                        if refused.blacklisted {
                            Error::Blacklisted(peer)
                        } else {
                            Error::InvalidState {
                                peer,
                                state,
                                operation: "connect",
                            }
                        }
                    });
                }
            }
        }
    }

    pub(super) fn start(&mut self, reply: Reply<Vec<Multiaddr>>) {
        self.started = true;
        self.accept(HANDSHAKE);
        self.add_persistent_peers();
        // Connect to every peer of the book that is not blacklisted.
        let peers: Vec<PeerId> = self
            .book
            .entries()
            .filter(|e| !e.blacklisted)
            .map(|e| e.peer)
            .collect();
        for peer in peers {
            let _ = self.apply(peer, Input::DialRequested);
        }
        let mut listeners = Vec::new();
        for addr in self.shared.config.listen_addrs.clone() {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    listeners.push(id);
                    self.listeners.insert(id);
                }
                Err(e) => {
                    self.stop_listening(&listeners);
                    let _ = reply.send(Err(Error::Listen {
                        addr,
                        reason: e.to_string(),
                    }));
                    return;
                }
            }
        }
        let pending = listeners.iter().copied().collect();
        self.starting = Some(Starting {
            listeners,
            pending,
            reply,
        });
    }

    /// Writes the persistent peers into the book (their configured addresses win) and marks
    /// them; `start` then dials them with the book's other peers.
    fn add_persistent_peers(&mut self) {
        let now = OffsetDateTime::now_utc();
        let mut changed = false;
        for (peer, addrs) in self.shared.config.persistent_peers.clone() {
            match self.book.get(&peer) {
                Some(e) if e.blacklisted => {
                    tracing::warn!(%peer, "persistent peer is blacklisted: not connected");
                    continue;
                }
                Some(e) if e.addrs == addrs => {}
                _ => {
                    self.book.add(peer, addrs, None, now);
                    changed = true;
                }
            }
            let machine = &mut self.peer(peer).machine;
            machine.set_dialable(true);
            machine.set_persistent(true);
            self.swarm.behaviour_mut().admission.trust(peer);
        }
        if changed {
            self.save_book();
        }
    }

    pub(super) fn stop_listening(&mut self, listeners: &[ListenerId]) {
        for id in listeners {
            self.swarm.remove_listener(*id);
        }
        lock(&self.shared.listen_addrs).clear();
    }

    pub(super) fn listener_ready(&mut self, id: ListenerId, error: Option<String>) {
        let Some(starting) = self.starting.as_mut() else {
            return;
        };
        if !starting.pending.remove(&id) {
            return;
        }
        if let Some(reason) = error {
            let s = self.starting.take().expect("checked above");
            self.stop_listening(&s.listeners);
            let _ = s.reply.send(Err(Error::Listen {
                addr: Multiaddr::empty(),
                reason,
            }));
            return;
        }
        if starting.pending.is_empty() {
            let s = self.starting.take().expect("checked above");
            let _ = s.reply.send(Ok(lock(&self.shared.listen_addrs).clone()));
        }
    }
}
