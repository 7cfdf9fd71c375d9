//! Runs the quickstart and metrics examples in their non-interactive modes and checks what they
//! print, so that they never rot. `cargo test` builds the examples of this package first.

mod common;

use common::run;

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
    for flag in ["Usage", "--quic", "--listen"] {
        assert!(help.contains(flag), "{flag} missing from\n{help}");
    }
    // Unknown flags are refused, not ignored.
    let out = std::process::Command::new(common::example("quickstart"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
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
