//! The libp2p side: the composed `NetworkBehaviour` and the swarm built from a `Config`.

pub(crate) mod ip_limit;
pub(crate) mod streams;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, allow_block_list, connection_limits, identify, noise, ping, tcp, yamux};

use crate::config::Config;
use crate::error::Error;

/// The identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/glueberry/1.0.0";

/// Everything the swarm runs: the blacklist and connection limits (first, so they refuse before
/// anything else sees a connection), streams (ours), identify and ping (interop with go-libp2p,
/// round-trip times, and dead-connection detection).
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) ip_limit: ip_limit::Behaviour,
    pub(crate) stream: streams::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
}

/// Builds the swarm: TCP + Noise + yamux, QUIC v1, DNS. It does not listen yet.
pub(crate) fn build_swarm(config: &Config) -> Result<Swarm<Behaviour>, Error> {
    let as_u32 = |n: Option<usize>| n.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(as_u32(Some(config.conn_high_watermark)))
        .with_max_established_incoming(as_u32(config.max_inbound_connections))
        .with_max_established_per_peer(as_u32(config.max_connections_per_peer))
        .with_max_pending_incoming(as_u32(config.max_pending_inbound));
    let keypair = libp2p::identity::Keypair::from(config.keypair.clone());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_quic()
        .with_dns()
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_behaviour(|key| Behaviour {
            blocked: Default::default(),
            limits: connection_limits::Behaviour::new(limits),
            ip_limit: ip_limit::Behaviour::new(config.max_inbound_per_ip),
            stream: streams::Behaviour::new(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                    .with_agent_version(format!("glueberry-rs/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
        })
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(swarm)
}
