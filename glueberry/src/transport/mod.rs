//! The transports: TCP + Noise + yamux (windows no peer can overflow, [`muxer`]) and QUIC v1,
//! with a deadline on every connection's security handshake, eviction of the oldest pending
//! inbound connection when all places are taken ([`pending`]), a kill switch on every
//! connection ([`sever`]), and every inbound stream charged to its peer ([`meter`]).

pub(crate) mod meter;
mod muxer;
pub(crate) mod pending;
mod security;
pub(crate) mod sever;

use std::io;
use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::{PeerId, noise, quic, tcp, tls};

/// What the transports are built from.
pub(crate) struct Settings {
    /// Time a new connection has to finish its security handshake and muxer negotiation.
    pub(crate) handshake_timeout: Duration,
    /// QUIC's idle timeout (its liveness rule).
    pub(crate) quic_idle_timeout: Duration,
}

/// TCP + Noise + yamux or QUIC, each connection's muxer behind a kill switch registered in
/// `switches` and its inbound streams charged to `meter`, inbound upgrades holding a place in
/// `slots`.
pub(crate) fn build(
    key: &Keypair,
    settings: &Settings,
    switches: sever::Switches,
    meter: std::sync::Arc<meter::Meter>,
    slots: pending::Slots,
) -> io::Result<Boxed<(PeerId, StreamMuxerBox)>> {
    // Noise first (every Glueberry node speaks it); TLS 1.3 for go-libp2p nodes set up for it
    // (go-libp2p's default offers TLS first and accepts both).
    let security = security::Select(
        noise::Config::new(key).map_err(io::Error::other)?,
        tls::Config::new(key).map_err(io::Error::other)?,
    );
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .upgrade(Version::V1Lazy)
        .authenticate(security.clone())
        .multiplex(muxer::Upgrade::new())
        .timeout(settings.handshake_timeout)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed();
    // WebSocket (`/tcp/<port>/ws` addresses) over its own TCP transport, secured and muxed the
    // same way (feature `websocket`).
    #[cfg(feature = "websocket")]
    let tcp = libp2p::websocket::Config::new(tcp::tokio::Transport::new(
        tcp::Config::default().nodelay(true),
    ))
    .upgrade(Version::V1Lazy)
    .authenticate(security)
    .multiplex(muxer::Upgrade::new())
    .timeout(settings.handshake_timeout)
    .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
    .or_transport(tcp)
    .map(|either, _| either.into_inner())
    .boxed();
    #[cfg(not(feature = "websocket"))]
    drop(security);
    let quic = quic::tokio::Transport::new(quic_config(key, settings))
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)));
    let both = tcp
        .or_transport(quic)
        .map(move |either, endpoint| {
            let (peer, muxer) = either.into_inner();
            let muxer = sever::Muxer::wrap(&switches, peer, &endpoint, muxer);
            let muxer = meter::Muxer::wrap(&meter, peer, StreamMuxerBox::new(muxer));
            (peer, StreamMuxerBox::new(muxer))
        })
        .boxed();
    Ok(pending::Evicting::new(both, slots).boxed())
}

/// QUIC's settings that liveness depends on: its keep-alive frames are not held back by flow
/// control, so its idle timeout is the liveness rule over QUIC (docs/lifecycle.md).
fn quic_config(key: &Keypair, settings: &Settings) -> quic::Config {
    let mut c = quic::Config::new(key);
    c.handshake_timeout = settings.handshake_timeout;
    c.max_idle_timeout = u32::try_from(settings.quic_idle_timeout.as_millis()).unwrap_or(u32::MAX);
    // Several keep-alives per idle period, so that a few lost packets do not end a live path.
    c.keep_alive_interval = settings.quic_idle_timeout / 4;
    c
}
