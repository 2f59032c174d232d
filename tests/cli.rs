//! The command line against a real node: `init`, `keys`, `status`, `submit`, `import` (a CSV
//! with good and bad rows, every row accounted for) and `query`, as tables and as JSON; and
//! `audit verify` of a generated chain and its exports, against an expected tip.

mod support;

use std::process::Output;

use support::{branchd, fast_timeouts, Cluster};

const TOKEN: &str = "cli-token";

fn run(args: &[&str], api: &str, token: Option<&str>) -> Output {
    let mut command = branchd();
    command
        .args(args)
        .env("BRANCHD_API", api)
        .env_remove("BRANCHD_TOKEN");
    if let Some(token) = token {
        command.env("BRANCHD_TOKEN", token);
    }
    command.output().expect("run branchd")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn init_and_keys_make_homes_and_show_identities() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path().join("home");
    let home_arg = home.to_str().expect("utf-8");
    let output = run(&["init", "--home", home_arg, "--name", "north-1"], "", None);
    assert!(output.status.success(), "{}", stderr(&output));
    let keys: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json");
    for field in ["node_key", "consensus_key", "branch_key", "peer_id"] {
        assert!(keys[field].is_string(), "{field} missing: {keys}");
    }
    let again = run(&["init", "--home", home_arg], "", None);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    let shown = run(
        &[
            "keys",
            "show",
            "--role",
            "node",
            home.join("config/node_key.json").to_str().expect("utf-8"),
        ],
        "",
        None,
    );
    assert!(shown.status.success());
    assert!(stdout(&shown).contains(keys["peer_id"].as_str().expect("peer id")));
    let wrong_role = run(
        &[
            "keys",
            "show",
            "--role",
            "branch",
            home.join("config/node_key.json").to_str().expect("utf-8"),
        ],
        "",
        None,
    );
    assert!(
        !wrong_role.status.success(),
        "a node key read as a branch key"
    );
}

