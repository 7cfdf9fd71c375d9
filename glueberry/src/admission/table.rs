//! The admission rules as plain state: which connection is let in, which is refused, which is
//! evicted to make room (docs/admission.md). No swarm, no clock; the behaviour feeds it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use crate::event::AdmissionCause as Cause;

/// The limits, from `Config`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Inbound connections from one IP that are not trusted yet (in their security handshake,
    /// or from a stranger).
    pub(crate) per_ip: Option<usize>,
    /// Connections from strangers; the oldest is evicted for a new one.
    pub(crate) strangers: Option<usize>,
    /// Established connections at which strangers are refused.
    pub(crate) total: usize,
    /// Established inbound connections at which strangers are refused.
    pub(crate) inbound: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Inbound, in its security handshake (counted per IP).
    Pending,
    /// Inbound from a peer that is neither in the book nor handshaked (counted per IP).
    Stranger,
    /// Evicted stranger, closing.
    Evicted,
    /// Inbound from a trusted peer, or dialled by us.
    Trusted,
}

#[derive(Debug)]
struct Conn {
    peer: Option<PeerId>,
    ip: Option<IpAddr>,
    inbound: bool,
    stage: Stage,
    /// A stranger that opened the handshake stream (it is doing the handshake).
    active: bool,
}

/// What the table decided for an established connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Let in.
    Yes,
    /// Let in; close this older stranger connection to make room.
    Evicting(PeerId, ConnectionId),
}

/// The admission table.
#[derive(Debug)]
pub(crate) struct Table {
    limits: Limits,
    /// Book peers and peers that finished the application handshake: never refused.
    trusted: HashSet<PeerId>,
    /// Inbound connections not trusted yet, per IP.
    per_ip: HashMap<IpAddr, usize>,
    conns: HashMap<ConnectionId, Conn>,
    /// Stranger connections that have not opened the handshake stream, oldest first (entries
    /// no longer idle strangers are skipped).
    strangers: VecDeque<ConnectionId>,
    /// Strangers that opened the handshake stream, in the order they did.
    active: VecDeque<ConnectionId>,
    n_strangers: usize,
    n_established: usize,
    n_inbound: usize,
}

