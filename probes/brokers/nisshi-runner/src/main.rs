//! Minimal runner for nisshi-broker 0.6.0 with SQLite (libsql) storage.
//! Usage: nisshi-probe-broker --listen 127.0.0.1:PORT --data-dir DIR [--maintenance-interval 1s] [--mode serve|main]
use std::path::{Component, PathBuf};
use std::time::Instant;

use nisshi_broker::{broker::Broker, coordinator::group::administrator::Controller};
use nisshi_storage::ArcDynStorage;
use url::Url;
use uuid::Uuid;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let mut listen = "127.0.0.1:9092".to_string();
    let mut data_dir = PathBuf::from("nisshi-data");
    let mut interval = "1s".to_string();
    let mut mode = "serve".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().unwrap_or_else(|| panic!("missing value for {a}"));
        match a.as_str() {
            "--listen" => listen = v,
            "--data-dir" => data_dir = PathBuf::from(v),
            "--maintenance-interval" => interval = v,
            "--mode" => mode = v,
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&data_dir).expect("create data dir");
    let db = std::fs::canonicalize(&data_dir).expect("canonicalize").join("broker.db");
    // nisshi-storage joins the sqlite: URL path onto the cwd even when absolute:
    // build a path that climbs from the cwd to / first.
    let cwd = std::env::current_dir().unwrap();
    let mut rel = PathBuf::new();
    for _ in cwd.components().filter(|c| matches!(c, Component::Normal(_))) {
        rel.push("..");
    }
    rel.push(db.strip_prefix("/").unwrap());
    let storage = Url::parse(&format!("sqlite:{}?maintenance_interval={interval}", rel.display())).unwrap();
    let listener = Url::parse(&format!("tcp://{listen}")).unwrap();
    eprintln!("nisshi-broker 0.6.0: listen={listener} storage={storage} mode={mode}");

    let broker = Broker::<Controller<ArcDynStorage>, ArcDynStorage>::builder()
        .node_id(nisshi_broker::NODE_ID)
        .cluster_id("kafkv")
        .incarnation_id(Uuid::new_v4())
        .advertised_listener(listener.clone())
        .storage(storage)
        .listener(listener)
        .silent(true)
        .build()
        .await;
    let mut broker = match broker {
        Ok(b) => b,
        Err(e) => {
            eprintln!("build failed: {e:?}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    if mode == "main" {
        match broker.main(started.into()).await {
            Ok(code) => eprintln!("broker.main returned Ok({code:?})"),
            Err(e) => {
                eprintln!("broker.main returned Err: {e:?}");
                std::process::exit(1);
            }
        }
    } else {
        match broker.serve(started.into()).await {
            Ok(()) => eprintln!("broker.serve returned Ok"),
            Err(e) => {
                eprintln!("broker.serve returned Err: {e:?}");
                std::process::exit(1);
            }
        }
    }
}
