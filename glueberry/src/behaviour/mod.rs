//! The libp2p side: the composed `NetworkBehaviour` and the swarm built from a `Config`.

pub(crate) mod paced;
pub(crate) mod streams;

use std::sync::Arc;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, allow_block_list, identify, ping};

use crate::config::Config;
use crate::error::Error;
use crate::scoring::mailbox::Mailbox;
use crate::transport;

/// The identify protocol version string.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/glueberry/1.0.0";

/// How this crate's identify agent version begins.
pub(crate) const AGENT_PREFIX: &str = "glueberry-rs/";

/// Everything the swarm runs: the blacklist and admission (first, so they refuse before
/// anything else sees a connection), streams (ours), identify and ping (interop with go-libp2p,
/// round-trip times, and liveness).
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) admission: crate::admission::Behaviour,
    pub(crate) stream: streams::Behaviour,
    pub(crate) identify: identify::Behaviour,
    /// libp2p's ping, inbound pings answered at `max_pings` at most: a ping flood is answered
    /// at that rate, and a flooder loses score.
    pub(crate) ping: paced::Paced,
}

/// The swarm and the handles the driver keeps on its transport.
pub(crate) struct Built {
    pub(crate) swarm: Swarm<Behaviour>,
    /// Each connection's kill switch (liveness severs dead connections).
    pub(crate) switches: transport::sever::Switches,
    /// The pending-inbound places (to count evictions).
    pub(crate) pending: transport::pending::Slots,
    /// The peers' inbound-stream allowances (`max_new_streams`; idle ones forgotten by the
    /// driver).
    pub(crate) meter: std::sync::Arc<transport::meter::Meter>,
}

/// Builds the swarm: TCP + Noise + yamux, QUIC v1, DNS. It does not listen yet. What its
/// connections find against peers (streams over `max_new_streams`, ping floods) goes to `mail`.
pub(crate) fn build_swarm(config: &Config, mail: &Arc<Mailbox>) -> Result<Built, Error> {
    let switches = transport::sever::Switches::default();
    let meter = transport::meter::Meter::new(config.max_new_streams, mail.clone());
    let pending = transport::pending::Slots::new(config.max_pending_inbound);
    let settings = transport::Settings {
        handshake_timeout: config.security_handshake_timeout,
        quic_idle_timeout: config.ping_timeout,
    };
    let keypair = libp2p::identity::Keypair::from(config.keypair.clone());
    let (sw, slots, me) = (switches.clone(), pending.clone(), meter.clone());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(move |key| {
            transport::build(key, &settings, sw, me, slots)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        })
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_dns()
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_behaviour(|key| Behaviour {
            blocked: Default::default(),
            admission: crate::admission::Behaviour::new(config.admission_limits()),
            stream: streams::Behaviour::new(),
            identify: identify::Behaviour::new(
                identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                    .with_agent_version(format!("{AGENT_PREFIX}{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: paced::Paced::new(
                ping::Behaviour::new(
                    ping::Config::new()
                        .with_interval(config.ping_interval)
                        .with_timeout(config.ping_timeout),
                ),
                config.max_pings,
                mail.clone(),
            ),
        })
        .map_err(|e| Error::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
        .build();
    Ok(Built {
        swarm,
        switches,
        pending,
        meter,
    })
}
