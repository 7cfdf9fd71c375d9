//! `compare --two-process` with tiny sizes: every scenario runs with its peers in a second
//! process and fills its row (this checks the harness, not the speed).

use std::process::Command;

#[test]
fn two_process_run_fills_every_row() {
    let out = Command::new(env!("CARGO_BIN_EXE_compare"))
        .args([
            "--two-process",
            "--bulk-mib",
            "1",
            "--small",
            "500",
            "--rtt",
            "20",
            "--peers",
            "1,3",
            "--events",
            "200",
            "--subscribers",
            "4",
        ])
        .output()
        .expect("run compare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    // Header, then bulk, small, ceiling, allocations, p50, p99, 2 × (time, memory), events.
    assert_eq!(rows.len(), 1 + 4 + 2 + 4 + 1, "{stdout}");
    for row in &rows[1..7] {
        assert!(!row.contains('–'), "a figure is missing: {row}");
    }
    for row in &rows[7..11] {
        // No raw TCP column there; every other figure is present.
        assert_eq!(row.matches('–').count(), 1, "a figure is missing: {row}");
    }
}