#[test]
fn submit_import_and_query_through_the_command_line() {
    let mut cluster = Cluster::new(1, fast_timeouts);
    cluster.edit_config(0, |config| config["api"]["token"] = TOKEN.into());
    cluster.start(0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(cluster.wait_connected());
    let api = format!("http://{}", cluster.nodes[0].api);
    let branch = cluster.branch_of(0);

    let status = run(&["status", "--json"], &api, None);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_str(&stdout(&status)).expect("json");
    assert_eq!(status["height"], 0);

    let join = [
        "submit",
        "member_joined",
        "--member-id",
        "m-1",
        "--joined-on",
        "2026-01-05",
        "--status",
        "full",
    ];
    let refused = run(&join, &api, None);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("Unauthenticated"),
        "{}",
        stderr(&refused)
    );
    let joined = run(&join, &api, Some(TOKEN));
    assert!(joined.status.success(), "{}", stderr(&joined));
    assert!(
        stdout(&joined).contains("committed at height 1"),
        "{}",
        stdout(&joined)
    );
    let bad = run(
        &[
            "submit",
            "study_session",
            "--member-id",
            "m-1",
            "--material",
            "Handbook",
            "--minutes",
            "0",
            "--form",
            "group",
            "--occurred-on",
            "2026-02-01",
        ],
        &api,
        Some(TOKEN),
    );
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("body.study_session.minutes"),
        "{}",
        stderr(&bad)
    );

    // A CSV with good rows, a row that depends on an earlier one, and bad rows.
    let csv = cluster.dir.path().join("records.csv");
    std::fs::write(
        &csv,
        "kind,member_id,joined_on,status,material,minutes,form,occurred_on,period,amount_minor\n\
         member_joined,m-2,2026-01-06,probationary,,,,,,\n\
         study_session,m-2,,,Handbook chapter 1,45,self,2026-02-03,,\n\
         study_session,m-2,,,Handbook chapter 2,0,self,2026-02-04,,\n\
         study_session,m-404,,,Handbook chapter 2,30,self,2026-02-04,,\n\
         dues_paid,m-2,,,,,,,2026-02,2000\n\
         party,m-2,,,,,,,,\n",
    )
    .expect("write csv");
    let imported = run(
        &["import", csv.to_str().expect("utf-8"), "--json"],
        &api,
        Some(TOKEN),
    );
    assert_eq!(
        imported.status.code(),
        Some(1),
        "rejected rows make a non-zero exit"
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout(&imported)).expect("json");
    assert_eq!(summary["rows"], 6);
    assert_eq!(summary["accepted"], 3);
    assert_eq!(summary["committed"], 3);
    let rejected: Vec<(u64, String)> = summary["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect();
    assert_eq!(rejected.len(), 3, "{rejected:?}");
    assert_eq!(rejected[0].0, 4);
    assert!(rejected[0].1.contains("minutes"), "{rejected:?}");
    assert_eq!(rejected[1].0, 5);
    assert!(rejected[1].1.contains("m-404"), "{rejected:?}");
    assert_eq!(rejected[2].0, 7);
    assert!(rejected[2].1.contains("party"), "{rejected:?}");

    // The same file again: the journal beside it sends the same records, which the node
    // knows; nothing is added twice (the study totals below count the session once).
    assert!(cluster.dir.path().join("records.csv.journal").exists());
    let again = run(
        &["import", csv.to_str().expect("utf-8"), "--json"],
        &api,
        Some(TOKEN),
    );
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&again)).expect("json");
    assert_eq!(summary["rows"], 6, "{summary}");
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(summary["already"], 3, "{summary}");
    assert_eq!(summary["committed"], 3, "{summary}");
    assert_eq!(
        summary["rejected"].as_array().map(Vec::len),
        Some(3),
        "{summary}"
    );

    // Queries, as JSON and as tables.
    let board = run(
        &["query", "leaderboard", "--from", "2026-02", "--json"],
        &api,
        None,
    );
    assert!(board.status.success(), "{}", stderr(&board));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&board)).expect("json");
    assert_eq!(rows[0]["branch_id"], branch.as_str());
    assert_eq!(rows[0]["minutes"], 45);
    let study = run(
        &[
            "query", "study", "--member", "m-2", "--from", "2026-02", "--json",
        ],
        &api,
        None,
    );
    let study: serde_json::Value = serde_json::from_str(&stdout(&study)).expect("json");
    assert_eq!(study["total_minutes"], 45);
    let history = run(&["query", "history", "m-2"], &api, None);
    assert!(history.status.success());
    let table = stdout(&history);
    for kind in ["member_joined", "study_session", "dues_paid"] {
        assert!(table.contains(kind), "{table}");
    }
    let dues = run(
        &[
            "query",
            "dues",
            "--from",
            "2026-02",
            "--branch",
            &branch,
            "--per-member",
        ],
        &api,
        None,
    );
    assert!(stdout(&dues).contains("20.00"), "{}", stdout(&dues));
    let missing = run(
        &["query", "study", "--member", "m-404", "--json"],
        &api,
        None,
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("NotFound"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn a_failure_is_its_message_and_causes_never_a_backtrace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-genesis.json");
    for backtrace in ["0", "1", "full"] {
        let output = branchd()
            .args(["audit", "verify", "--genesis"])
            .arg(&missing)
            .arg("--data-dir")
            .arg(dir.path())
            .env("RUST_BACKTRACE", backtrace)
            .env("RUST_LIB_BACKTRACE", backtrace)
            .output()
            .expect("run branchd");
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(
            text.starts_with("Error: "),
            "RUST_BACKTRACE={backtrace}: {text}"
        );
        assert!(
            text.contains("no-such-genesis.json"),
            "RUST_BACKTRACE={backtrace}: the message names the file: {text}"
        );
        assert!(
            !text.contains("backtrace") && !text.contains("rust_begin_unwind"),
            "RUST_BACKTRACE={backtrace}: {text}"
        );
    }
}

/// `audit verify` names the tip it verified (a store rolled back to an earlier height would
/// show a lower one), checks it against `--expect-tip` naming both tips when they differ, and
/// refuses an empty store unless `--allow-empty`; `audit verify --export` names the export's
/// last block and checks it the same way, so an export cut short is caught.
#[test]
fn audit_verify_names_the_tip_and_checks_the_expected_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let generated = branchd()
        .args([
            "bench",
            "gen-chain",
            "--records",
            "1200",
            "--block-records",
            "300",
            "--out",
        ])
        .arg(dir.path().join("chain"))
        .output()
        .expect("run branchd bench gen-chain");
    assert!(generated.status.success(), "{}", stderr(&generated));
    let home = dir.path().join("chain/net/node0");
    let genesis = home.join("config/genesis.json");
    let store = home.join("data/store");
    let verify = |extra: &[&str]| {
        let mut command = branchd();
        command
            .args(["audit", "verify", "--genesis"])
            .arg(&genesis)
            .arg("--data-dir")
            .arg(&store)
            .args(extra);
        command.output().expect("run branchd audit verify")
    };

    let json = verify(&["--json"]);
    assert!(json.status.success(), "{}", stdout(&json));
    let report: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    let height = report["report"]["tip_height"].as_u64().expect("tip height");
    let id = report["report"]["tip_block_id"]
        .as_str()
        .expect("tip id")
        .to_owned();
    assert_eq!(height, 4, "{report}");
    let tip = format!("{height}:{id}");

    // The human summary names the tip, and says what a pass without an expected tip shows.
    let plain = verify(&[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let text = stdout(&plain);
    assert!(
        text.contains(&format!("tip height {height} block {id}")),
        "{text}"
    );
    assert!(text.contains("finalised prefix"), "{text}");

    let expected = verify(&["--expect-tip", &tip]);
    assert!(expected.status.success(), "{}", stderr(&expected));
    assert!(stdout(&expected).contains(&format!("the tip is the expected tip {tip}")));

    // Export blocks 1..=3: its last block is the tip of a chain rolled back to height 3.
    let export = dir.path().join("chain.export");
    let exported = branchd()
        .args(["export", "--to", "3", "--genesis"])
        .arg(&genesis)
        .arg("--data-dir")
        .arg(&store)
        .arg("--out")
        .arg(&export)
        .output()
        .expect("run branchd export");
    assert!(exported.status.success(), "{}", stderr(&exported));
    let short_tip = stderr(&exported)
        .split("last block ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no last block in {}", stderr(&exported)))
        .to_owned();
    assert!(short_tip.starts_with("3:"), "{short_tip}");

    // A tip expected elsewhere: higher, another block, lower (the chain goes on past it).
    let zero = format!("{height}:{}", "0".repeat(64));
    let higher = format!("{}:{id}", height + 1);
    for (expect, says) in [
        (&higher, "below the expected tip"),
        (&zero, "another block at the expected height"),
        (
            &short_tip,
            "above the expected tip; the block at height 3 is the expected one",
        ),
    ] {
        let output = verify(&["--expect-tip", expect]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{expect}: {}",
            stdout(&output)
        );
        let text = stderr(&output);
        assert!(text.contains("audit FAILED"), "{text}");
        assert!(
            text.contains(&format!("expected tip {expect}, found {tip}")),
            "both tips named: {text}"
        );
        assert!(text.contains(says), "{text}");
    }
    let malformed = verify(&["--expect-tip", "4"]);
    assert_eq!(malformed.status.code(), Some(2));
    assert!(
        stderr(&malformed).contains("HEIGHT:BLOCK_ID"),
        "{}",
        stderr(&malformed)
    );

    // The export: its summary names its last block; against the store's tip it fails.
    let verify_export = |extra: &[&str]| {
        let mut command = branchd();
        command
            .args(["audit", "verify", "--genesis"])
            .arg(&genesis)
            .arg("--export")
            .arg(&export)
            .args(extra);
        command.output().expect("run branchd audit verify --export")
    };
    let plain = verify_export(&[]);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let text = stdout(&plain);
    assert!(text.contains(&format!("last block {short_tip}")), "{text}");
    assert!(text.contains("finalised prefix"), "{text}");
    let short = verify_export(&["--expect-tip", &tip]);
    assert_eq!(short.status.code(), Some(1));
    let text = stderr(&short);
    assert!(
        text.contains(&format!("expected tip {tip}, found {short_tip}"))
            && text.contains("the export's last block is below the expected tip"),
        "{text}"
    );
    let json = verify_export(&["--expect-tip", &tip, "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let failure: serde_json::Value = serde_json::from_str(&stdout(&json)).expect("json");
    assert_eq!(failure["ok"], false);
    assert_eq!(failure["failure"]["height"], 4);
    let matching = verify_export(&["--expect-tip", &short_tip]);
    assert!(matching.status.success(), "{}", stderr(&matching));
    let refused = verify_export(&["--allow-empty"]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "--allow-empty is for a data directory"
    );

    // An empty store: refused, unless allowed.
    let empty = dir.path().join("empty-store");
    drop(branchledger_storage::RocksStore::open(&empty).expect("a new store"));
    let audit_empty = |extra: &[&str]| {
        let mut command = branchd();
        command
            .args(["audit", "verify", "--genesis"])
            .arg(&genesis)
            .arg("--data-dir")
            .arg(&empty)
            .args(extra);
        command.output().expect("run branchd audit verify")
    };
    let refused = audit_empty(&[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains("the store holds no block") && text.contains("--allow-empty"),
        "{text}"
    );
    let allowed = audit_empty(&["--allow-empty"]);
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert!(stdout(&allowed).contains("EMPTY"), "{}", stdout(&allowed));
    let expected = audit_empty(&["--allow-empty", "--expect-tip", &tip]);
    assert_eq!(expected.status.code(), Some(1));
    assert!(
        stderr(&expected).contains("found no block"),
        "{}",
        stderr(&expected)
    );
}
