//! Runs the chat example: its `--demo`, its `--help`, and two real chat processes talking
//! over TCP in `--script` mode. `cargo build --example chat` (or `cargo test`) builds it.

mod common;
use common::run;

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[test]
fn demo_exchanges_four_lines() {
    let (out, _) = run("chat", &["--demo"]);
    for line in [
        "[alice] * bob Established",
        "[bob] alice: hi bob, alice here",
        "[bob] alice: how is the weather?",
        "[alice] bob: hello alice!",
        "[alice] bob: sunny, thanks",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let last = out.lines().last().unwrap_or_default();
    assert_eq!(last, "demo: 4 messages exchanged", "{out}");
}

#[test]
fn help_documents_every_flag() {
    let (help, _) = run("chat", &["--help"]);
    for flag in [
        "--listen",
        "0.0.0.0",
        "--data-dir",
        "--peer",
        "--name",
        "--identity",
        "--book",
        "--demo",
        "--script",
    ] {
        assert!(help.contains(flag), "missing {flag} in:\n{help}");
    }
}

/// Alice listens and answers; bob dials the address alice prints, says two lines, waits for
/// alice's two, and leaves; alice leaves when bob has gone.
#[test]
fn two_processes_chat_over_tcp() {
    let dir = std::env::temp_dir().join(format!("glueberry-chat-smoke-{}", std::process::id()));
    let key = |name: &str| dir.join(format!("{name}.key")).display().to_string();

    let (alice_key, bob_key) = (key("alice"), key("bob"));
    let mut alice = Proc::spawn(
        &[
            "--name",
            "alice",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--identity",
            &alice_key,
            "--script",
            "--reply",
            "--expect",
            "2",
        ],
        "hi bob\nsee you\n",
    );
    let line = alice.wait_for_line("address: /ip4/127.0.0.1/");
    let addr = line.trim_start_matches("address: ").to_owned();
    let bob = Proc::spawn(
        &[
            "--name",
            "bob",
            "--peer",
            &addr,
            "--identity",
            &bob_key,
            "--script",
            "--expect",
            "2",
        ],
        "hello alice\nbye alice\n",
    );

    let bob_out = bob.finish();
    let alice_out = alice.finish();
    for line in ["alice: hi bob", "alice: see you", "* alice Established"] {
        assert!(bob_out.contains(line), "bob lacks {line:?}:\n{bob_out}");
    }
    for line in ["bob: hello alice", "bob: bye alice", "* bob Disconnected"] {
        assert!(
            alice_out.contains(line),
            "alice lacks {line:?}:\n{alice_out}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A chat process with its stdout read line by line on a thread. Killed if dropped unfinished.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(args: &[&str], stdin: &str) -> Self {
        let mut child = Command::new(common::example("chat"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chat");
        // Write the script and close stdin: the process reads it to the end first.
        let mut input = child.stdin.take().expect("stdin");
        input.write_all(stdin.as_bytes()).expect("write stdin");
        drop(input);
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most a minute) for a stdout line starting with `prefix`.
    fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => panic!("no line {prefix:?} ({e}); got:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Waits (at most a minute) for the process to end with success; returns its stdout.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        // Its stdout closes when it exits.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("chat did not finish:\n{}", self.seen.join("\n"))
                }
            }
        }
        let status = self.child.wait().expect("wait");
        let out = self.seen.join("\n");
        assert!(status.success(), "chat failed: {status}\n{out}");
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
