//! Request/response on one encrypted stream, `rpc`: calls carry ids, each has its own timeout,
//! and any number of them can be in flight at once.
//!
//! ```text
//! cargo run --release --example rpc -- --demo          # 1000 concurrent calls, 1 that times out
//! cargo run --release --example rpc -- serve --listen /ip4/127.0.0.1/tcp/4002
//! cargo run --release --example rpc -- call --peer /ip4/127.0.0.1/tcp/4002/p2p/12D3KooW… add '[2, 3]'
//! ```
//!
//! `--demo` runs a client node and a server node in one process; both public keys are known
//! there, so each node simply calls `complete_handshake`. In the two-process mode the nodes run
//! the byte-tag handshake of the Go examples on the `handshake` stream instead (the client
//! dials and speaks first; the server answers any number of clients).
//!
//! # Protocol on stream `rpc`
//!
//! One JSON object per glueberry message:
//!
//! - request, client → server: `{"id":7,"method":"add","params":[2,3]}`;
//! - response, server → client: `{"id":7,"result":5}` or `{"id":7,"error":"…"}`.
//!
//! The id is the client's choice, unique among its calls; the server answers with the id of
//! the request, in any order (each request runs on its own task). Methods: `echo` returns its
//! params, `add` takes `[a, b]` and returns `a + b`, `slow` takes a number of milliseconds,
//! sleeps that long and returns it.
//!
//! The client ([`Client`]) keeps a map from id to the waiting call. Its dispatcher task reads
//! the node's messages and completes the call with the response's id (and peer); a call that
//! times out removes its entry, so its response, if it comes after all, is counted and dropped.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use glueberry::identity::ed25519;
use glueberry::{Config, Event, Filter, IncomingMessage, Messages, Multiaddr, Node, PeerId, State};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;

type Result<T, E = Box<dyn std::error::Error>> = std::result::Result<T, E>;

/// The stream of the calls.
const RPC: &str = "rpc";
/// Handshake message tags of the Go examples.
const HELLO: u8 = 1;
const PUBKEY: u8 = 2;
const COMPLETE: u8 = 3;
/// Requests a server handles at once; past it, it stops reading and its clients' sends wait.
const MAX_CONCURRENT_REQUESTS: usize = 256;

/// Request/response with ids, per-call timeouts and many concurrent calls over one stream.
#[derive(Parser)]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    /// Runs a client and a server in this process: many concurrent calls, then one that times
    /// out; exits.
    #[arg(long)]
    demo: bool,
    /// Concurrent calls of --demo.
    #[arg(long, default_value_t = 1000)]
    calls: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Answers calls from any number of clients until Ctrl-C.
    Serve {
        /// Address to listen on (port 0 picks a free one; /ip4/0.0.0.0/tcp/<port> for every
        /// interface).
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
        listen: Multiaddr,
    },
    /// Makes one call and prints its result as JSON.
    Call {
        /// The server's address, as it printed it (ending in /p2p/<peer id>).
        #[arg(long)]
        peer: Multiaddr,
        /// How long to wait for the answer, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// The method: echo, add or slow.
        method: String,
        /// Its parameters, as JSON: `'"hi"'` for echo, `'[2, 3]'` for add, `1500` for slow.
        #[arg(default_value = "null")]
        params: String,
    },
}

/// A call, client → server.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: u64,
    method: String,
    #[serde(default)]
    params: Value,
}

/// An answer, server → client: `result` or `error`.
#[derive(Debug, Serialize, Deserialize)]
struct Response {
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Why a call failed.
#[derive(Debug)]
enum CallError {
    /// No answer within the call's timeout.
    Timeout(Duration),
    /// The server answered with an error.
    Remote(String),
    /// The request could not be sent.
    Send(glueberry::Error),
    /// The client's node shut down.
    Closed,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout(t) => write!(f, "no answer within {t:?}"),
            CallError::Remote(e) => write!(f, "the server says: {e}"),
            CallError::Send(e) => write!(f, "cannot send the request: {e}"),
            CallError::Closed => f.write_str("the node shut down"),
        }
    }
}

impl std::error::Error for CallError {}

/// An RPC client on a node: [`call`](Client::call) from as many tasks as you like.
#[derive(Clone)]
struct Client {
    node: Node,
    shared: Arc<Shared>,
}

