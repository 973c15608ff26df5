//! The `kafkv` binary as a user runs it: `kafkv serve` with the embedded
//! broker, data that survives a restart, relative and absolute data dirs,
//! SIGTERM for a clean exit.

use std::{path::Path, process::Command, time::Duration};

use reqwest::StatusCode;

use crate::harness::{KAFKV, ServeProcess, free_port};

/// `kafkv serve` with its embedded broker on a free port.
async fn start_embedded(cwd: &Path, data_dir: &Path) -> ServeProcess {
    let broker = format!("127.0.0.1:{}", free_port());
    ServeProcess::start(
        cwd,
        &[
            "--broker-listen".as_ref(),
            broker.as_ref(),
            "--data-dir".as_ref(),
            data_dir.as_os_str(),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_embedded_broker_keeps_data_across_restarts() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();

    // First run: a relative data dir, resolved against the working directory.
    let first = start_embedded(home.path(), Path::new("data")).await;
    assert!(first.log().contains("embedded broker"), "{}", first.log());
    let put = client
        .post(first.url("/put"))
        .json(&serde_json::json!({"key": "durable", "value": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let (exit, log) = first.terminate();
    assert!(exit.success(), "kafkv serve exited with {exit}:\n{log}");
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(home.path().join("data/broker.db").is_file());

    // Second run from another directory: the same data by absolute path.
    let second = start_embedded(elsewhere.path(), &home.path().join("data")).await;
    let got = client
        .get(second.url("/keys/durable"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK, "{}", second.log());
    assert_eq!(
        got.json::<serde_json::Value>().await.unwrap()["value"],
        "yes"
    );
    let (exit, log) = second.terminate();
    assert!(exit.success(), "{log}");
    // The absolute path was not re-rooted under the working directory.
    let rerooted = elsewhere
        .path()
        .join(home.path().strip_prefix("/").unwrap());
    assert!(!rerooted.exists(), "{} was created", rerooted.display());
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    let output = Command::new(KAFKV)
        .args(["serve", "--kafka-config", "no-equals-sign"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expected key=value"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_port_in_use_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(KAFKV)
            .args(["serve", "--http-listen", &format!("127.0.0.1:{port}")])
            .output(),
    )
    .await
    .expect("exits on its own")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--http-listen"), "{stderr}");
}

// Regression: with its port taken, `kafkv broker` logged "is up" (its
// readiness probe reached the other process), then AddrInUse, and kept
// running without serving anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_refuses_a_port_in_use_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let runs = [
        vec!["broker", "--listen", &address],
        vec![
            "serve",
            "--broker-listen",
            &address,
            "--http-listen",
            "127.0.0.1:0",
        ],
    ];
    for args in runs {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(KAFKV)
                .args(&args)
                .arg("--data-dir")
                .arg(&data)
                .output(),
        )
        .await
        .expect("exits on its own")
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot listen on"), "{args:?}: {stderr}");
        assert!(!stderr.contains("is up"), "{args:?}: {stderr}");
    }
}
