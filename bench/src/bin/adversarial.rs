//! Attacks on one node, measured (docs/benchmarks.md, "Adversarial"):
//!
//! - `pinned`: strangers that never finish the handshake each open 4 handshake streams and
//!   send the first half of a largest handshake frame, then stop (1,000 partial frames by
//!   default). The node's peak RSS growth, in a process of its own.
//! - `flood`: strangers send 4 streams × 8 largest handshake messages each at an application
//!   that reads nothing for 10 s, then reads everything. The node's peak RSS growth.
//! - `churn`: one stranger opens handshake streams and closes them at once, in a loop, for
//!   10 s; the node's CPU time and the streams it let through, with `max_new_streams` at its
//!   default and unlimited (as before it existed).
//! - `pings`: 22 peers (real libp2p peers, which answer the node's pings) each send a ping every
//!   millisecond for 10 s on a ping stream; the node's CPU time and the pings it answered.
//! - `fairness`: 50 handshaked peers send 64 KiB messages as fast as they can to a node whose
//!   application handles one message per millisecond; a 51st peer's round trip (it sends 32
//!   bytes, the application echoes them), p50 and p99, against the same without the flood.
//!
//! ```text
//! cargo run --release -p glueberry-bench --bin adversarial            # about a minute
//! cargo run --release -p glueberry-bench --bin adversarial -- --help
//! ```

use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::AsyncWriteExt as _;
use glueberry::{Config, Multiaddr, Node, PeerId};
use glueberry_tests::{RawPeer, Transport, config, connect, frame, handshake, started};

/// Memory under pinned frames and floods, and a round trip under a flood.
#[derive(Parser, Debug)]
struct Args {
    /// Which to run: pinned, flood, fairness (all by default).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Strangers pinning frames (4 each).
    #[arg(long, default_value_t = 250)]
    pinners: usize,
    /// Strangers flooding (4 streams × 8 messages each).
    #[arg(long, default_value_t = 100)]
    flooders: usize,
    /// Flooding peers in the fairness run.
    #[arg(long, default_value_t = 50)]
    peers: usize,
    /// Round trips measured per figure.
    #[arg(long, default_value_t = 300)]
    round_trips: usize,
    /// Admission open (no limit on strangers or per IP): the budgets alone hold the memory.
    #[arg(long)]
    open: bool,
    /// Internal: the node under attack has no `max_new_streams` nor `max_handshake_streams`.
    #[arg(long, hide = true)]
    unlimited_streams: bool,
    /// Internal: run the node under attack in this process (the attack's name, for `ps`).
    #[arg(long, hide = true)]
    serve: Option<String>,
}

const HANDSHAKE_MAX: usize = 16 * 1024;

fn node_config(open: bool, unlimited_streams: bool) -> Config {
    let c = config(Transport::Tcp)
        .with_max_new_streams(
            (!unlimited_streams).then_some(glueberry::config::defaults::MAX_NEW_STREAMS),
        )
        .with_handshake_timeout(None)
        // Every attacker comes from 127.0.0.1.
        .with_max_inbound_per_ip(None);
    if open { c.with_max_strangers(None) } else { c }
}

