//! The many-peers scenario with the serving node in a second process (this binary run with
//! `--serve`), so that its resident memory per peer is measured alone.
//!
//! The child prints `addr <multiaddr> <peer id>`, then `rss <bytes>` once it listens, then
//! `done <bytes>` once every peer sent its first message; it exits when its stdin closes.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use glueberry::{Multiaddr, PeerId};

use crate::{CONCURRENT_DIALS, glue, raw, rss};

/// Prints one line for the parent and flushes it.
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs the serving side (`kind` is `glue` or `libp2p`) in this process.
pub async fn serve(kind: &str, quic: bool, peers: usize) {
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    });
    if kind == "glue" {
        let (server, acceptor) = glue::serve(quic, peers, CONCURRENT_DIALS).await;
        say(format!(
            "addr {} {}",
            server.listen_addrs()[0],
            server.peer_id()
        ));
        say(format!("rss {}", rss()));
        glue::first_messages(&server, peers).await;
        say(format!("done {}", rss()));
        let _ = stdin_closed.await;
        acceptor.abort();
        server.shutdown().await;
    } else {
        let (server, served) = raw::serve(quic, peers).await;
        say(format!("addr {} {}", server.addr, server.peer_id));
        say(format!("rss {}", rss()));
        let kept = served.await.expect("served");
        say(format!("done {}", rss()));
        let _ = stdin_closed.await;
        drop(kept);
    }
}

/// Starts `cmd` (this binary in a serving role) with piped stdin and stdout; its stdout comes
/// back line by line. Closing its stdin tells it to exit.
pub fn spawn(mut cmd: Command) -> (Child, tokio::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a serving process");
    let stdout = child.stdout.take().expect("piped");
    let (tx, lines) = tokio::sync::mpsc::channel::<String>(8);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

/// The number after the word of a `word <number>` line.
fn number(line: Option<String>) -> f64 {
    line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("a `word <number>` line from the serving process")
}

/// Starts the serving side of `kind` in a child process, connects `peers` clients from this
/// one, and returns the time until the server had every first message (ms) and the server's
/// resident memory per peer (KiB).
pub async fn many_peers(kind: &str, quic: bool, peers: usize) -> (f64, f64) {
    let mut cmd = Command::new(std::env::current_exe().expect("this binary"));
    cmd.args(["--serve", kind, "--serve-peers", &peers.to_string()]);
    if quic {
        cmd.arg("--quic");
    }
    let (mut child, mut lines) = spawn(cmd);
    let addr_line = lines.recv().await.expect("addr line");
    let mut parts = addr_line.split_whitespace().skip(1);
    let addr: Multiaddr = parts
        .next()
        .and_then(|a| a.parse().ok())
        .expect("an address");
    let peer: PeerId = parts
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a peer id");
    let before = number(lines.recv().await);
    let started = Instant::now();
    let done = async {
        let after = number(lines.recv().await);
        (after, started.elapsed())
    };
    let (after, elapsed) = if kind == "glue" {
        let (clients, done) = tokio::join!(
            glue::clients(quic, vec![addr], peer, peers, CONCURRENT_DIALS),
            done
        );
        for c in clients {
            c.shutdown().await;
        }
        done
    } else {
        let (clients, done) = tokio::join!(raw::clients(addr, peer, peers, CONCURRENT_DIALS), done);
        drop(clients);
        done
    };
    drop(child.stdin.take());
    let _ = child.wait();
    (
        elapsed.as_secs_f64() * 1e3,
        (after - before).max(0.0) / 1024.0 / peers as f64,
    )
}
