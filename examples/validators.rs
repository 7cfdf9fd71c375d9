//! Validators of one chain: the built-in handshake checks the chain id, each validator keeps the
//! others as persistent peers, and broadcasts a 200-byte vote every 100 ms. Run
//! `cargo run --example validators -- --demo`, or one process per validator (`--index 0` to `3`).

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use futures::future::try_join_all;
use glueberry::handshake;
use glueberry::identity::{Keypair, ed25519};
use glueberry::multiaddr::Protocol;
use glueberry::{Config, Event, Filter, Multiaddr, Node, PeerId, Recipients, State};
use tokio::sync::watch;

/// Validators that handshake on a chain id, stay connected, and vote.
#[derive(Parser)]
struct Args {
    /// This validator's index: its key and port derive from it.
    #[arg(long, default_value_t = 0)]
    index: u8,
    /// The chain id said in the handshake; peers saying another are rejected.
    #[arg(long, default_value = "demo-chain-1")]
    chain_id: String,
    /// Validator i listens on 127.0.0.1, TCP port `port + i` (--demo picks free ports).
    #[arg(long, default_value_t = 9400)]
    port: u16,
    /// Listen here instead (for instance /ip4/0.0.0.0/tcp/9400).
    #[arg(long)]
    listen: Option<Multiaddr>,
    /// Where the address books go (default: a temporary directory, removed at exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run the 4 validators here, restart one, turn away a node of another chain, and exit.
    #[arg(long)]
    demo: bool,
}

const COUNT: u8 = 4;
const TICK: Duration = Duration::from_millis(100);

fn key(i: u8) -> ed25519::Keypair {
    ed25519::Keypair::from(ed25519::SecretKey::try_from_bytes([i + 1; 32]).unwrap())
}
fn id(i: u8) -> PeerId {
    Keypair::from(key(i)).public().to_peer_id()
}
fn addr(ports: &[u16], i: u8) -> Multiaddr {
    Multiaddr::from(Ipv4Addr::LOCALHOST).with(Protocol::Tcp(ports[i as usize]))
}
fn port(a: &Args, i: u8) -> std::io::Result<u16> {
    match a.demo {
        false => Ok(a.port + u16::from(i)),
        true => Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()),
    }
}
fn chain(id: &str) -> handshake::Config {
    handshake::Config::new(id.as_bytes().to_vec(), ["votes"]).require_same_hello()
}

type Votes = watch::Receiver<Vec<u64>>;

/// Starts validator `i`: the others are its persistent peers; it votes every 100 ms and
/// counts the votes it receives, per voter.
async fn validator(a: &Args, i: u8, ports: &[u16], dir: &Path) -> glueberry::Result<(Node, Votes)> {
    let listen = a.listen.clone().filter(|_| !a.demo);
    let listen = vec![listen.unwrap_or(addr(ports, i))];
    let peers = (0..COUNT).filter(|&j| j != i);
    let node = Node::new(
        Config::new(key(i), dir.join(format!("{i}.json")), listen)
            .with_handshake(chain(&a.chain_id))
            .with_persistent_peers(peers.map(|j| (id(j), vec![addr(ports, j)])))
            .with_persistent_max_delay(Duration::from_secs(2)),
    )?;
    node.start().await?;
    let (tx, rx) = watch::channel(vec![0u64; COUNT as usize]);
    let (n, messages) = (node.clone(), node.messages_for("votes"));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        for height in 0u64.. {
            tokio::select! {
                _ = tick.tick() => {
                    let vote = [&[i][..], &height.to_be_bytes(), &[0; 191]].concat();
                    let _ = n.broadcast(Recipients::Established, "votes", vote, TICK).await;
                }
                Ok(m) = messages.recv() => tx.send_modify(|v| v[m.data[0] as usize] += 1),
            }
        }
    });
    Ok((node, rx))
}

/// Waits until every validator has new votes from every other one.
async fn votes_flow(seen: &mut [Votes]) {
    let base: Vec<Vec<u64>> = seen.iter().map(|s| s.borrow().clone()).collect();
    for (i, rx) in seen.iter_mut().enumerate() {
        let more = |v: &Vec<u64>| (0..v.len()).all(|j| j == i || v[j] > base[i][j]);
        rx.wait_for(more).await.expect("validator running");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let temp = tempfile::tempdir()?; // removed at exit
    let dir = a.data_dir.clone().unwrap_or(temp.path().to_owned());
    let ports = (0..COUNT).map(|i| port(&a, i));
    let ports = ports.collect::<std::io::Result<Vec<_>>>()?;
    if a.demo {
        let demo = tokio::time::timeout(Duration::from_secs(45), demo(&a, &ports, &dir));
        demo.await.map_err(|_| "demo timed out")??;
    } else {
        let (node, votes) = validator(&a, a.index, &ports, &dir).await?;
        let me = node.peer_id();
        println!("validator {} is {me}; Ctrl-C stops it", a.index);
        tokio::signal::ctrl_c().await?;
        println!("votes received, by validator: {:?}", *votes.borrow());
        node.shutdown().await;
    }
    Ok(())
}

async fn demo(a: &Args, ports: &[u16], dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let started = (0..COUNT).map(|i| validator(a, i, ports, dir));
    let (mut nodes, mut seen): (Vec<_>, Vec<_>) = try_join_all(started).await?.into_iter().unzip();
    votes_flow(&mut seen).await;
    println!("{} validators connected, every one has every vote", COUNT);
    let last = COUNT - 1;
    nodes[last as usize].shutdown().await;
    (nodes[last as usize], seen[last as usize]) = validator(a, last, ports, dir).await?;
    votes_flow(&mut seen).await;
    println!("validator {last} stopped and restarted: reconnected, votes flow again");
    // A node of another chain dials validator 0. Both check the chain id: the first to see the
    // other's rejects it, which closes the connection.
    let mut cooldowns = nodes[0].subscribe_filtered(Filter::all().states([State::Cooldown]));
    let config = Config::new(key(200), dir.join("intruder.json"), vec![addr(&[0], 0)]);
    let intruder = Node::new(config.with_handshake(chain("other-chain")))?;
    let mut its_cooldowns = intruder.subscribe_filtered(Filter::all().states([State::Cooldown]));
    intruder.start().await?;
    let validator_0 = addr(ports, 0).with(Protocol::P2p(id(0)));
    let _ = intruder.dial(validator_0).await;
    let (who, event) = tokio::select! {
        Ok(e) = cooldowns.recv() => ("validator 0 rejected the intruder", e),
        Ok(e) = its_cooldowns.recv() => ("the intruder rejected validator 0", e),
        else => return Err("no rejection seen".into()),
    };
    if let Event::Connection(e) = event {
        let reason = e.reason.map(|r| r.to_string()).unwrap_or_default();
        println!("{who}: {reason}");
    }
    for n in nodes.iter().chain([&intruder]) {
        n.shutdown().await;
    }
    println!("demo: {} validators, 1 restarted, 1 rejected", COUNT);
    Ok(())
}
