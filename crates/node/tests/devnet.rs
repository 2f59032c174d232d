//! The README's run command, shortened: `branchd devnet` starts four validators as separate
//! processes, loads the sample data through the first node's API, prints the leaderboards
//! from another node's, and stops every node cleanly.

use std::process::Command;

#[test]
fn devnet_commits_sample_data_and_prints_leaderboards() {
    let home = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args([
            "devnet",
            "--members-per-branch",
            "6",
            "--months",
            "2",
            "--block-records",
            "50",
            "--exit",
            "--home",
        ])
        .arg(home.path())
        .output()
        .expect("run branchd devnet");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "devnet failed:\n{stdout}\n{stderr}"
    );
    // Every sample record passes the state rules, and several blocks were made.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("devnet: committed"))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    assert!(
        summary.ends_with("0 refused by the state rules"),
        "{summary}"
    );
    let blocks: u64 = summary
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no block count in {summary}"));
    assert!(blocks >= 3, "{summary}");
    assert!(
        stdout.contains("devnet: every node stopped cleanly"),
        "{stdout}"
    );
    for heading in [
        "Study leaderboard",
        "Dues for",
        "Meeting compliance",
        "Issue pool",
    ] {
        assert!(stdout.contains(heading), "missing {heading}:\n{stdout}");
    }
    for branch in ["branch-north", "branch-south", "branch-east", "branch-west"] {
        assert!(
            stdout.matches(branch).count() >= 4,
            "{branch} missing from a table:\n{stdout}"
        );
    }
    // The chain is on disk where it was asked to be, and an auditor holding only the
    // genesis file verifies it.
    let store = home.path().join("net/node0/data/store");
    let genesis = home.path().join("net/node0/config/genesis.json");
    let audit = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args(["audit", "verify", "--json", "--genesis"])
        .arg(&genesis)
        .arg("--data-dir")
        .arg(&store)
        .output()
        .expect("run branchd audit verify");
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.status.success(), "audit failed: {report}");
    assert!(report.contains("\"ok\":true"), "{report}");
    assert!(report.contains(&format!("\"blocks\":{blocks}")), "{report}");
    // Export, verify the export; prove one record and check the proof offline.
    let export = home.path().join("chain.export");
    let status = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args(["export", "--genesis"])
        .arg(&genesis)
        .arg("--data-dir")
        .arg(&store)
        .arg("--out")
        .arg(&export)
        .status()
        .expect("run branchd export");
    assert!(status.success());
    let verified = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args(["audit", "verify", "--genesis"])
        .arg(&genesis)
        .arg("--export")
        .arg(&export)
        .output()
        .expect("run branchd audit verify --export");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("state digests replayed"));
    let bytes = std::fs::read(&export).expect("export file");
    std::fs::write(&export, &bytes[..bytes.len() - 10]).expect("truncate");
    let truncated = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args(["audit", "verify", "--genesis"])
        .arg(&genesis)
        .arg("--export")
        .arg(&export)
        .output()
        .expect("run branchd audit verify --export");
    assert_eq!(truncated.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&truncated.stderr).contains("truncated"));

    // Any other genesis (another chain's keys) fails the audit, with a non-zero exit.
    let other = tempfile::tempdir().expect("temp dir");
    let generated = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args([
            "testnet",
            "--validators",
            "1",
            "--branches",
            "4",
            "--chain-id",
            "branchledger-devnet",
            "--out",
        ])
        .arg(other.path().join("net"))
        .output()
        .expect("run branchd testnet");
    assert!(generated.status.success());
    let audit = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args(["audit", "verify", "--json", "--genesis"])
        .arg(other.path().join("net/node0/config/genesis.json"))
        .arg("--data-dir")
        .arg(&store)
        .output()
        .expect("run branchd audit verify");
    assert_eq!(audit.status.code(), Some(1));
    let report = String::from_utf8_lossy(&audit.stdout);
    assert!(
        report.contains("\"ok\":false") && report.contains("\"height\":1"),
        "{report}"
    );
}

#[test]
fn devnet_refuses_bad_arguments_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_branchd"))
        .args(["devnet", "--branches", "0"])
        .output()
        .expect("run branchd devnet");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--branches must be in 4..=8"));
}
