//! Runs the blockchain example's demo and checks what it prints.

mod common;

use common::run;

#[test]
fn blockchain_demo_refuses_the_other_chain_and_syncs_the_rest() {
    let (out, _) = run("blockchain", &["--demo"]);
    assert!(
        out.lines()
            .any(|l| l.contains("refused ") && l.ends_with(": chain id mismatch")),
        "{out}"
    );
    assert!(out.contains("[alice] committed block 8 (3 txs)"), "{out}");
    assert!(out.contains("[bob] committed block 8 (3 txs)"), "{out}");
    let summary = out.lines().last().unwrap_or_default();
    assert_eq!(
        summary, "demo: 3 nodes established, 1 refused, 16 blocks, 30 txs processed by 4 workers",
        "{out}"
    );
}

#[test]
fn blockchain_demo_with_other_sizes() {
    let (out, _) = run("blockchain", &["--demo", "--blocks", "2", "--workers", "2"]);
    let summary = out.lines().last().unwrap_or_default();
    assert_eq!(
        summary, "demo: 3 nodes established, 1 refused, 10 blocks, 12 txs processed by 2 workers",
        "{out}"
    );
}

#[test]
fn blockchain_help_documents_every_option() {
    let (help, _) = run("blockchain", &["--help"]);
    for option in [
        "--demo",
        "--listen",
        "--peer",
        "--chain-id",
        "--genesis",
        "--protocol-version",
        "--propose",
        "--block-ms",
        "--blocks",
        "--workers",
    ] {
        assert!(help.contains(option), "{option} missing from\n{help}");
    }
}
