//! Runs the validators example's demo and checks what it prints; and that its data directory
//! keeps no lock file after a clean exit.

mod common;

use common::run;

#[test]
fn validators_demo_connects_restarts_and_rejects_another_chain() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (out, _) = run("validators", &["--demo", "--data-dir", data]);
    for line in [
        "4 validators connected, every one has every vote",
        "validator 3 stopped and restarted: reconnected, votes flow again",
    ] {
        assert!(out.contains(line), "{line:?} missing from\n{out}");
    }
    // Whichever checks the chain id first rejects the other.
    assert!(
        out.contains(
            "validator 0 rejected the intruder: rejected: the peer says \"other-chain\", we say \"demo-chain-1\""
        ) || out.contains(
            "the intruder rejected validator 0: rejected: the peer says \"demo-chain-1\", we say \"other-chain\""
        ),
        "no rejection in\n{out}"
    );
    assert_eq!(
        out.lines().last().unwrap_or_default(),
        "demo: 4 validators, 1 restarted, 1 rejected",
        "{out}"
    );
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.ends_with(".lock")), "{files:?}");
    assert!(files.contains(&"0.json".to_owned()), "{files:?}");
}

#[test]
fn validators_refuses_unknown_flags_and_documents_every_option() {
    let out = std::process::Command::new(common::example("validators"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let (help, _) = run("validators", &["--help"]);
    for option in [
        "--index",
        "--chain-id",
        "--port",
        "--listen",
        "--data-dir",
        "--demo",
    ] {
        assert!(help.contains(option), "{option} missing from\n{help}");
    }
}