/// What the calls and the dispatcher share.
struct Shared {
    next_id: AtomicU64,
    /// The calls waiting for an answer: id → (the peer asked, where to deliver it).
    pending: Mutex<HashMap<u64, (PeerId, oneshot::Sender<Response>)>>,
    /// Responses that came for no waiting call (it timed out), counted.
    late: watch::Sender<u64>,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, (PeerId, oneshot::Sender<Response>)>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Client {
    /// A client on `node`. It starts the dispatcher, which reads `node.messages()` from now on
    /// (so the handshake must be over) until the node shuts down.
    fn new(node: Node) -> Self {
        let shared = Arc::new(Shared {
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            late: watch::Sender::new(0),
        });
        tokio::spawn(dispatch(node.messages(), shared.clone()));
        Client { node, shared }
    }

    /// Calls `method` on `peer` and waits at most `timeout` (sending included) for the answer.
    async fn call(
        &self,
        peer: PeerId,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared.pending().insert(id, (peer, tx));
        // However the call ends (answer, timeout, error, or the caller dropping it), its entry
        // goes: a response that comes later finds no one waiting.
        let _entry = Entry {
            shared: &self.shared,
            id,
        };
        let request = Request {
            id,
            method: method.to_owned(),
            params,
        };
        let request = serde_json::to_vec(&request).expect("JSON values always serialize");
        let exchange = async {
            self.node
                .send(peer, RPC, request)
                .await
                .map_err(CallError::Send)?;
            rx.await.map_err(|_| CallError::Closed)
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout(timeout))??;
        match response.error {
            Some(e) => Err(CallError::Remote(e)),
            None => Ok(response.result.unwrap_or(Value::Null)),
        }
    }

    /// The number of responses that came after their call had given up, as it changes.
    fn late_responses(&self) -> watch::Receiver<u64> {
        self.shared.late.subscribe()
    }
}

/// A call's entry in the pending map, removed when dropped.
struct Entry<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        self.shared.pending().remove(&self.id);
    }
}

/// The client's dispatcher: hands each response to the call waiting for it.
async fn dispatch(messages: Messages, shared: Arc<Shared>) {
    while let Ok(msg) = messages.recv().await {
        if &*msg.stream != RPC {
            eprintln!("rpc client: ignoring a message on {:?}", msg.stream);
            continue;
        }
        let response: Response = match serde_json::from_slice(&msg.data) {
            Ok(response) => response,
            Err(e) => {
                eprintln!("rpc client: ignoring a malformed response: {e}");
                continue;
            }
        };
        let id = response.id;
        let waiting = {
            let mut pending = shared.pending();
            match pending.get(&id) {
                Some((peer, _)) if *peer == msg.peer => pending.remove(&id),
                _ => None,
            }
        };
        // Fails when no call waits for it, or the call gave up just now.
        let delivered = waiting.is_some_and(|(_, tx)| tx.send(response).is_ok());
        if !delivered {
            shared.late.send_modify(|n| *n += 1);
            eprintln!(
                "rpc client: dropped a late response (call {id}, from {})",
                msg.peer
            );
        }
    }
}

