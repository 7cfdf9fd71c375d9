//! Runs the file_transfer example: the one-process demo, the demo whose receiver drops out
//! midway, and the two-process mode, checking what they print and how they exit.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{KillOnDrop, read_lines, run, wait};

#[test]
fn demo_sends_and_verifies() {
    let (out, _) = run("file_transfer", &["--demo", "--size", "4"]);
    let last = out.lines().last().unwrap_or_default();
    let hash = last
        .strip_prefix("verified: 4194304 bytes, sha256 ")
        .unwrap_or_else(|| panic!("unexpected last line: {out}"));
    assert_eq!(hash.len(), 64, "{last}");
    assert!(
        out.contains(&format!(
            "sent: 4194304 bytes, the receiver verified sha256 {hash}"
        )),
        "{out}"
    );
}

#[test]
fn sender_reports_a_receiver_that_went_away() {
    let child = Command::new(common::example("file_transfer"))
        .args(["--demo", "--size", "8", "--drop-after", "10"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn file_transfer");
    let out = wait(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("receiver: shutting down after 10 chunks"),
        "{stdout}"
    );
    assert!(stderr.contains("error: peer went away: "), "{stderr}");
    assert!(!stdout.contains("verified"), "{stdout}");
}

#[test]
fn two_processes() {
    let dir = std::env::temp_dir().join(format!("glueberry-smoke-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (source, copy) = (dir.join("source.bin"), dir.join("copy.bin"));
    let content: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &content).expect("write the source file");

    let mut receiver = Command::new(common::example("file_transfer"))
        .args(["receive", "--listen", "/ip4/127.0.0.1/tcp/0", "--out"])
        .arg(&copy)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the receiver");
    let lines = read_lines(&mut receiver);
    let receiver = KillOnDrop(Some(receiver));
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the receiver prints its address");
        if let Some(addr) = line.strip_prefix("listening on ")
            && addr.starts_with("/ip4/127.0.0.1/")
        {
            break addr.to_owned();
        }
    };

    let (sent, _) = run(
        "file_transfer",
        &[
            "send",
            "--peer",
            &addr,
            source.to_str().expect("utf-8 temp path"),
        ],
    );
    assert!(
        sent.contains("sent: 1000000 bytes, the receiver verified sha256 "),
        "{sent}"
    );
    let out = wait(receiver.take());
    let received: Vec<String> = lines.iter().collect(); // until its stdout closes
    assert!(out.status.success(), "{received:?}\n{out:?}");
    assert!(
        received
            .iter()
            .any(|l| l.starts_with("verified: 1000000 bytes, sha256 ")),
        "{received:?}"
    );
    assert_eq!(std::fs::read(&copy).expect("the copy"), content);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help() {
    let (help, _) = run("file_transfer", &["--help"]);
    for word in [
        "--demo",
        "--size",
        "--drop-after",
        "--quiet",
        "receive",
        "send",
    ] {
        assert!(help.contains(word), "{word} missing: {help}");
    }
}
