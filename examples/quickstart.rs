//! Two nodes in one process: connect, run the byte-tag handshake of the Go examples on the
//! `handshake` stream, exchange encrypted messages on two streams, print what happened.
//!
//! ```text
//! cargo run --release --example quickstart
//! cargo run --release --example quickstart -- --quic
//! cargo run --release --example quickstart -- --listen /ip4/127.0.0.1/tcp/0
//! ```
//!
//! For the same in a few lines, with the handshake run by the node, see `validators`
//! (`Config::with_handshake`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use glueberry::identity::ed25519;
use glueberry::{Config, Event, IncomingMessage, Multiaddr, Node, PeerId, State};

/// Handshake message tags of the Go examples.
const HELLO: u8 = 1;
const PUBKEY: u8 = 2;
const COMPLETE: u8 = 3;
const STREAMS: [&str; 2] = ["chat", "blocks"];

/// Starts two nodes, handshakes, exchanges encrypted messages on two streams, and exits.
#[derive(clap::Parser)]
struct Args {
    /// Use QUIC instead of TCP.
    #[arg(long)]
    quic: bool,
    /// The address both nodes listen on; its port must be 0 (each takes a free one)
    /// [default: /ip4/127.0.0.1/tcp/0, or /ip4/127.0.0.1/udp/0/quic-v1 with --quic]
    #[arg(long)]
    listen: Option<Multiaddr>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = <Args as clap::Parser>::parse();
    let quic = args.quic;
    let started = Instant::now();
    let default = if quic {
        "/ip4/127.0.0.1/udp/0/quic-v1"
    } else {
        "/ip4/127.0.0.1/tcp/0"
    };
    let listen = args.listen.map_or(default.to_owned(), |a| a.to_string());
    let listen = listen.as_str();
    let quic = listen.contains("/quic");
    let dir = std::env::temp_dir().join(format!("glueberry-quickstart-{}", std::process::id()));

    let alice = make_node(&dir, "alice", listen)?;
    let bob = make_node(&dir, "bob", listen)?;
    alice.start().await?;
    let bob_addrs = bob.start().await?;
    println!(
        "alice {}\nbob   {} on {}",
        alice.peer_id(),
        bob.peer_id(),
        bob_addrs[0]
    );

    // Print every event alice sees.
    let mut events = alice.subscribe_events();
    let printer = tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let Event::Connection(e) = event {
                println!("[alice] event: {} -> {}", short(&e.peer), e.state);
            }
        }
    });

    alice
        .add_peer(bob.peer_id(), bob_addrs, HashMap::new())
        .await?;
    alice.connect(bob.peer_id()).await?;

    // Both sides run the same handshake; the dialler speaks first.
    let (a, b) = tokio::join!(
        handshake(&alice, bob.peer_id(), true),
        handshake(&bob, alice.peer_id(), false)
    );
    let (mut early_a, mut early_b) = (a?, b?);
    assert_eq!(alice.connection_state(&bob.peer_id()), State::Established);
    assert_eq!(bob.connection_state(&alice.peer_id()), State::Established);

    // Encrypted messages on two streams, both ways.
    for i in 0..3 {
        alice
            .send(bob.peer_id(), "chat", format!("hello bob #{i}"))
            .await?;
        bob.send(alice.peer_id(), "blocks", format!("block {i} from bob"))
            .await?;
    }
    let mut received = 0;
    for (node, early, name) in [(&bob, &mut early_b, "bob"), (&alice, &mut early_a, "alice")] {
        for _ in 0..3 {
            let msg = match early.pop() {
                Some(m) => m,
                None => {
                    tokio::time::timeout(Duration::from_secs(10), node.messages().recv()).await??
                }
            };
            println!(
                "[{name}] got on {:>6}: {}",
                msg.stream,
                String::from_utf8_lossy(&msg.data)
            );
            received += 1;
        }
    }

    alice.shutdown().await;
    bob.shutdown().await;
    printer.await?;
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "summary: {} handshake, 2 streams, {received} encrypted messages, {:.0} ms",
        if quic { "QUIC" } else { "TCP" },
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

fn make_node(dir: &std::path::Path, name: &str, listen: &str) -> Result<Node, glueberry::Error> {
    let config = Config::new(
        ed25519::Keypair::generate(),
        dir.join(format!("{name}.json")),
        vec![listen.parse().expect("valid multiaddr")],
    );
    Node::new(config)
}

/// The byte-tag handshake: 1 Hello, 2 PubKey + 32-byte key, 3 Complete. Returns encrypted
/// messages that arrived before it finished.
async fn handshake(
    node: &Node,
    peer: PeerId,
    dialer: bool,
) -> Result<Vec<IncomingMessage>, glueberry::Error> {
    let messages = node.messages();
    let mut early = Vec::new();
    let mut sent_hello = false;
    if dialer {
        node.send(peer, "handshake", vec![HELLO]).await?;
        sent_hello = true;
    }
    loop {
        let Ok(msg) = messages.recv().await else {
            return Err(glueberry::Error::Shutdown);
        };
        if &*msg.stream != "handshake" {
            early.push(msg);
            continue;
        }
        match msg.data.first() {
            Some(&HELLO) => {
                if !sent_hello {
                    node.send(peer, "handshake", vec![HELLO]).await?;
                    sent_hello = true;
                }
                let mut pubkey = vec![PUBKEY];
                pubkey.extend_from_slice(&node.public_key());
                node.send(peer, "handshake", pubkey).await?;
            }
            Some(&PUBKEY) => {
                node.prepare_streams(peer, &msg.data[1..], &STREAMS).await?;
                node.send(peer, "handshake", vec![COMPLETE]).await?;
            }
            Some(&COMPLETE) => {
                node.finalize_handshake(peer).await?;
                early.reverse();
                return Ok(early);
            }
            _ => {}
        }
    }
}

fn short(peer: &PeerId) -> String {
    let s = peer.to_string();
    format!("{}…", &s[..12.min(s.len())])
}