/// The server: answers every request on the `rpc` stream, each on its own task, and (in the
/// two-process mode) the handshakes of the clients that connect. Runs until the node shuts
/// down.
async fn serve(node: Node) {
    let messages = node.messages();
    let limit = Arc::new(Semaphore::new(MAX_CONCURRENT_REQUESTS));
    while let Ok(msg) = messages.recv().await {
        match &*msg.stream {
            "handshake" => {
                if let Err(e) = answer_handshake(&node, &msg).await {
                    eprintln!("rpc server: handshake with {}: {e}", msg.peer);
                }
            }
            RPC => {
                let request: Request = match serde_json::from_slice(&msg.data) {
                    Ok(request) => request,
                    Err(e) => {
                        eprintln!("rpc server: ignoring a malformed request: {e}");
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let node = node.clone();
                tokio::spawn(async move {
                    let response = handle(request).await;
                    let response = serde_json::to_vec(&response).expect("JSON values serialize");
                    if let Err(e) = node.send(msg.peer, RPC, response).await {
                        eprintln!("rpc server: cannot answer {}: {e}", msg.peer);
                    }
                    drop(permit);
                });
            }
            other => eprintln!("rpc server: ignoring a message on {other:?}"),
        }
    }
}

/// Runs one request.
async fn handle(request: Request) -> Response {
    let result = match request.method.as_str() {
        "echo" => Ok(request.params),
        "add" => add(&request.params),
        "slow" => match request.params.as_u64() {
            Some(ms) if ms <= 60_000 => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(json!(ms))
            }
            _ => Err("slow takes a number of milliseconds, at most 60000".to_owned()),
        },
        other => Err(format!("unknown method {other:?}")),
    };
    let (result, error) = match result {
        Ok(value) => (Some(value), None),
        Err(e) => (None, Some(e)),
    };
    Response {
        id: request.id,
        result,
        error,
    }
}

/// `[a, b]` → `a + b`: integers stay integers.
fn add(params: &Value) -> Result<Value, String> {
    let usage = || "add takes two numbers: [a, b]".to_owned();
    let Some([a, b]) = params.as_array().map(Vec::as_slice) else {
        return Err(usage());
    };
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return a
            .checked_add(b)
            .map(Value::from)
            .ok_or_else(|| "overflow".to_owned());
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) => Ok(json!(a + b)),
        _ => Err(usage()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match args.command {
        None if args.demo => demo(args.calls).await,
        None => Err("give --demo, or a `serve` or `call` command (see --help)".into()),
        Some(Command::Serve { listen }) => serve_until_ctrl_c(listen).await,
        Some(Command::Call {
            peer,
            timeout_ms,
            method,
            params,
        }) => call_once(peer, &method, &params, Duration::from_millis(timeout_ms)).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A client and a server in this process: `calls` concurrent calls whose answers are checked,
/// then a slow call that times out, and its late answer.
async fn demo(calls: u64) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("glueberry-rpc-{}", std::process::id()));
    let client_node = make_node(&dir, "client", "/ip4/127.0.0.1/tcp/0")?;
    let server_node = make_node(&dir, "server", "/ip4/127.0.0.1/tcp/0")?;
    let result = async {
        client_node.start().await?;
        server_node.start().await?;
        pair(&client_node, &server_node).await?;
        tokio::spawn(serve(server_node.clone()));
        let client = Client::new(client_node.clone());
        let server = server_node.peer_id();

        // Many calls at once, every answer checked against its request.
        let started = Instant::now();
        let mut set = JoinSet::new();
        for i in 0..calls {
            let client = client.clone();
            set.spawn(async move {
                let (method, params, expected) = if i % 2 == 0 {
                    ("echo", json!({ "n": i }), json!({ "n": i }))
                } else {
                    ("add", json!([i, 1_000_000]), json!(i + 1_000_000))
                };
                let answer = client
                    .call(server, method, params, Duration::from_secs(10))
                    .await;
                (i, method, answer, expected)
            });
        }
        let mut ok = 0;
        while let Some(joined) = set.join_next().await {
            let (i, method, answer, expected) = joined?;
            match answer {
                Ok(value) if value == expected => ok += 1,
                other => {
                    return Err(
                        format!("call {i} ({method}): want {expected}, got {other:?}").into(),
                    );
                }
            }
        }
        println!(
            "{ok} concurrent calls answered in {} ms",
            started.elapsed().as_millis()
        );

        // A call slower than its timeout; its answer comes later and is dropped.
        let mut late = client.late_responses();
        let timed_out = match client
            .call(server, "slow", json!(500), Duration::from_millis(100))
            .await
        {
            Err(e @ CallError::Timeout(_)) => {
                println!("slow(500 ms) with a 100 ms timeout: {e}");
                1
            }
            other => return Err(format!("slow call: want a timeout, got {other:?}").into()),
        };
        tokio::time::timeout(Duration::from_secs(10), late.wait_for(|n| *n >= 1)).await??;
        println!("late responses dropped: {}", *late.borrow());
        println!("demo: {ok} calls ok, {timed_out} timed out");
        Ok(())
    }
    .await;
    client_node.shutdown().await;
    server_node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Listens and answers calls until Ctrl-C.
async fn serve_until_ctrl_c(listen: Multiaddr) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("glueberry-rpc-{}", std::process::id()));
    let node = make_node(&dir, "server", &listen.to_string())?;
    let result = async {
        for addr in node.start().await? {
            println!("listening on {addr}/p2p/{}", node.peer_id());
        }
        println!("Ctrl-C to stop");
        tokio::select! {
            () = serve(node.clone()) => {}
            r = tokio::signal::ctrl_c() => r?,
        }
        Ok(())
    }
    .await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Dials the server at `addr`, makes one call and prints the result.
async fn call_once(addr: Multiaddr, method: &str, params: &str, timeout: Duration) -> Result<()> {
    let params: Value = serde_json::from_str(params).map_err(|e| format!("params: {e}"))?;
    let (peer, addr) = split_peer_id(addr)?;
    let dir = std::env::temp_dir().join(format!("glueberry-rpc-{}", std::process::id()));
    let node = make_node(&dir, "client", "/ip4/0.0.0.0/tcp/0")?;
    let result = async {
        node.start().await?;
        node.add_peer(peer, vec![addr], HashMap::new()).await?;
        node.connect(peer).await?;
        tokio::time::timeout(Duration::from_secs(30), handshake(&node, peer))
            .await
            .map_err(|_| "the handshake did not finish within 30 s")??;
        let client = Client::new(node.clone());
        let result = client.call(peer, method, params, timeout).await?;
        println!("{result}");
        Ok(())
    }
    .await;
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The dialler's side of the byte-tag handshake of the Go examples (1 Hello, 2 PubKey +
/// 32-byte key, 3 Complete): speaks first, returns once the peer is Established.
async fn handshake(node: &Node, peer: PeerId) -> Result<()> {
    let messages = node.messages();
    node.send(peer, "handshake", vec![HELLO]).await?;
    loop {
        let msg = messages.recv().await?;
        if msg.peer != peer || &*msg.stream != "handshake" {
            eprintln!(
                "ignoring a message on {:?} during the handshake",
                msg.stream
            );
            continue;
        }
        match msg.data.first() {
            Some(&HELLO) => {
                let mut pubkey = vec![PUBKEY];
                pubkey.extend_from_slice(&node.public_key());
                node.send(peer, "handshake", pubkey).await?;
            }
            Some(&PUBKEY) => {
                node.prepare_streams(peer, &msg.data[1..], &[RPC]).await?;
                node.send(peer, "handshake", vec![COMPLETE]).await?;
            }
            Some(&COMPLETE) => return Ok(node.finalize_handshake(peer).await?),
            _ => eprintln!("ignoring an unknown handshake message"),
        }
    }
}

/// The listener's side of the handshake, one message at a time. It only answers, so it needs
/// no state: the server runs it for any number of clients at once.
async fn answer_handshake(node: &Node, msg: &IncomingMessage) -> Result<()> {
    let peer = msg.peer;
    match msg.data.first() {
        Some(&HELLO) => {
            node.send(peer, "handshake", vec![HELLO]).await?;
            let mut pubkey = vec![PUBKEY];
            pubkey.extend_from_slice(&node.public_key());
            node.send(peer, "handshake", pubkey).await?;
        }
        Some(&PUBKEY) => {
            node.prepare_streams(peer, &msg.data[1..], &[RPC]).await?;
            node.send(peer, "handshake", vec![COMPLETE]).await?;
        }
        Some(&COMPLETE) => {
            node.finalize_handshake(peer).await?;
            println!("client {peer} connected");
        }
        _ => return Err("unknown handshake message".into()),
    }
    Ok(())
}

/// Connects `a` to `b` and completes the handshake on both (both keys are known here).
async fn pair(a: &Node, b: &Node) -> Result<()> {
    let mut events = b.subscribe_filtered(Filter::all().peers([a.peer_id()]));
    a.add_peer(b.peer_id(), b.listen_addrs(), HashMap::new())
        .await?;
    a.connect(b.peer_id()).await?;
    // `connect` returns when `a` is connected; `b` sees the connection a moment later.
    while !matches!(
        events.recv().await?,
        Event::Connection(e) if e.state == State::Connected
    ) {}
    let (x, y) = tokio::join!(
        a.complete_handshake(b.peer_id(), b.public_key(), &[RPC]),
        b.complete_handshake(a.peer_id(), a.public_key(), &[RPC]),
    );
    x?;
    y?;
    Ok(())
}

fn make_node(dir: &std::path::Path, name: &str, listen: &str) -> Result<Node> {
    let config = Config::new(
        ed25519::Keypair::generate(),
        dir.join(format!("{name}.json")),
        vec![listen.parse()?],
    );
    Ok(Node::new(config)?)
}

/// Splits `/ip4/…/tcp/…/p2p/<id>` into the peer id and the address to dial.
fn split_peer_id(mut addr: Multiaddr) -> Result<(PeerId, Multiaddr)> {
    let last = addr.pop().map(|p| p.to_string()).unwrap_or_default();
    let id = last
        .strip_prefix("/p2p/")
        .ok_or("the address must end in /p2p/<peer id>")?;
    Ok((id.parse()?, addr))
}
