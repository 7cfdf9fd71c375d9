//! Runs the rpc example: the one-process demo (many concurrent calls, one timeout, its late
//! answer dropped) and the two-process mode, checking what they print.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::run;

#[test]
fn demo_calls_time_out_and_drop_late_answers() {
    let (out, output) = run("rpc", &["--demo"]);
    assert!(out.contains("1000 concurrent calls answered in "), "{out}");
    assert!(out.contains("late responses dropped: 1"), "{out}");
    assert_eq!(
        out.lines().last(),
        Some("demo: 1000 calls ok, 1 timed out"),
        "{out}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rpc client: dropped a late response (call 1001, "),
        "{stderr}"
    );
}

#[test]
fn two_processes() {
    let mut server = Command::new(common::example("rpc"))
        .args(["serve", "--listen", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let lines = read_lines(&mut server);
    let _server = KillOnDrop(server);
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the server prints its address");
        if let Some(addr) = line.strip_prefix("listening on ")
            && addr.starts_with("/ip4/127.0.0.1/")
        {
            break addr.to_owned();
        }
    };

    let (out, _) = run("rpc", &["call", "--peer", &addr, "add", "[2, 3]"]);
    assert_eq!(out.trim(), "5");
    let (out, _) = run(
        "rpc",
        &["call", "--peer", &addr, "echo", r#"{"a":[1,"x"]}"#],
    );
    assert_eq!(out.trim(), r#"{"a":[1,"x"]}"#);

    let failed = wait(
        Command::new(common::example("rpc"))
            .args(["call", "--peer", &addr, "nope"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client"),
    );
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(r#"error: the server says: unknown method "nope""#),
        "{stderr}"
    );
}

#[test]
fn help() {
    let (help, _) = run("rpc", &["--help"]);
    for word in ["--demo", "--calls", "serve", "call"] {
        assert!(help.contains(word), "{word} missing: {help}");
    }
    let (help, _) = run("rpc", &["call", "--help"]);
    for word in ["--peer", "--timeout-ms", "<METHOD>", "[PARAMS]"] {
        assert!(help.contains(word), "{word} missing: {help}");
    }
}

/// The child's stdout, line by line, read on a thread of its own.
fn read_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the child to exit, killing it and failing if it takes more than a minute.
fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Kills the child (a server that runs until Ctrl-C) when the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
