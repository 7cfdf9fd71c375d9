//! Runs the cluster example's demo and checks what it prints.

mod common;

use common::run;

#[test]
fn cluster_demo_meshes_churns_and_delivers_every_broadcast() {
    let (out, _) = run("cluster", &["--demo"]);
    for line in [
        "mesh full: 5 nodes, each established with 4 peers",
        "round 1: 20 broadcasts delivered",
        "node-1 left",
        "node-5 joined",
        "mesh full again: 5 nodes",
        "round 2: 20 broadcasts delivered",
        "node-0: 4 peers, sent 8, received 8",
        "node-5: 4 peers, sent 4, received 4",
        "node-1 (left): 0 peers, sent 4, received 4",
    ] {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }
    let summary = out.lines().last().unwrap_or_default();
    assert_eq!(
        summary, "demo: 5 nodes, full mesh, 1 left, 1 joined, all broadcasts delivered",
        "{out}"
    );
}

#[test]
fn cluster_demo_with_three_nodes() {
    let (out, _) = run("cluster", &["--demo", "--nodes", "3"]);
    assert!(out.contains("round 2: 6 broadcasts delivered"), "{out}");
    let summary = out.lines().last().unwrap_or_default();
    assert_eq!(
        summary, "demo: 3 nodes, full mesh, 1 left, 1 joined, all broadcasts delivered",
        "{out}"
    );
}

#[test]
fn cluster_help_documents_every_option() {
    let (help, _) = run("cluster", &["--help"]);
    for option in ["--nodes", "--demo", "--interval-ms", "--churn", "--timeout"] {
        assert!(help.contains(option), "{option} missing from\n{help}");
    }
}
