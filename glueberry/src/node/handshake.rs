//! The two phases of the handshake: preparing streams, finalizing.

use super::*;

impl Node {
    /// First phase of the handshake: checks that `peer_public_key` (Ed25519, 32 bytes) belongs
    /// to `peer`, derives the stream key, and accepts the peer's inbound streams of `names`
    /// (other peers' streams of those names are still refused). From here on this node can
    /// receive on those streams, and send once the peer has prepared them too (the handshake's
    /// Complete message says so). Calling it again adds names.
    ///
    /// The key may be borrowed (`&msg.data[1..]`) or owned (`other.public_key()`).
    ///
    /// # Errors
    ///
    /// - [`Error::NoStreams`], [`Error::InvalidStreamName`]: bugs of the caller;
    /// - [`Error::InvalidPublicKey`] (not 32 bytes, not a curve point, low order) and
    ///   [`Error::PublicKeyMismatch`] (not the key of `peer`'s `PeerId`): the peer sent a bad key;
    /// - [`Error::NotConnected`]: the peer has no connection; [`Error::InvalidState`]: it is in
    ///   Cooldown;
    /// - [`Error::NotStarted`], [`Error::Shutdown`].
    ///
    /// docs/handshake.md has the table of what to do for each.
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
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] if the peer has no connection; [`Error::InvalidState`] in any
    /// state but Connected (already Established: a duplicate Complete; or Cooldown);
    /// [`Error::NotStarted`], [`Error::Shutdown`].
    pub async fn finalize_handshake(&self, peer: PeerId) -> Result<()> {
        self.check_running()?;
        self.request(|reply| Command::Finalize { peer, reply })
            .instrument(tracing::info_span!("glueberry.handshake", %peer, phase = "finalize"))
            .await
    }

    /// [`prepare_streams`](Self::prepare_streams) then [`finalize_handshake`](Self::finalize_handshake).
    ///
    /// # Errors
    ///
    /// Those of [`prepare_streams`](Self::prepare_streams), then those of
    /// [`finalize_handshake`](Self::finalize_handshake).
    pub async fn complete_handshake<S: AsRef<str>>(
        &self,
        peer: PeerId,
        peer_public_key: impl AsRef<[u8]>,
        names: &[S],
    ) -> Result<()> {
        self.prepare_streams(peer, peer_public_key, names).await?;
        self.finalize_handshake(peer).await
    }
}
