//! WebSocket (feature `websocket`): nodes listen on and dial `/tcp/<port>/ws` addresses, the
//! connection secured and muxed as over plain TCP. Run with
//! `cargo test -p glueberry-tests --features websocket --test websocket`.

use glueberry::Config;
use glueberry_tests::*;

fn ws() -> Config {
    let c = config(Transport::Tcp);
    Config::new(
        c.keypair().clone(),
        c.address_book_path(),
        vec!["/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_talk_over_websocket() {
    let (a, b, _, _) = established_pair(ws(), ws(), &["data"]).await;
    let addr = b.listen_addrs()[0].to_string();
    assert!(addr.ends_with("/ws"), "{addr}");
    a.send(b.peer_id(), "data", b"over ws".to_vec())
        .await
        .unwrap();
    let m = within(b.messages().recv()).await.unwrap();
    assert_eq!(&*m.data, b"over ws");
    a.shutdown().await;
    b.shutdown().await;
}
