//! Runs every example in its non-interactive mode and checks what it prints, so that no
//! example rots. `cargo test` builds the examples of this package before running this.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The built example `name`, next to this test binary (`target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run `cargo test -p glueberry-examples`",
        path.display()
    );
    path
}

/// Runs the example with `args`, failing the test if it runs for more than a minute.
fn run(name: &str, args: &[&str]) -> (String, Output) {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the example");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} {args:?} did not finish within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (stdout, out)
}

#[test]
fn quickstart_over_tcp_and_quic() {
    for (args, transport) in [(&[][..], "TCP"), (&["--quic"][..], "QUIC")] {
        let (out, _) = run("quickstart", args);
        assert!(out.contains("-> Established"), "{out}");
        assert!(
            out.contains("[alice] got on blocks: block 2 from bob"),
            "{out}"
        );
        let summary = out.lines().last().unwrap_or_default();
        assert!(
            summary.starts_with(&format!(
                "summary: {transport} handshake, 2 streams, 6 encrypted messages"
            )),
            "{summary}"
        );
    }
    let (help, _) = run("quickstart", &["--help"]);
    assert!(help.contains("usage"), "{help}");
}

#[test]
fn metrics_serves_prometheus_health_and_debug() {
    let (out, _) = run("metrics", &["--once", "--port", "0", "--messages", "20"]);
    assert!(
        out.contains("glueberry_messages_received_total{stream=\"data\"} 20"),
        "{out}"
    );
    assert!(
        out.contains("glueberry_handshake_results_total{result=\"success\"} 2"),
        "{out}"
    );
    assert!(
        out.contains("libp2p_swarm_connections_established"),
        "{out}"
    );
    assert!(out.contains("\"ready\":true"), "{out}");
    assert!(
        out.contains("debug: 1 peer(s), 20 received on data"),
        "{out}"
    );
    let (help, _) = run("metrics", &["--help"]);
    assert!(help.contains("--once"), "{help}");
}
