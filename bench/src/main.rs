//! Benchmarks glueberry side by side with raw TCP and raw rust-libp2p, in one run, on loopback,
//! and prints one table with glueberry/raw ratios.
//!
//! ```text
//! cargo run --release -p glueberry-bench --bin compare            # the full run (a few minutes)
//! cargo run --release -p glueberry-bench --bin compare -- --help
//! ```
//!
//! Scenarios: (1) bulk, 64 KiB messages one way; (2) small, 256 B messages one way; (3) round
//! trip, 256 B request and echo, sequential; (4) connect + handshake + first message for N peers
//! against one node, and the process's RSS per peer; (5) events per second to 64 subscribers.
//! The raw transports run the same application code: 4-byte length-prefixed frames, one write
//! per message. Peers run in one process, or in two with `--two-process`.

mod alloc;
mod framed;
mod glue;
mod raw;
mod remote;
mod two_process;

use std::time::{Duration, Instant};

use clap::Parser;

use crate::framed::{Duplex, FrameReader, write_frames};
use crate::remote::Kind;

/// glueberry vs raw TCP vs raw rust-libp2p, on loopback, in one run.
#[derive(Parser, Debug, Clone)]
struct Args {
    /// MiB sent one way in the bulk scenario (64 KiB messages).
    #[arg(long, default_value_t = 256)]
    bulk_mib: usize,
    /// 256-byte messages sent one way in the small-message scenario.
    #[arg(long, default_value_t = 200_000)]
    small: usize,
    /// Sequential round trips.
    #[arg(long, default_value_t = 10_000)]
    rtt: usize,
    /// Peer counts of the connect scenario, comma-separated.
    #[arg(long, default_value = "1,100,500", value_delimiter = ',')]
    peers: Vec<usize>,
    /// Events in the subscriber scenario.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Subscribers in the subscriber scenario.
    #[arg(long, default_value_t = 64)]
    subscribers: usize,
    /// Skip QUIC.
    #[arg(long)]
    no_quic: bool,
    /// Run only these scenarios, comma-separated: bulk, small, rtt, peers, events (all by
    /// default).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Run glueberry alone in the one-way scenarios (to profile it).
    #[arg(long)]
    glueberry_only: bool,
    /// Peers in two processes: the receiver (or echo) of the one-way and round-trip scenarios,
    /// and the serving node of the many-peers scenario (whose memory per peer is then measured
    /// alone), run in a second process.
    #[arg(long)]
    two_process: bool,
    /// (internal) Serve the many-peers scenario in this process: `glue` or `libp2p`.
    #[arg(long, hide = true)]
    serve: Option<String>,
    /// (internal) Receive the one-way or round-trip scenario in this process: `tcp`, `libp2p`
    /// or `glue`.
    #[arg(long, hide = true)]
    serve_flow: Option<String>,
    /// (internal) With --serve-flow: how many messages to wait for after the warm-up.
    #[arg(long, hide = true, default_value_t = 0)]
    serve_count: usize,
    /// (internal) With --serve-flow: echo every message instead of counting them.
    #[arg(long, hide = true)]
    serve_echo: bool,
    /// (internal) With --serve or --serve-flow: over QUIC.
    #[arg(long, hide = true)]
    quic: bool,
    /// (internal) With --serve: how many peers to wait for.
    #[arg(long, hide = true, default_value_t = 0)]
    serve_peers: usize,
}

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

const BULK: usize = 64 * 1024;
const SMALL: usize = 256;
const CONCURRENT_DIALS: usize = 32;

/// One row of the table: a figure per transport (`None` where it does not apply).
struct Row {
    name: String,
    unit: &'static str,
    /// Larger is better (throughput) or smaller is better (latency, memory, time).
    higher_is_better: bool,
    raw_tcp: Option<f64>,
    libp2p_tcp: Option<f64>,
    glue_tcp: Option<f64>,
    libp2p_quic: Option<f64>,
    glue_quic: Option<f64>,
}

