//! Lists, sets, hashes and sorted sets: redis-benchmark's default tests of
//! them, as its default list runs them (50 clients, one key per type, so
//! every write of a test is a read-modify-write of the same collection),
//! against kafkv's RESP front end and a redis-server in the same run.
//! `LRANGE_100` and `LRANGE_600` read a list redis-benchmark first fills
//! with as many `LPUSH`es as the test has requests.

use tokio::net::TcpListener;

use kafkv::Store;

use crate::{
    BenchConfig,
    error::Result,
    kafka::{serve, store_config},
    progress,
    redis_peer::{RedisServer, missing, redis_benchmark, redis_version, side_by_side, which},
    report::Row,
};

/// The collection tests of redis-benchmark's default list, in its order.
const TESTS: &[&str] = &[
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "sadd",
    "hset",
    "spop",
    "zadd",
    "zpopmin",
    "lrange_100",
    "lrange_600",
];

pub async fn compare(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    for tool in ["redis-benchmark", "redis-server"] {
        if which(tool).is_none() {
            return Err(missing(tool, "collections"));
        }
    }
    let mut kafkv_config = store_config(brokers, &format!("bench-collections-{run_id}"));
    kafkv_config.fetch_wait = config.resp_fetch_wait;
    let store = Store::open(kafkv_config).await?;
    let resp = TcpListener::bind("127.0.0.1:0").await?;
    let served = serve(store, Some(resp)).await?;
    let kafkv_port = served.resp_address().expect("RESP is on").port();
    let redis = RedisServer::start("collections").await?;
    let version = redis_version().await;

    let requests = config.collection_requests.to_string();
    let args = ["-n", &requests, "-c", "50"];
    let mut rows = Vec::new();
    for test in TESTS {
        progress(format!(
            "collections: {} x {requests}, kafkv then redis-server",
            test.to_uppercase()
        ));
        let kafkv = redis_benchmark(kafkv_port, test, &args, "collections").await?;
        let theirs = redis_benchmark(redis.port, test, &args, "collections").await?;
        let label = format!("RESP {} (50 clients, one key)", test.to_uppercase());
        rows.extend(side_by_side(&label, &kafkv, &theirs, &version));
    }
    redis.stop().await;
    served.stop().await;
    Ok(rows)
}