/// The node under attack, in its own process: prints its address, peer id and RSS, reads
/// nothing until told (a line on stdin), then reads everything until stdin closes.
async fn serve(open: bool, unlimited_streams: bool) {
    let node = started(node_config(open, unlimited_streams)).await;
    let mut out = std::io::stdout();
    writeln!(out, "{} {}", node.listen_addrs()[0], node.peer_id()).unwrap();
    out.flush().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // Stalled until told.
    rx.recv().await;
    let messages = node.messages();
    loop {
        tokio::select! {
            m = messages.recv() => if m.is_err() { break },
            line = rx.recv() => if line.is_none() { break },
        }
    }
    node.shutdown().await;
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Child {
    child: std::process::Child,
    addr: Multiaddr,
    peer: PeerId,
    baseline: u64,
}

fn spawn_node(kind: &str, open: bool) -> Child {
    spawn_node_with(kind, open, false)
}

fn spawn_node_with(kind: &str, open: bool, unlimited_streams: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--serve", kind]);
    if open {
        cmd.arg("--open");
    }
    if unlimited_streams {
        cmd.arg("--unlimited-streams");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut parts = line.split_whitespace();
    let addr: Multiaddr = parts.next().unwrap().parse().unwrap();
    let peer: PeerId = parts.next().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let baseline = rss_kib(child.id(), "VmRSS:");
    Child {
        child,
        addr,
        peer,
        baseline,
    }
}

impl Child {
    fn tell(&mut self) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "go").unwrap();
        stdin.flush().unwrap();
    }

    fn rss(&self) -> u64 {
        rss_kib(self.child.id(), "VmRSS:")
    }

    /// CPU time the process used so far (user and system).
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces): utime is the 12th, stime 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        Duration::from_millis(ticks * 10) // 100 ticks a second on Linux
    }

    fn peak(&self) -> u64 {
        rss_kib(self.child.id(), "VmHWM:")
    }

    fn stop(mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Opens a handshake stream to `node`, or `None` (the node refused or evicted the peer).
async fn handshake_stream(raw: &RawPeer, node: PeerId) -> Option<libp2p::Stream> {
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/handshake/1.0.0");
    tokio::time::timeout(
        Duration::from_secs(5),
        raw.control.clone().open_stream(node, protocol),
    )
    .await
    .ok()?
    .ok()
}

const ATTACK: Duration = Duration::from_secs(10);

/// One stranger opens handshake streams and closes them at once: for `ATTACK` without
/// `max_new_streams`; with it, until the node turns the peer away for its score (90 s at most).
/// Streams over the limit are reset before negotiation, which the opener sees as failed opens.
async fn churn(unlimited: bool) {
    let mut node = spawn_node_with("churn", true, unlimited);
    node.tell();
    let mut raw = RawPeer::dial(node.addr.clone());
    raw.outcome().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let protocol = libp2p::StreamProtocol::new("/glueberry/stream/handshake/1.0.0");
    let (cpu0, started) = (node.cpu(), Instant::now());
    let limit = if unlimited {
        ATTACK
    } else {
        Duration::from_secs(90)
    };
    let (mut attempts, mut opened, mut closed) = (0u64, 0u64, false);
    let mut control = raw.control.clone();
    let mut first_10s = None;
    while started.elapsed() < limit {
        if first_10s.is_none() && started.elapsed() >= ATTACK {
            first_10s = Some((node.cpu() - cpu0, attempts, opened));
        }
        if matches!(raw.events.try_recv(), Ok(Err(_))) {
            closed = true;
            break;
        }
        let open = control.open_stream(node.peer, protocol.clone());
        if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(1), open).await {
            let _ = s.close().await;
            opened += 1;
        }
        attempts += 1;
    }
    let took = started.elapsed();
    let (cpu, attempts, opened) = first_10s.unwrap_or((node.cpu() - cpu0, attempts, opened));
    let secs = ATTACK.as_secs_f64().min(took.as_secs_f64());
    let end = if closed {
        format!(
            "turned away for its score after {:.0} s",
            took.as_secs_f64()
        )
    } else {
        format!("still connected after {:.0} s", took.as_secs_f64())
    };
    println!(
        "churn ({}): first 10 s: {:.0} streams/s opened, {:.0}/s negotiated, node CPU {:.0} % of a core; {end}",
        if unlimited {
            "no max_new_streams"
        } else {
            "max_new_streams 32/s"
        },
        attempts as f64 / secs,
        opened as f64 / secs,
        100.0 * cpu.as_secs_f64() / secs
    );
    node.stop();
}