fn mib_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// CPU time this process has used so far: (user, system) seconds.
fn cpu_time() -> CpuTime {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let field = |i: usize| {
        rest.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    // utime and stime are fields 14 and 15 of the whole line, 11 and 12 after the name.
    CpuTime(field(11), field(12))
}

/// (user, system) CPU seconds.
#[derive(Clone, Copy)]
struct CpuTime(f64, f64);

impl std::ops::Sub for CpuTime {
    type Output = (f64, f64);
    fn sub(self, o: CpuTime) -> (f64, f64) {
        (self.0 - o.0, self.1 - o.1)
    }
}

/// The process's resident memory, in bytes.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn raw_one_way(
    pair: (Box<dyn Duplex>, Box<dyn Duplex>),
    count: usize,
    size: usize,
    buffered: bool,
) -> Duration {
    let (mut client, server) = pair;
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut r = FrameReader::new(server);
        for _ in 0..count {
            r.next().await.unwrap();
        }
    });
    if buffered {
        // The application batching its own writes: the most the transport can carry.
        let mut w = futures::io::BufWriter::with_capacity(64 * 1024, &mut client);
        write_frames(&mut w, count, size).await.unwrap();
    } else {
        write_frames(&mut client, count, size).await.unwrap();
    }
    reader.await.unwrap();
    started.elapsed()
}

async fn raw_round_trips(
    pair: (Box<dyn Duplex>, Box<dyn Duplex>),
    count: usize,
    size: usize,
) -> Vec<Duration> {
    use futures::AsyncReadExt as _;
    let (client, server) = pair;
    let echo = tokio::spawn(async move {
        let (r, mut w) = server.split();
        framed::echo(&mut FrameReader::new(r), &mut w).await;
    });
    let rtts = framed::round_trips(client, count, size).await;
    echo.abort();
    rtts
}

/// One way over `kind`, in this process or (`--two-process`) to a receiver in another: the
/// time, and the allocations this process made meanwhile.
async fn one_way_on(
    args: &Args,
    kind: Kind,
    quic: bool,
    count: usize,
    size: usize,
    buffered: bool,
) -> (Duration, u64) {
    if args.two_process {
        let before = alloc::allocations();
        let d = remote::one_way(kind, quic, count, size, buffered).await;
        return (d, alloc::allocations() - before);
    }
    match kind {
        Kind::Tcp | Kind::Libp2p => {
            let (pair, nodes) = if kind == Kind::Tcp {
                (raw::tcp_pair().await, None)
            } else {
                let (pair, nodes) = raw::libp2p_pair(quic).await;
                (pair, Some(nodes))
            };
            let before = alloc::allocations();
            let d = raw_one_way(pair, count, size, buffered).await;
            let a = alloc::allocations() - before;
            drop(nodes);
            (d, a)
        }
        Kind::Glue => {
            let (a, b) = glue::pair(quic).await;
            let before = alloc::allocations();
            let t = Instant::now();
            glue::one_way(&a, &b, count, size).await;
            let d = t.elapsed();
            let n = alloc::allocations() - before;
            a.shutdown().await;
            b.shutdown().await;
            (d, n)
        }
    }
}

/// Sequential round trips over `kind`, with the echo in this process or in another.
async fn round_trips_on(args: &Args, kind: Kind, quic: bool, count: usize) -> Vec<Duration> {
    let mut rtts = if args.two_process {
        remote::round_trips(kind, quic, count, SMALL).await
    } else {
        match kind {
            Kind::Tcp => raw_round_trips(raw::tcp_pair().await, count, SMALL).await,
            Kind::Libp2p => {
                let (pair, _nodes) = raw::libp2p_pair(quic).await;
                raw_round_trips(pair, count, SMALL).await
            }
            Kind::Glue => {
                let (a, b) = glue::pair(quic).await;
                let rtts = glue::round_trips(&a, &b, count, SMALL).await;
                a.shutdown().await;
                b.shutdown().await;
                rtts
            }
        }
    };
    rtts.sort();
    rtts
}

