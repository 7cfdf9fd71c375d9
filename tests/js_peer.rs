//! Interop with an independent Glueberry v1 peer on js-libp2p (tests/js/peer.mjs, written from
//! docs/protocol.md): its framing and crypto against the Go vectors first, then the byte-tag
//! handshake, message sizes up to the limit, bulk both ways, a simultaneous first send under Go's
//! stream rule, and malformed input, with the JS peer dialling and being dialled.
//!
//! Needs Node.js; the packages (pinned in tests/js/package-lock.json) are installed with
//! `npm ci` on first use if they are not there yet.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use glueberry::{Event, Multiaddr, Node, PeerId, State};
use glueberry_tests::*;
use serde_json::Value;

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

/// Installs the JS packages once per test binary, if needed.
fn npm_ci() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if js_dir().join("node_modules").join("libp2p").exists() {
            return;
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(js_dir())
            .status()
            .expect("npm runs");
        assert!(status.success(), "npm ci in tests/js");
    });
}

/// The JS peer, running; its stdout lines arrive on `lines`.
struct JsPeer {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    peer_id: PeerId,
    addr: Multiaddr,
}

impl JsPeer {
    fn start(args: &[&str]) -> Self {
        npm_ci();
        let mut child = Command::new("node")
            .arg("peer.mjs")
            .arg("run")
            .args(args)
            .current_dir(js_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let first = lines.blocking_recv().expect("the JS peer starts");
        assert!(first.get("fatal").is_none(), "{first}");
        let peer_id = first["peer"].as_str().unwrap().parse().unwrap();
        let addr = first["listening"].as_str().unwrap().parse().unwrap();
        Self {
            child,
            stdin,
            lines,
            peer_id,
            addr,
        }
    }

    /// The next line that has `key`.
    async fn next_with(&mut self, key: &str) -> Value {
        within(async {
            loop {
                let v = self.lines.recv().await.expect("the JS peer runs");
                assert!(v.get("fatal").is_none(), "{v}");
                if v.get(key).is_some() {
                    return v;
                }
            }
        })
        .await
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const STREAMS: &[&str] = &["messages", "bulk"];

/// A node and the JS peer, handshaked; `js_dials` says who dials.
async fn pair(
    script: &str,
    js_dials: bool,
) -> (
    Node,
    JsPeer,
    tokio::sync::mpsc::UnboundedReceiver<glueberry::IncomingMessage>,
    glueberry::Subscription,
) {
    let node = started(config(Transport::Tcp)).await;
    let inbox = handshake_everyone(&node, STREAMS);
    let mut events = node.subscribe_events();
    let later = node.subscribe_events();
    let mut js = if js_dials {
        let addr = format!("{}/p2p/{}", node.listen_addrs()[0], node.peer_id());
        tokio::task::block_in_place(|| JsPeer::start(&["--dial", &addr, "--script", script]))
    } else {
        let js = tokio::task::block_in_place(|| JsPeer::start(&["--script", script]));
        node.add_peer(js.peer_id, vec![js.addr.clone()], Default::default())
            .await
            .unwrap();
        node.connect(js.peer_id).await.unwrap();
        js
    };
    js.next_with("handshake").await;
    let id = js.peer_id;
    within(async {
        while node.connection_state(&id) != State::Established {
            let _ = events.recv().await;
        }
    })
    .await;
    (node, js, inbox, later)
}

fn assert_nothing_dropped(node: &Node, peer: &PeerId) {
    let stats = node.peer_stats(peer).unwrap();
    assert_eq!(stats.dropped, Default::default(), "{stats:?}");
}

#[test]
fn the_js_peer_s_framing_and_crypto_match_the_go_vectors() {
    npm_ci();
    let vectors =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/glueberry-v1.json");
    let out = Command::new("node")
        .args(["peer.mjs", "vectors"])
        .arg(vectors)
        .current_dir(js_dir())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["vectors"], "ok");
    assert!(v["checked"].as_u64().unwrap() >= 20);
}

async fn sizes_echoed(js_dials: bool) {
    let (node, mut js, mut inbox, _) = pair("echo", js_dials).await;
    let sizes = [0usize, 1, 255, 65_536, 1 << 20];
    for (i, n) in sizes.iter().enumerate() {
        let m: Vec<u8> = (0..*n).map(|b| (b + i) as u8).collect();
        node.send(js.peer_id, "messages", m.clone()).await.unwrap();
        let back = within(inbox.recv()).await.unwrap();
        assert_eq!(back.data.as_ref(), m.as_slice(), "size {n}");
        let seen = js.next_with("received").await;
        assert_eq!(seen["len"].as_u64(), Some(*n as u64));
    }
    assert_nothing_dropped(&node, &js.peer_id);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_up_to_the_limit_when_the_js_peer_dials() {
    sizes_echoed(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_up_to_the_limit_when_the_node_dials() {
    sizes_echoed(false).await;
}

async fn bulk_both_ways(js_dials: bool) {
    let (node, js, mut inbox, _) = pair("bulk", js_dials).await;
    // The JS peer sends 100 × 64 KiB on `bulk`; the node sends 100 × 64 KiB on `messages`,
    // which come back.
    let sender = {
        let (node, to) = (node.clone(), js.peer_id);
        tokio::spawn(async move {
            for i in 0..100u8 {
                node.send(to, "messages", vec![i; 64 * 1024]).await.unwrap();
            }
        })
    };
    let (mut bulk, mut echoed) = (0, 0);
    within(async {
        while bulk < 100 || echoed < 100 {
            let m = inbox.recv().await.unwrap();
            assert_eq!(m.data.len(), 64 * 1024);
            match &*m.stream {
                "bulk" => bulk += 1,
                "messages" => {
                    assert!(m.data.iter().all(|b| *b == echoed as u8), "in order");
                    echoed += 1;
                }
                other => panic!("{other}"),
            }
        }
    })
    .await;
    within(sender).await.unwrap();
    assert_nothing_dropped(&node, &js.peer_id);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_when_the_js_peer_dials() {
    bulk_both_ways(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_when_the_node_dials() {
    bulk_both_ways(false).await;
}

async fn simultaneous_first_send(js_dials: bool) {
    let (node, js, mut inbox, _) = pair("race", js_dials).await;
    for i in 0..100 {
        node.send(js.peer_id, "messages", format!("node {i}"))
            .await
            .unwrap();
    }
    // The JS peer's 100, in order, and the node's 100 echoed back, in order.
    let (mut theirs, mut ours) = (0, 0);
    within(async {
        while theirs < 100 || ours < 100 {
            let m = inbox.recv().await.unwrap();
            let s = String::from_utf8(m.data.to_vec()).unwrap();
            if let Some(n) = s.strip_prefix("js ") {
                assert_eq!(n.parse::<usize>().unwrap(), theirs);
                theirs += 1;
            } else {
                assert_eq!(s, format!("node {ours}"));
                ours += 1;
            }
        }
    })
    .await;
    assert_nothing_dropped(&node, &js.peer_id);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simultaneous_first_send_under_go_s_rule_when_the_js_peer_dials() {
    simultaneous_first_send(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simultaneous_first_send_under_go_s_rule_when_the_node_dials() {
    simultaneous_first_send(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_from_the_js_peer_is_reported_and_reset() {
    let (node, js, _inbox, mut sub) = pair("garbage", true).await;
    let fault = within(async {
        loop {
            if let Ok(Event::StreamFault(f)) = sub.recv().await {
                return f;
            }
        }
    })
    .await;
    assert_eq!(fault.peer, js.peer_id);
    assert!(
        fault.reset && fault.error.contains("overflows"),
        "{fault:?}"
    );
    node.shutdown().await;
}
