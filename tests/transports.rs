//! The transports Go nodes offer: TLS 1.3 beside Noise over TCP (go-libp2p's default host
//! offers TLS first), both ways.

use futures::StreamExt as _;
use glueberry::State;
use glueberry::identity::ed25519;
use glueberry_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_only_peer_connects_and_is_reached() {
    let node = started(config(Transport::Tcp)).await;
    let mut sub = node.subscribe_events();

    // It dials the node.
    let mut peer = RawPeer::dial_with(
        ed25519::Keypair::generate(),
        node.listen_addrs()[0].clone(),
        Security::Tls,
    );
    peer.outcome().await.expect("a TLS-only dialer gets in");
    wait_state(&mut sub, peer.peer_id, State::Connected).await;

    // The node dials it.
    let key = ed25519::Keypair::generate();
    let mut swarm = RawPeer::swarm(&key, Security::Tls);
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = within(async {
        loop {
            if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
                swarm.select_next_some().await
            {
                return address;
            }
        }
    })
    .await;
    let id = *swarm.local_peer_id();
    let driver = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    node.add_peer(id, vec![addr], Default::default())
        .await
        .unwrap();
    within(node.connect(id))
        .await
        .expect("the node reaches a TLS-only listener");
    assert!(matches!(
        node.connection_state(&id),
        State::Connected | State::Established
    ));
    driver.abort();
    node.shutdown().await;
}