/// Runs every scenario and returns the table's rows.
async fn run(args: &Args) -> Vec<Row> {
    let quics: &[bool] = if args.no_quic {
        &[false]
    } else {
        &[false, true]
    };
    let bulk_count = args.bulk_mib * 1024 * 1024 / BULK;
    let wanted = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut rows = Vec::new();

    // 1 and 2: one way.
    let mut ceiling = Row::new(
        "small 256 B one way, raw written through a 64 KiB BufWriter (batching by the app: the transport's ceiling; glueberry as above)",
        "msg/s",
        true,
    );
    let mut allocs = Row::new(
        if args.two_process {
            "allocations per 256 B message, the sending process"
        } else {
            "allocations per 256 B message, both ends (process-wide)"
        },
        "allocs",
        false,
    );
    for (name, count, size) in [
        ("bulk 64 KiB one way", bulk_count, BULK),
        ("small 256 B one way", args.small, SMALL),
    ] {
        if !wanted(if size == BULK { "bulk" } else { "small" }) {
            continue;
        }
        let bytes = count * size;
        let is_bulk = size == BULK;
        let value = |d: Duration| {
            if is_bulk {
                mib_s(bytes, d)
            } else {
                per_s(count, d)
            }
        };
        let mut row = Row::new(name, if is_bulk { "MiB/s" } else { "msg/s" }, true);
        if args.glueberry_only {
            for &quic in quics {
                let (a, b) = glue::pair(quic).await;
                let (t, cpu) = (Instant::now(), cpu_time());
                glue::one_way(&a, &b, count, size).await;
                let g = Some(value(t.elapsed()));
                let cpu = cpu_time() - cpu;
                println!(
                    "{name}, glueberry {}: {:.2} µs of CPU per message (user {:.2}, system {:.2})",
                    if quic { "QUIC" } else { "TCP" },
                    (cpu.0 + cpu.1) * 1e6 / count as f64,
                    cpu.0 * 1e6 / count as f64,
                    cpu.1 * 1e6 / count as f64,
                );
                a.shutdown().await;
                b.shutdown().await;
                if quic {
                    row.glue_quic = g;
                } else {
                    row.glue_tcp = g;
                }
            }
            rows.push(row);
            continue;
        }
        let per_msg = |n: u64| Some(n as f64 / count as f64);
        let (d, a) = one_way_on(args, Kind::Tcp, false, count, size, false).await;
        row.raw_tcp = Some(value(d));
        if !is_bulk {
            allocs.raw_tcp = per_msg(a);
            let (d, _) = one_way_on(args, Kind::Tcp, false, count, size, true).await;
            ceiling.raw_tcp = Some(value(d));
        }
        for &quic in quics {
            if !is_bulk {
                let (d, _) = one_way_on(args, Kind::Libp2p, quic, count, size, true).await;
                if quic {
                    ceiling.libp2p_quic = Some(value(d));
                } else {
                    ceiling.libp2p_tcp = Some(value(d));
                }
            }
            let (ld, la) = one_way_on(args, Kind::Libp2p, quic, count, size, false).await;
            let (gd, ga) = one_way_on(args, Kind::Glue, quic, count, size, false).await;
            let (l, g) = (Some(value(ld)), Some(value(gd)));
            if !is_bulk {
                if quic {
                    (allocs.libp2p_quic, allocs.glue_quic) = (per_msg(la), per_msg(ga));
                } else {
                    (allocs.libp2p_tcp, allocs.glue_tcp) = (per_msg(la), per_msg(ga));
                }
            }
            if quic {
                (row.libp2p_quic, row.glue_quic) = (l, g);
            } else {
                (row.libp2p_tcp, row.glue_tcp) = (l, g);
            }
        }
        rows.push(row);
    }
    if wanted("small") && !args.glueberry_only {
        if let Some(small) = rows.last() {
            (ceiling.glue_tcp, ceiling.glue_quic) = (small.glue_tcp, small.glue_quic);
        }
        rows.push(ceiling);
        rows.push(allocs);
    }

    // 3: round trips.
    if wanted("rtt") {
        round_trip_rows(args, quics, &mut rows).await;
    }

    // 4: many peers against one node.
    if wanted("peers") {
        many_peers_rows(args, quics, &mut rows).await;
    }

    // 5: events to many subscribers (glueberry only: raw libp2p has no events).
    if wanted("events") {
        rows.push(events_row(args).await);
    }
    rows
}

async fn round_trip_rows(args: &Args, quics: &[bool], rows: &mut Vec<Row>) {
    let mut p50 = Row::new("round trip 256 B, p50", "µs", false);
    let mut p99 = Row::new("round trip 256 B, p99", "µs", false);
    let rtts = round_trips_on(args, Kind::Tcp, false, args.rtt).await;
    (p50.raw_tcp, p99.raw_tcp) = (Some(percentile(&rtts, 0.5)), Some(percentile(&rtts, 0.99)));
    for &quic in quics {
        let l = round_trips_on(args, Kind::Libp2p, quic, args.rtt).await;
        let g = round_trips_on(args, Kind::Glue, quic, args.rtt).await;
        let (l50, l99, g50, g99) = (
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&g, 0.5),
            percentile(&g, 0.99),
        );
        if quic {
            (
                p50.libp2p_quic,
                p50.glue_quic,
                p99.libp2p_quic,
                p99.glue_quic,
            ) = (Some(l50), Some(g50), Some(l99), Some(g99));
        } else {
            (p50.libp2p_tcp, p50.glue_tcp, p99.libp2p_tcp, p99.glue_tcp) =
                (Some(l50), Some(g50), Some(l99), Some(g99));
        }
    }
    rows.push(p50);
    rows.push(p99);
}

