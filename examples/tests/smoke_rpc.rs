//! Runs the rpc example: the one-process demo (many concurrent calls, one timeout, its late
//! answer dropped) and the two-process mode, checking what they print.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, read_lines, run, wait};

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
        .args(["serve", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let lines = read_lines(&mut server);
    let _server = KillOnDrop(Some(server));
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
