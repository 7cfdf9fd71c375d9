//! The address book, the blacklist and connections: the commands that go through the driver.

use super::*;

impl Node {
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
    ///
    /// # Errors
    ///
    /// - [`Error::MetadataTooLarge`]: keys and values over `max_metadata_size` bytes;
    /// - [`Error::Blacklisted`]: the peer is blacklisted;
    /// - [`Error::AddressBook`]: the book could not be written (the peer is added in memory all
    ///   the same);
    /// - [`Error::Shutdown`].
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
    ///
    /// # Errors
    ///
    /// [`Error::UnknownPeer`] if the peer is not in the book; [`Error::AddressBook`] if the book
    /// could not be written; [`Error::Shutdown`].
    pub async fn remove_peer(&self, peer: PeerId) -> Result<()> {
        let version = self
            .request(|reply| Command::RemovePeer { peer, reply })
            .await?;
        self.durable(version).await
    }

    /// The address-book entry of `peer`.
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] only.
    pub async fn get_peer(&self, peer: PeerId) -> Result<Option<crate::book::Entry>> {
        self.request(|reply| Command::GetPeer { peer, reply }).await
    }

    /// Every address-book entry, blacklisted ones included.
    ///
    /// # Errors
    ///
    /// [`Error::Shutdown`] only.
    pub async fn list_peers(&self) -> Result<Vec<crate::book::Entry>> {
        self.request(|reply| Command::ListPeers { reply }).await
    }

    /// Blacklists `peer`, whether in the address book or not: its connections close at once,
    /// new ones are refused in both directions, and it is never reconnected.
    ///
    /// # Errors
    ///
    /// [`Error::AddressBook`] if the book could not be written (the blacklist holds in memory
    /// anyway); [`Error::Shutdown`].
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
    ///
    /// # Errors
    ///
    /// [`Error::AddressBook`] if the book could not be written; [`Error::Shutdown`].
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
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] if the peer is not reconnecting (no series under way);
    /// [`Error::NotStarted`], [`Error::Shutdown`].
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
    ///
    /// # Errors
    ///
    /// - [`Error::UnknownPeer`]: not in the address book ([`dial`](Self::dial) needs no book);
    /// - [`Error::Dial`] (retriable): the dial failed, or did not finish within `dial_timeout`;
    /// - [`Error::Blacklisted`]; [`Error::InvalidState`] for a peer in Cooldown;
    /// - [`Error::NotStarted`], [`Error::Shutdown`].
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
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] if the peer has no connection and no dial or reconnection under
    /// way; [`Error::NotStarted`], [`Error::Shutdown`].
    pub async fn disconnect(&self, peer: PeerId) -> Result<()> {
        self.check_running()?;
        self.request(|reply| Command::Disconnect { peer, reply })
            .await
    }

    /// Dials `addr` once, without touching the address book, and returns the peer once it is
    /// Connected. `addr` must end in `/p2p/<peer id>`: the peer it names is the one the
    /// connection's security handshake must prove. The address is tried before any the node
    /// knows for the peer. A peer outside the book is not reconnected when it is lost (unless
    /// `reconnect_learned_peers`); one in the book is, as ever. Returns at once if the peer is
    /// already connected.
    ///
    /// # Errors
    ///
    /// - [`Error::NoPeerId`] if `addr` has no `/p2p/<peer id>` at its end;
    /// - [`Error::Dial`] (retriable) if the dial failed or did not finish within
    ///   `dial_timeout`;
    /// - [`Error::Blacklisted`] for a blacklisted peer, [`Error::InvalidState`] for one in
    ///   Cooldown;
    /// - [`Error::NotStarted`], [`Error::Shutdown`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        self.check_running()?;
        let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
            return Err(Error::NoPeerId(addr));
        };
        let timeout = self.shared().config.dial_timeout;
        match tokio::time::timeout(
            timeout,
            self.request(|reply| Command::Dial { peer, addr, reply }),
        )
        .instrument(tracing::info_span!("glueberry.dial", %peer))
        .await
        {
            Ok(r) => r.map(|()| peer),
            Err(_) => Err(Error::Dial {
                peer,
                reason: format!("timed out after {timeout:?}"),
            }),
        }
    }

    /// Rejects `peer`: closes its connections and keeps it out for `rejection_cooldown`
    /// (5 min by default), in both directions: its connections are closed at once and it is
    /// not dialled. Subscribers see it in `Cooldown` with
    /// [`DisconnectReason::Rejected`](crate::DisconnectReason::Rejected) and `reason`; it is
    /// counted in [`AdmissionStats::rejected`](crate::AdmissionStats::rejected). A peer already
    /// in Cooldown keeps that cooldown. An address-book peer is reconnected when the cooldown
    /// ends. The built-in handshake calls it for a Hello its check rejects. Works for a peer
    /// that is not connected too (it is kept out from now).
    ///
    /// # Errors
    ///
    /// [`Error::NotStarted`], [`Error::Shutdown`].
    pub async fn reject_peer(&self, peer: PeerId, reason: impl Into<String>) -> Result<()> {
        self.check_running()?;
        let reason = reason.into();
        self.request(|reply| Command::Reject {
            peer,
            reason,
            reply,
        })
        .await
    }
}
