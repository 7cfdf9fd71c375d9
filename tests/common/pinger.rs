//! A libp2p peer that answers the node's pings (so libp2p's ping keeps answering its own) and
//! opens streams of its own: what a ping flooder looks like.

use std::time::Duration;

use futures::StreamExt as _;
use glueberry::Multiaddr;

#[derive(libp2p::swarm::NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct Behaviour {
    ping: libp2p::ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// Dials `addr`; returns the peer's stream control and the task driving its swarm (abort it to
/// drop the peer). Its own pings go once, at the start: a later one would open a new ping
/// stream, which the node's ping handler would take instead of the caller's.
pub fn pinger(addr: Multiaddr) -> (libp2p_stream::Control, tokio::task::JoinHandle<()>) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| Behaviour {
            ping: libp2p::ping::Behaviour::new(
                libp2p::ping::Config::new().with_interval(Duration::from_secs(3600)),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .unwrap()
        .build();
    let control = swarm.behaviour().stream.new_control();
    swarm.dial(addr).unwrap();
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (control, driver)
}