/// 22 peers, each pinging every millisecond on a ping stream of its own, for `ATTACK`.
async fn pings() {
    use futures::AsyncReadExt as _;
    let mut node = spawn_node("pings", true);
    node.tell();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    let (cpu0, started) = (node.cpu(), Instant::now());
    for _ in 0..22 {
        let (addr, peer, answered) = (node.addr.clone(), node.peer, answered.clone());
        tasks.push(tokio::spawn(async move {
            let (mut control, driver, own) = glueberry_tests::pinger_answered(addr);
            // After the node answered our own ping (its stream would replace ours).
            let _ = tokio::time::timeout(Duration::from_secs(5), own).await;
            let open = control.open_stream(peer, libp2p::StreamProtocol::new("/ipfs/ping/1.0.0"));
            if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_secs(5), open).await {
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                let mut buf = [0u8; 32];
                while started.elapsed() < ATTACK {
                    tick.tick().await;
                    let ping = async {
                        s.write_all(&[7u8; 32]).await?;
                        s.flush().await?;
                        s.read_exact(&mut buf).await
                    };
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(2), ping).await,
                        Ok(Ok(()))
                    ) {
                        break;
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            driver.abort();
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (node.cpu() - cpu0).as_secs_f64();
    println!(
        "pings: 22 peers, {:.0} pings/s answered; node CPU {:.0} % of a core",
        answered.load(std::sync::atomic::Ordering::Relaxed) as f64 / secs,
        100.0 * cpu / secs
    );
    node.stop();
}

async fn pinned(args: &Args) {
    let node = spawn_node("pinned", args.open);
    let mut half = Vec::new();
    glueberry::unstable::wire::put_header(HANDSHAKE_MAX, &mut half);
    half.extend(std::iter::repeat_n(7u8, HANDSHAKE_MAX / 2));
    let mut raws = Vec::new();
    let mut streams = Vec::new();
    let started = Instant::now();
    for _ in 0..args.pinners {
        let mut raw = RawPeer::dial(node.addr.clone());
        if raw.outcome().await.is_err() {
            continue;
        }
        for _ in 0..4 {
            if let Some(mut s) = handshake_stream(&raw, node.peer).await
                && s.write_all(&half).await.is_ok()
                && s.flush().await.is_ok()
            {
                streams.push(s);
            }
        }
        raws.push(raw);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, peak) = (node.rss(), node.peak());
    println!(
        "pinned: {} strangers, {} partial frames written in {:.1} s; node RSS {} → {} MiB, peak growth {:.1} MiB",
        args.pinners,
        streams.len(),
        started.elapsed().as_secs_f64(),
        node.baseline / 1024,
        rss / 1024,
        (peak.saturating_sub(node.baseline)) as f64 / 1024.0
    );
    drop(streams);
    drop(raws);
    node.stop();
}

async fn flood(args: &Args) {
    const STREAMS: usize = 4;
    const EACH: usize = 8;
    let mut node = spawn_node("flood", args.open);
    let msg = frame(&vec![9u8; HANDSHAKE_MAX]);
    let mut raws = Vec::new();
    let mut writers = Vec::new();
    let started = Instant::now();
    for _ in 0..args.flooders {
        let mut raw = RawPeer::dial(node.addr.clone());
        if raw.outcome().await.is_err() {
            continue;
        }
        for _ in 0..STREAMS {
            if let Some(mut s) = handshake_stream(&raw, node.peer).await {
                let msg = msg.clone();
                writers.push(tokio::spawn(async move {
                    for _ in 0..EACH {
                        if s.write_all(&msg).await.is_err() {
                            return 0;
                        }
                    }
                    let _ = s.flush().await;
                    // Kept open until the node has read it.
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    EACH
                }));
            }
        }
        raws.push(raw);
    }
    // The application reads nothing for 10 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stalled_rss = node.rss();
    node.tell();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peak = node.peak();
    println!(
        "flood: {} strangers × {STREAMS} streams × {EACH} messages of {} KiB ({} MiB) at an application stalled 10 s; node RSS {} → {} MiB while stalled, peak growth {:.1} MiB ({:.0} s)",
        args.flooders,
        HANDSHAKE_MAX / 1024,
        args.flooders * STREAMS * EACH * HANDSHAKE_MAX / (1024 * 1024),
        node.baseline / 1024,
        stalled_rss / 1024,
        (peak.saturating_sub(node.baseline)) as f64 / 1024.0,
        started.elapsed().as_secs_f64(),
    );
    for w in writers {
        w.abort();
    }
    drop(raws);
    node.stop();
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Round trips of `victim` through `server`'s application (one message per millisecond).
async fn round_trips(server: &Node, victim: &Node, n: usize) -> (Duration, Duration) {
    let messages = victim.messages();
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        victim
            .send(server.peer_id(), "data", format!("ping {i:>26}"))
            .await
            .unwrap();
        loop {
            let m = messages.recv().await.unwrap();
            if &*m.stream == "data" {
                break;
            }
        }
        v.push(t.elapsed());
    }
    (percentile(&mut v, 0.5), percentile(&mut v, 0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn fairness(args: &Args) {
    let server = started(config(Transport::Tcp).with_max_inbound_per_ip(None)).await;
    let victim = started(config(Transport::Tcp)).await;
    let mut flooders = Vec::new();
    for _ in 0..args.peers {
        flooders.push(started(config(Transport::Tcp)).await);
    }
    for peer in flooders.iter().chain([&victim]) {
        connect(peer, &server).await;
        tokio::join!(
            handshake(peer, server.peer_id(), true, &["data"]),
            handshake(&server, peer.peer_id(), false, &["data"])
        );
    }
    // The application: one message per millisecond; the victim's are echoed.
    let app = {
        let (server, victim) = (server.clone(), victim.peer_id());
        tokio::spawn(async move {
            let messages = server.messages();
            while let Ok(m) = messages.recv().await {
                let until = Instant::now() + Duration::from_millis(1);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                if m.peer == victim {
                    let _ = server.send(victim, "data", m.data).await;
                }
            }
        })
    };
    let quiet = round_trips(&server, &victim, args.round_trips).await;
    let mut floods = Vec::new();
    for f in &flooders {
        let (f, to) = (f.clone(), server.peer_id());
        floods.push(tokio::spawn(async move {
            let m = bytes::Bytes::from(vec![1u8; 64 * 1024]);
            while f.send(to, "data", m.clone()).await.is_ok() {}
        }));
    }
    // Let the backlogs build.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = round_trips(&server, &victim, args.round_trips).await;
    let backlog = server.inbox_stats();
    println!(
        "fairness: round trip of a quiet peer through an application handling 1 message/ms: alone p50 {} p99 {}; while {} peers flood 64 KiB messages p50 {} p99 {} ({:.1}× / {:.1}×); {} messages, {} MiB waiting",
        ms(quiet.0),
        ms(quiet.1),
        args.peers,
        ms(loaded.0),
        ms(loaded.1),
        loaded.0.as_secs_f64() / quiet.0.as_secs_f64(),
        loaded.1.as_secs_f64() / quiet.1.as_secs_f64(),
        backlog.queued_messages,
        backlog.held_bytes / (1024 * 1024),
    );
    for f in floods {
        f.abort();
    }
    app.abort();
    for n in flooders.iter().chain([&victim, &server]) {
        n.shutdown().await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    if args.serve.is_some() {
        serve(args.open, args.unlimited_streams).await;
        return;
    }
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    if wanted("pinned") {
        pinned(&args).await;
    }
    if wanted("flood") {
        flood(&args).await;
    }
    if wanted("churn") {
        churn(false).await;
        churn(true).await;
    }
    if wanted("pings") {
        pings().await;
    }
    if wanted("fairness") {
        fairness(&args).await;
    }
}
