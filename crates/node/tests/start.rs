//! `branchd start` as a real process: a one-validator node serves its metrics, stops cleanly on
//! SIGTERM, and comes back after SIGKILL with what it had.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn branchd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_branchd"))
}

/// A one-validator home whose API and metrics listen on ports the system picks.
fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = branchd()
        .args(["testnet", "--validators", "1", "--branches", "2", "--out"])
        .arg(dir.path().join("net"))
        .status()
        .expect("run testnet");
    assert!(status.success());
    let config = dir.path().join("net/node0/config/config.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let text: String = text
        .lines()
        .map(|line| match line.split_once(" = ") {
            Some(("listen", value)) if value.contains("127.0.0.1:") => {
                "listen = \"127.0.0.1:0\"".to_owned()
            }
            Some(("listen", value)) if value.contains("/tcp/") => {
                "listen = \"/ip4/127.0.0.1/tcp/0\"".to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, text).expect("write config");
    dir
}

/// Starts the node and returns it with its metrics address, read from its log.
fn start(home: &std::path::Path) -> (Child, String, BufReader<std::process::ChildStderr>) {
    let mut child = branchd()
        .args(["start", "--home"])
        .arg(home.join("net/node0"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start branchd");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).expect("read log") == 0 {
            let _ = child.wait();
            panic!("branchd exited before listening");
        }
        if let Some(rest) = line.split("metrics endpoint listening address=").nth(1) {
            return (child, rest.trim().to_owned(), stderr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("no metrics address logged in time");
}

fn metrics(address: &str) -> String {
    let mut socket = std::net::TcpStream::connect(address).expect("connect");
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut response = String::new();
    socket.read_to_string(&mut response).expect("read");
    response
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_node_serves_metrics_stops_on_sigterm_and_survives_sigkill() {
    let home = home();
    let (mut child, address, mut log) = start(home.path());
    let response = metrics(&address);
    assert!(response.contains("branchd_height 0"), "{response}");
    assert!(response.contains("branchd_mempool_records 0"), "{response}");
    // Graceful stop.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = wait_exit(&mut child, Duration::from_secs(30)).expect("stopped in time");
    assert!(exit.success(), "{exit:?}");
    let mut rest = String::new();
    log.read_to_string(&mut rest).expect("log");
    assert!(rest.contains("node stopped cleanly"), "{rest}");
    // Start again, then SIGKILL, then start again: the store and safety state reopen.
    let (mut child, _, _log) = start(home.path());
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    let (mut child, address, _log) = start(home.path());
    assert!(metrics(&address).contains("branchd_height 0"));
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

#[test]
fn unknown_configuration_keys_stop_the_node_with_the_key_named() {
    let home = home();
    let config = home.path().join("net/node0/config/config.toml");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("\n[colour]\nshade = 1\n");
    std::fs::write(&config, text).expect("write");
    let output = branchd()
        .args(["start", "--home"])
        .arg(home.path().join("net/node0"))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("colour") && stderr.contains("config.toml"),
        "{stderr}"
    );
}
