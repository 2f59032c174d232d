//! The measuring tools keep working: a short cluster benchmark (with its half-rate run and the
//! query load meanwhile) loses no record and reports its ceiling; a generated chain passes the audit benchmark and answers the query benchmark.
//! (The figures themselves are measured by `scripts/bench`, not asserted here.)

mod support;

use std::time::Duration;

use support::branchd;

fn json(output: std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

#[test]
fn a_short_cluster_benchmark_loses_nothing_and_reports_its_ceiling() {
    let home = tempfile::tempdir().expect("temp dir");
    let report = json(
        branchd()
            .args([
                "bench",
                "cluster",
                "--rates",
                "200",
                "--seconds",
                "3",
                "--members-per-branch",
                "10",
                "--home",
            ])
            .arg(home.path().join("cluster"))
            .output()
            .expect("run the cluster benchmark"),
    );
    assert!(
        report["ceiling_records_per_second"]
            .as_f64()
            .expect("ceiling")
            > 0.0
    );
    let step = &report["steps"][0];
    assert_eq!(step["offered_rate"], 200);
    assert_eq!(step["lost"], 0, "{report}");
    assert!(
        step["committed"].as_u64().expect("committed") > 0,
        "{report}"
    );
    // What the validators spent per record was measured, and what they received by gossip:
    // records (each node admits only a quarter of them itself) and proposals with votes.
    assert!(
        step["node_cpu_us_per_record"].as_f64().expect("node CPU") > 0.0,
        "{report}"
    );
    for topic in ["record", "consensus"] {
        let bytes = step[format!("gossip_{topic}_bytes_per_record")]
            .as_f64()
            .expect("gossip bytes");
        assert!(bytes > 0.0, "no {topic} gossip counted: {report}");
    }
    // The run at half the rate, with a query load on one node meanwhile.
    assert_eq!(report["half"]["lost"], 0, "{report}");
    let queries = report["queries_during_half"].as_array().expect("queries");
    assert_eq!(queries.len(), 5, "{report}");
    for query in queries {
        assert_eq!(query["errors"], 0, "{query}");
        assert!(
            query["queries_per_second"].as_f64().expect("q/s") > 0.0,
            "{query}"
        );
    }
    assert_eq!(
        report["node_peak_rss_bytes"]
            .as_array()
            .expect("memory")
            .len(),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_chain_passes_the_audit_and_answers_the_query_benchmark() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chain = json(
        branchd()
            .args([
                "bench",
                "gen-chain",
                "--records",
                "2000",
                "--block-records",
                "500",
                "--out",
            ])
            .arg(dir.path().join("chain"))
            .output()
            .expect("gen-chain"),
    );
    assert_eq!(chain["records"], 2000);
    assert_eq!(chain["blocks"], 4);
    let home = dir.path().join("chain/net/node0");
    let audit = json(
        branchd()
            .args(["bench", "audit", "--genesis"])
            .arg(home.join("config/genesis.json"))
            .arg("--data-dir")
            .arg(home.join("data/store"))
            .output()
            .expect("bench audit"),
    );
    assert_eq!(audit["records"], 2000);
    assert!(audit["batch_verify_per_core"].as_f64().expect("rate") > 0.0);

    // Serve it and run the query benchmark briefly.
    let log = dir.path().join("node.log");
    let mut node = branchd()
        .args(["start", "--home"])
        .arg(&home)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let api = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(rest) = text.split("api listening address=").nth(1) {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no API address:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let year = (branchledger_types::Date::from_unix_ms(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as u64,
    )
    .year
        - 1)
    .to_string();
    let output = branchd()
        .args([
            "bench",
            "query",
            "--seconds",
            "0.2",
            "--member",
            "m-0-0",
            "--api",
        ])
        .arg(format!("http://{api}"))
        .arg("--record")
        .arg(chain["sample_record"].as_str().expect("record"))
        .args([
            "--from",
            &format!("{year}-01"),
            "--to",
            &format!("{year}-03"),
        ])
        .output()
        .expect("bench query");
    let _ = node.kill();
    let _ = node.wait();
    let queries = json(output);
    let kinds: Vec<&str> = queries
        .as_array()
        .expect("reports")
        .iter()
        .map(|q| q["query"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "leaderboard",
            "member_history",
            "study_hours",
            "dues",
            "get_record"
        ]
    );
    for query in queries.as_array().expect("reports") {
        assert_eq!(query["errors"], 0, "{query}");
        assert!(query["latency"]["count"].as_u64().expect("count") > 0);
    }
}
