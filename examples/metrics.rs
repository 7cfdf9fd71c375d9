//! A node that serves its metrics over HTTP in the Prometheus text format (glueberry's own,
//! through the `metrics` facade, and libp2p's swarm, identify and ping metrics), its health and
//! its debug state as JSON. A second node in the same process gives it some traffic.
//!
//! ```text
//! cargo run --example metrics                    # serve on 127.0.0.1:9464 until Ctrl-C
//! curl -s 127.0.0.1:9464/metrics | grep glueberry_
//! cargo run --example metrics -- --once --port 0 # serve, scrape itself once, print, exit
//! ```

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use glueberry::identity::ed25519;
use glueberry::libp2p_metrics::{Registry, encode};
use glueberry::{Config, Event, Filter, Node, State, telemetry};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Serves /metrics (Prometheus), /health and /debug (JSON) for a glueberry node.
#[derive(Parser)]
struct Args {
    /// HTTP port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 9464)]
    port: u16,
    /// Scrape the three endpoints once, print a summary and exit (non-interactive).
    #[arg(long)]
    once: bool,
    /// Messages the second node sends to the first.
    #[arg(long, default_value_t = 100)]
    messages: u32,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // glueberry's metrics: install a recorder before the node exists.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::HANDSHAKE_DURATION.into()),
            telemetry::HANDSHAKE_DURATION_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full(telemetry::BACKPRESSURE_WAIT.into()),
            telemetry::BACKPRESSURE_WAIT_BUCKETS,
        )?
        .install_recorder()?;
    // libp2p's metrics: a prometheus-client registry the node records into.
    let mut registry = Registry::default();
    let dir = std::env::temp_dir().join(format!("glueberry-metrics-{}", std::process::id()));
    let node = Node::new(config(&dir.join("node.json")).with_libp2p_metrics(&mut registry))?;
    node.start().await?;
    let peer = Node::new(config(&dir.join("peer.json")))?;
    peer.start().await?;
    let registry = Arc::new(registry);

    let listener = TcpListener::bind(("127.0.0.1", args.port)).await?;
    let http = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, node.clone(), prometheus, registry));
    println!("serving http://{http}/metrics, /health and /debug");

    // Traffic: the peer connects, both finish the handshake (keys known in this process),
    // and the peer sends messages the node reads.
    let mut events = node.subscribe_filtered(Filter::all().peers([peer.peer_id()]));
    peer.add_peer(node.peer_id(), node.listen_addrs(), Default::default())
        .await?;
    peer.connect(node.peer_id()).await?;
    // `connect` returns when the dialler is connected; the node sees it a moment later.
    while !matches!(
        events.recv().await?,
        Event::Connection(e) if e.state == State::Connected
    ) {}
    let (a, b) = tokio::join!(
        node.complete_handshake(peer.peer_id(), peer.public_key(), &["data"]),
        peer.complete_handshake(node.peer_id(), node.public_key(), &["data"]),
    );
    a?;
    b?;
    let messages = node.messages();
    for i in 0..args.messages {
        peer.send(node.peer_id(), "data", format!("message {i}"))
            .await?;
        messages.recv().await?;
    }

    if args.once {
        let metrics = get(http, "/metrics").await?;
        let wanted = [
            "glueberry_messages_received_total",
            "glueberry_handshake_results_total",
            "glueberry_connections_opened_total",
            "libp2p_swarm_connections_established",
            "libp2p_identify",
        ];
        for name in wanted {
            let line = metrics
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or(format!("{name} missing from /metrics"))?;
            println!("{line}");
        }
        let health: serde_json::Value = serde_json::from_str(&get(http, "/health").await?)?;
        println!("health: {health}");
        let debug: serde_json::Value = serde_json::from_str(&get(http, "/debug").await?)?;
        println!(
            "debug: {} peer(s), {} received on data",
            debug["peers"].as_array().map_or(0, |p| p.len()),
            debug["peers"][0]["streams"]["data"]["messages_received"]
        );
    } else {
        println!("Ctrl-C to stop");
        tokio::signal::ctrl_c().await?;
    }
    server.abort();
    peer.shutdown().await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn config(book: &std::path::Path) -> Config {
    Config::new(
        ed25519::Keypair::generate(),
        book,
        vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")],
    )
}

/// A minimal HTTP/1.1 server: GET /metrics, /health, /debug; one request per connection.
async fn serve(
    listener: TcpListener,
    node: Node,
    prometheus: PrometheusHandle,
    registry: Arc<Registry>,
) {
    while let Ok((mut conn, _)) = listener.accept().await {
        let (node, prometheus, registry) = (node.clone(), prometheus.clone(), registry.clone());
        tokio::spawn(async move {
            let Some(path) = request_path(&mut conn).await else {
                return;
            };
            let (status, kind, body) = match path.as_str() {
                "/metrics" => (
                    "200 OK",
                    "text/plain; version=0.0.4",
                    // glueberry's, then libp2p's, then the end marker.
                    format!("{}{}# EOF\n", prometheus.render(), encode(&registry)),
                ),
                "/health" => {
                    let health = node.health();
                    let status = if health.healthy {
                        "200 OK"
                    } else {
                        "503 Service Unavailable"
                    };
                    (status, "application/json", json(&health))
                }
                "/debug" => (
                    "200 OK",
                    "application/json",
                    json(&node.debug_state().await),
                ),
                _ => ("404 Not Found", "text/plain", "not found\n".into()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
        });
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Reads a request head (at most 8 KiB) and returns the path of a GET.
async fn request_path(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > 8192 {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    (parts.next() == Some("GET")).then(|| parts.next().unwrap_or("/").to_owned())
}

/// GETs `path` from the server and returns the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no response head")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")).into());
    }
    Ok(body.to_owned())
}