impl Table {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            trusted: HashSet::new(),
            per_ip: HashMap::new(),
            conns: HashMap::new(),
            strangers: VecDeque::new(),
            active: VecDeque::new(),
            n_strangers: 0,
            n_established: 0,
            n_inbound: 0,
        }
    }

    /// A new inbound connection, before its security handshake.
    pub(crate) fn pending_inbound(
        &mut self,
        id: ConnectionId,
        ip: Option<IpAddr>,
    ) -> Result<(), Cause> {
        if let (Some(max), Some(ip)) = (self.limits.per_ip, ip)
            && self.per_ip.get(&ip).copied().unwrap_or(0) >= max
        {
            return Err(Cause::PerIp);
        }
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
        self.conns.insert(
            id,
            Conn {
                peer: None,
                ip,
                inbound: true,
                stage: Stage::Pending,
                active: false,
            },
        );
        Ok(())
    }

    /// A connection finished its security handshake with `peer`. Outbound connections (our
    /// dials) and connections of trusted peers are always let in.
    pub(crate) fn established(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        inbound: bool,
    ) -> Result<Admit, Cause> {
        let trusted = !inbound || self.trusted.contains(&peer);
        if !trusted {
            let refused = if self.n_established >= self.limits.total {
                Some(Cause::Total)
            } else if self.limits.inbound.is_some_and(|max| self.n_inbound >= max) {
                Some(Cause::Inbound)
            } else {
                None
            };
            if let Some(cause) = refused {
                self.failed(id);
                return Err(cause);
            }
        }
        let counted_ip = match self.conns.remove(&id) {
            Some(c) if c.stage == Stage::Pending => c.ip,
            _ => None,
        };
        let mut conn = Conn {
            peer: Some(peer),
            ip: counted_ip,
            inbound,
            stage: Stage::Trusted,
            active: false,
        };
        let mut admit = Admit::Yes;
        if trusted {
            self.release_ip(&mut conn);
        } else {
            if let Some(max) = self.limits.strangers
                && self.n_strangers >= max
                && let Some((p, old)) = self.evict_oldest_stranger()
            {
                admit = Admit::Evicting(p, old);
            }
            conn.stage = Stage::Stranger;
            self.n_strangers += 1;
            self.strangers.push_back(id);
        }
        self.n_established += 1;
        if inbound {
            self.n_inbound += 1;
        }
        self.conns.insert(id, conn);
        Ok(admit)
    }

    /// The oldest stranger that has not started the handshake, else the oldest that has.
    fn evict_oldest_stranger(&mut self) -> Option<(PeerId, ConnectionId)> {
        let mut victim = None;
        while let Some(id) = self.strangers.pop_front() {
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.stage == Stage::Stranger && !c.active)
            {
                victim = Some(id);
                break;
            }
        }
        if victim.is_none() {
            while let Some(id) = self.active.pop_front() {
                if self
                    .conns
                    .get(&id)
                    .is_some_and(|c| c.stage == Stage::Stranger)
                {
                    victim = Some(id);
                    break;
                }
            }
        }
        let id = victim?;
        let c = self.conns.get_mut(&id)?;
        c.stage = Stage::Evicted;
        self.n_strangers -= 1;
        Some((c.peer?, id))
    }

    /// A stranger opened the handshake stream: it is evicted only after every stranger that
    /// has not (a flood of connections that never speak cannot push it out).
    pub(crate) fn progressed(&mut self, peer: &PeerId) {
        for (id, c) in &mut self.conns {
            if c.peer.as_ref() == Some(peer) && c.stage == Stage::Stranger && !c.active {
                c.active = true;
                self.active.push_back(*id);
            }
        }
    }

    fn release_ip(&mut self, conn: &mut Conn) {
        if let Some(ip) = conn.ip.take()
            && let Some(n) = self.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// A connection failed in its security handshake, or was refused after the table let it
    /// in (by another behaviour): forget it, whatever its stage.
    pub(crate) fn failed(&mut self, id: ConnectionId) {
        self.closed(id);
    }

    /// A connection closed.
    pub(crate) fn closed(&mut self, id: ConnectionId) {
        let Some(mut c) = self.conns.remove(&id) else {
            return;
        };
        if c.stage == Stage::Pending {
            self.release_ip(&mut c);
            return;
        }
        if c.stage == Stage::Stranger {
            self.n_strangers -= 1;
        }
        self.release_ip(&mut c);
        self.n_established -= 1;
        if c.inbound {
            self.n_inbound -= 1;
        }
        if self.strangers.len() + self.active.len() > 2 * self.n_strangers + 16 {
            let conns = &self.conns;
            let live =
                |id: &ConnectionId| conns.get(id).is_some_and(|c| c.stage == Stage::Stranger);
            self.strangers.retain(live);
            self.active.retain(live);
        }
    }

    /// `peer` is in the book or finished the handshake: its connections are no longer
    /// strangers and it is never refused.
    pub(crate) fn trust(&mut self, peer: PeerId) {
        if !self.trusted.insert(peer) {
            return;
        }
        let ids: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == Some(peer) && c.stage == Stage::Stranger)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(mut c) = self.conns.remove(&id) {
                c.stage = Stage::Trusted;
                self.n_strangers -= 1;
                self.release_ip(&mut c);
                self.conns.insert(id, c);
            }
        }
    }

    /// `peer` left the book and has no handshaked connection: its next connection is a
    /// stranger's (the ones it has keep their place).
    pub(crate) fn distrust(&mut self, peer: &PeerId) {
        self.trusted.remove(peer);
    }

    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.per_ip.values().sum(),
            self.n_strangers,
            self.n_established,
            self.n_inbound,
        )
    }
}

#[cfg(test)]
mod tests;