async fn many_peers_rows(args: &Args, quics: &[bool], rows: &mut Vec<Row>) {
    for &peers in &args.peers {
        let mut time = Row::new(
            format!("connect+handshake+1st msg, {peers} peers"),
            "ms",
            false,
        );
        let what = if args.two_process {
            "serving node"
        } else {
            "both ends"
        };
        let mut memory = Row::new(
            format!("RSS per peer ({what}), {peers} peers"),
            "KiB",
            false,
        );
        for &quic in quics {
            let (l_time, l_mem, g_time, g_mem) = if args.two_process {
                let (l_time, l_mem) = two_process::many_peers("libp2p", quic, peers).await;
                let (g_time, g_mem) = two_process::many_peers("glue", quic, peers).await;
                (l_time, l_mem, g_time, g_mem)
            } else {
                let before = rss();
                let t = Instant::now();
                let (server, clients) = raw::connect_many(quic, peers, CONCURRENT_DIALS).await;
                let l_time = t.elapsed().as_secs_f64() * 1e3;
                let l_mem = rss().saturating_sub(before) as f64 / 1024.0 / peers as f64;
                drop(clients);
                drop(server);
                let before = rss();
                let t = Instant::now();
                let (server, clients) = glue::connect_many(quic, peers, CONCURRENT_DIALS).await;
                let g_time = t.elapsed().as_secs_f64() * 1e3;
                let g_mem = rss().saturating_sub(before) as f64 / 1024.0 / peers as f64;
                for c in clients {
                    c.shutdown().await;
                }
                server.shutdown().await;
                (l_time, l_mem, g_time, g_mem)
            };
            if quic {
                (time.libp2p_quic, time.glue_quic) = (Some(l_time), Some(g_time));
                (memory.libp2p_quic, memory.glue_quic) = (Some(l_mem), Some(g_mem));
            } else {
                (time.libp2p_tcp, time.glue_tcp) = (Some(l_time), Some(g_time));
                (memory.libp2p_tcp, memory.glue_tcp) = (Some(l_mem), Some(g_mem));
            }
        }
        rows.push(time);
        rows.push(memory);
    }
}

async fn events_row(args: &Args) -> Row {
    let (d, lagged) = glue::events(args.events, args.subscribers).await;
    let total = (args.events * args.subscribers) as u64;
    let mut events = Row::new(
        format!(
            "events delivered to {} subscribers ({:.0} % missed, told by Lagged)",
            args.subscribers,
            lagged as f64 * 100.0 / total as f64
        ),
        "ev/s",
        true,
    );
    events.glue_tcp = Some(per_s(total.saturating_sub(lagged) as usize, d));
    events
}

