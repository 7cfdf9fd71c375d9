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
    let (control, driver, _) = pinger_answered(addr);
    (control, driver)
}

/// [`pinger`], and a receiver that resolves once the node has answered the pinger's own ping:
/// its ping stream is then the node's current one, and a stream the caller opens next replaces
/// it (the node answers the newest ping stream of a connection).
pub fn pinger_answered(
    addr: Multiaddr,
) -> (
    libp2p_stream::Control,
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Receiver<()>,
) {
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
    let (answered, answered_rx) = tokio::sync::oneshot::channel();
    let driver = tokio::spawn(async move {
        let mut answered = Some(answered);
        loop {
            if let libp2p::swarm::SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                result: Ok(_),
                ..
            })) = swarm.select_next_some().await
                && let Some(tx) = answered.take()
            {
                let _ = tx.send(());
            }
        }
    });
    (control, driver, answered_rx)
}
