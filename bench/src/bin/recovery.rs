//! How long glueberry takes to see a dead link, and to have a crashed and restarted peer back,
//! over TCP and QUIC, with the default settings (docs/benchmarks.md, "Recovery").
//!
//! ```text
//! cargo run --release -p glueberry-bench --bin recovery             # about two minutes
//! cargo run --release -p glueberry-bench --bin recovery -- --help
//! ```
//!
//! Dead link: two nodes handshake through a relay on loopback that then stops forwarding but
//! keeps its sockets open (`Blackhole`); the time is from that moment to each side's
//! `Disconnected`. Restart: four nodes dial each other at once, one crashes (its runtime is
//! dropped) and starts again with the same identity; the time is from its restart to each
//! survivor's `Established`. Raw rust-libp2p has no counterpart to either: its connections are
//! closed by its idle timeout, not by liveness, and a restarted peer is its application's job.

use std::time::Duration;

use clap::Parser;
use glueberry_tests::{Transport, config, crash_and_restart, lose_path};

/// Dead-link detection and restart times, TCP and QUIC.
#[derive(Parser, Debug)]
struct Args {
    /// Runs of each measurement.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Ping interval in seconds (default: glueberry's, 15).
    #[arg(long)]
    ping_interval: Option<f64>,
    /// Ping timeout in seconds (default: glueberry's, 20).
    #[arg(long)]
    ping_timeout: Option<f64>,
    /// Skip the dead-link measurement.
    #[arg(long)]
    no_dead_link: bool,
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

fn range(v: &[Duration]) -> String {
    let min = v.iter().min().copied().unwrap_or_default();
    let max = v.iter().max().copied().unwrap_or_default();
    format!("{} – {}", secs(min), secs(max))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let node = |t: Transport| {
        let mut c = config(t)
            .with_reconnect_base_delay(Duration::from_secs(600))
            .with_reconnect_max_delay(Duration::from_secs(600));
        if let Some(i) = args.ping_interval {
            c = c.with_ping_interval(Duration::from_secs_f64(i));
        }
        if let Some(t) = args.ping_timeout {
            c = c.with_ping_timeout(Duration::from_secs_f64(t));
        }
        c
    };
    println!("| measurement | transport | runs | min – max |");
    println!("|---|---|---|---|");
    if !args.no_dead_link {
        // Both transports at once: the runs take the liveness bound each.
        let mut tcp = Vec::new();
        let mut quic = Vec::new();
        for _ in 0..args.runs {
            let (t, q) = tokio::join!(
                lose_path(node(Transport::Tcp), node(Transport::Tcp)),
                lose_path(node(Transport::Quic), node(Transport::Quic))
            );
            for (lost, into) in [(t, &mut tcp), (q, &mut quic)] {
                into.extend([lost.a_took, lost.b_took]);
                lost.a.shutdown().await;
                lost.b.shutdown().await;
            }
        }
        println!(
            "| dead link seen (both sides) | TCP | {} | {} |",
            args.runs,
            range(&tcp)
        );
        println!(
            "| dead link seen (both sides) | QUIC | {} | {} |",
            args.runs,
            range(&quic)
        );
    }
    for t in [Transport::Tcp, Transport::Quic] {
        let mut back = Vec::new();
        for _ in 0..args.runs {
            back.extend(crash_and_restart(t, None, Some(2)).await);
        }
        println!(
            "| restarted peer Established again (3 survivors) | {t:?} | {} | {} |",
            args.runs,
            range(&back)
        );
    }
}