impl Row {
    fn new(name: impl Into<String>, unit: &'static str, higher_is_better: bool) -> Row {
        Row {
            name: name.into(),
            unit,
            higher_is_better,
            raw_tcp: None,
            libp2p_tcp: None,
            glue_tcp: None,
            libp2p_quic: None,
            glue_quic: None,
        }
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v >= 100_000.0 => format!("{:.0}k", v / 1000.0),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

fn ratio(g: Option<f64>, l: Option<f64>) -> String {
    match (g, l) {
        (Some(g), Some(l)) if l > 0.0 => format!("{:.2}", g / l),
        _ => "–".into(),
    }
}

/// The issue's targets (a 2-core machine), each with the figures of this run: reported, never
/// asserted. Rows that did not run are left out.
fn targets(rows: &[Row]) -> Vec<String> {
    let find = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix));
    let ratio = |g: Option<f64>, l: Option<f64>| match (g, l) {
        (Some(g), Some(l)) if l > 0.0 => Some(g / l),
        _ => None,
    };
    let mut out = vec!["targets (a 2-core machine; reported, not asserted):".to_owned()];
    let mut check = |what: String, ok: bool| {
        out.push(format!("  [{}] {what}", if ok { "met" } else { "missed" }));
    };
    if let Some(r) = find("bulk") {
        for (t, g, l) in [
            ("TCP", r.glue_tcp, r.libp2p_tcp),
            ("QUIC", r.glue_quic, r.libp2p_quic),
        ] {
            if let Some(x) = ratio(g, l) {
                check(format!("bulk {t}: {x:.2} × raw libp2p (≥ 0.75)"), x >= 0.75);
            }
        }
    }
    if let Some(r) = find("small 256 B one way |").or_else(|| find("small 256 B one way"))
        && let (Some(g), Some(x)) = (r.glue_tcp, ratio(r.glue_tcp, r.libp2p_tcp))
    {
        check(
            format!("small TCP: {:.0}k msg/s (≥ 1000k)", g / 1000.0),
            g >= 1e6,
        );
        check(format!("small TCP: {x:.2} × raw libp2p (≥ 5)"), x >= 5.0);
    }
    if let Some(r) = find("round trip 256 B, p50") {
        for (t, g, l) in [
            ("TCP", r.glue_tcp, r.libp2p_tcp),
            ("QUIC", r.glue_quic, r.libp2p_quic),
        ] {
            if let Some(x) = ratio(g, l) {
                check(
                    format!("round trip p50 {t}: {x:.2} × raw libp2p (≤ 1.25)"),
                    x <= 1.25,
                );
            }
        }
    }
    // The largest peer count that ran.
    if let Some(r) = rows
        .iter()
        .rev()
        .find(|r| r.name.starts_with("RSS per peer"))
    {
        for (t, g, l) in [
            ("TCP", r.glue_tcp, r.libp2p_tcp),
            ("QUIC", r.glue_quic, r.libp2p_quic),
        ] {
            if let Some(x) = ratio(g, l) {
                check(
                    format!("{}, {t}: {x:.2} × raw libp2p (≤ 1.5)", r.name),
                    x <= 1.5,
                );
            }
        }
    }
    if let Some(r) = find("connect+handshake+1st msg, 500 peers") {
        for (t, g) in [("TCP", r.glue_tcp), ("QUIC", r.glue_quic)] {
            if let Some(ms) = g {
                check(
                    format!("500 peers established, {t}: {:.1} s (< 5 s)", ms / 1e3),
                    ms < 5000.0,
                );
            }
        }
    }
    if let Some(r) = find("allocations") {
        for (t, g) in [("TCP", r.glue_tcp), ("QUIC", r.glue_quic)] {
            if let Some(n) = g {
                check(
                    format!(
                        "allocations per message, {t}: {n:.2} (nothing beyond the frame buffer: < 1)"
                    ),
                    n < 1.0,
                );
            }
        }
    }
    out
}

fn print(rows: &[Row]) {
    println!(
        "| scenario | unit | raw TCP | libp2p TCP | glueberry TCP | g/libp2p TCP | libp2p QUIC | glueberry QUIC | g/libp2p QUIC |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.unit,
            if r.higher_is_better { " ↑" } else { " ↓" },
            cell(r.raw_tcp),
            cell(r.libp2p_tcp),
            cell(r.glue_tcp),
            ratio(r.glue_tcp, r.libp2p_tcp),
            cell(r.libp2p_quic),
            cell(r.glue_quic),
            ratio(r.glue_quic, r.libp2p_quic),
        );
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Some(kind) = &args.serve_flow {
        runtime.block_on(remote::serve(
            Kind::parse(kind),
            args.quic,
            args.serve_echo,
            args.serve_count,
        ));
        return;
    }
    if let Some(kind) = &args.serve {
        runtime.block_on(two_process::serve(kind, args.quic, args.serve_peers));
        return;
    }
    println!("machine: {}", machine());
    println!("args: {args:?}");
    let started = Instant::now();
    let rows = runtime.block_on(run(&args));
    print(&rows);
    println!();
    for line in targets(&rows) {
        println!("{line}");
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario runs to the end (tiny sizes: this checks the harness, not the speed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_scenario_runs() {
        let args = Args {
            bulk_mib: 1,
            small: 500,
            rtt: 20,
            peers: vec![1, 3],
            events: 200,
            subscribers: 4,
            no_quic: false,
            only: Vec::new(),
            glueberry_only: false,
            two_process: false,
            serve: None,
            serve_flow: None,
            serve_count: 0,
            serve_echo: false,
            quic: false,
            serve_peers: 0,
        };
        let rows = run(&args).await;
        assert_eq!(rows.len(), 4 + 2 + 2 * 2 + 1);
        // The targets are reported (memory only where the tiny run moved the RSS; the 500-peer
        // one did not run).
        let lines = targets(&rows);
        for what in [
            "bulk TCP",
            "bulk QUIC",
            "small TCP",
            "round trip p50 QUIC",
            "allocations",
        ] {
            assert!(lines.iter().any(|l| l.contains(what)), "{what}: {lines:#?}");
        }
        for r in &rows[..4] {
            for v in [r.libp2p_tcp, r.glue_tcp, r.libp2p_quic, r.glue_quic] {
                assert!(v.is_some_and(|v| v > 0.0), "{}", r.name);
            }
        }
    }
}
