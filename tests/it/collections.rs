//! Lists, sets, hashes and sorted sets against the real broker: the same
//! command script answered as Debian's redis-server answers it; instances
//! written concurrently agreeing on every collection (none of the writes
//! lost, every reply computed where its record landed), and a fresh
//! instance bootstrapped after compaction agreeing with them; a `--state
//! disk` store keeping its types across a restart.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use kafkv::{
    StateConfig, StoreConfig,
    collection::{CollectionOp, Type},
    op::Op,
    store::MIN_TIMING_MARGIN,
};
use redis::{Value, aio::MultiplexedConnection};

use crate::harness::{
    BrokerProcess, Kafka, Kafkv, eventually, free_port, read_topic_with_headers, redis_connection,
    redis_connection_to, test_config, unique_topic,
};

async fn connect(address: std::net::SocketAddr) -> MultiplexedConnection {
    redis_connection(address)
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"))
}

/// A RESP3 connection (`HELLO 3`) to `address`.
async fn connect_resp3(address: std::net::SocketAddr) -> MultiplexedConnection {
    // The harness's timeouts: the crate's own (500 ms a reply) are short
    // for a write on a loaded test machine.
    redis_connection_to(&format!("redis://{address}/?protocol=resp3"))
        .await
        .unwrap_or_else(|e| panic!("connect to {address} in RESP3: {e}"))
}

/// One command's reply, an error reply as its text.
async fn reply(c: &mut MultiplexedConnection, args: &[&str]) -> Result<Value, String> {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async::<Value>(c).await.map_err(|e| e.to_string())
}

/// Debian's redis-server on a free port, without persistence; killed on drop.
struct RedisServer {
    child: Child,
    address: std::net::SocketAddr,
}

impl RedisServer {
    async fn start() -> RedisServer {
        let path = "/usr/bin/redis-server";
        assert!(
            std::path::Path::new(path).exists(),
            "redis-server is not installed: apt-get install redis-server"
        );
        let port = free_port();
        let child = Command::new(path)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let address: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        eventually("redis-server answers", || async {
            tokio::net::TcpStream::connect(address).await.is_ok()
        })
        .await;
        RedisServer { child, address }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replies whose order Redis leaves to its hash tables (set members, hash
/// fields), put in one order on both sides.
fn normalized(command: &str, reply: Result<Value, String>) -> Result<Value, String> {
    let sort = |mut items: Vec<Value>| {
        items.sort_by_key(|v| format!("{v:?}"));
        items
    };
    Ok(match (command, reply?) {
        ("SMEMBERS" | "SPOP" | "HKEYS" | "HVALS", Value::Array(items)) => Value::Array(sort(items)),
        ("SMEMBERS" | "SPOP", Value::Set(items)) => Value::Array(sort(items)),
        ("HGETALL", Value::Map(mut pairs)) => {
            pairs.sort_by_key(|pair| format!("{pair:?}"));
            Value::Map(pairs)
        }
        ("HGETALL", Value::Array(items)) => {
            let mut pairs: Vec<Vec<Value>> = items.chunks(2).map(<[Value]>::to_vec).collect();
            pairs.sort_by_key(|pair| format!("{pair:?}"));
            Value::Array(pairs.concat())
        }
        // The cursor is each server's own; a small keyspace fits one page.
        ("SCAN", Value::Array(mut page)) if page.len() == 2 => match page.pop() {
            Some(Value::Array(keys)) => Value::Array(sort(keys)),
            other => panic!("SCAN page: {other:?}"),
        },
        (_, other) => other,
    })
}

/// Every collection command kafkv has, with its edge cases and errors:
/// negative and out-of-range indexes, counts, emptied collections deleting
/// their key, ZADD's flags, WRONGTYPE both ways, and type-keeping generic
/// commands (RENAME, COPY, EXPIRE).
const SCRIPT: &[&[&str]] = &[
    &["LPUSH", "l", "a", "b", "c"],
    &["RPUSH", "l", "d", "e"],
    &["LRANGE", "l", "0", "-1"],
    &["LRANGE", "l", "-2", "-1"],
    &["LRANGE", "l", "3", "1"],
    &["LRANGE", "l", "-100", "100"],
    &["LINDEX", "l", "0"],
    &["LINDEX", "l", "-1"],
    &["LINDEX", "l", "10"],
    &["LLEN", "l"],
    &["TYPE", "l"],
    &["LPOP", "l"],
    &["RPOP", "l"],
    &["LPOP", "l", "2"],
    &["RPOP", "l", "0"],
    &["LPOP", "l", "-1"],
    &["LPOP", "l", "1", "2"],
    &["LPOP", "l", "10"],
    &["EXISTS", "l"],
    &["LPOP", "l"],
    &["LPOP", "l", "1"],
    &["LPUSHX", "l", "x"],
    &["RPUSHX", "l", "x"],
    &["LLEN", "nosuch"],
    &["LRANGE", "nosuch", "0", "-1"],
    &["SADD", "s", "a", "b", "c", "a"],
    &["SADD", "s", "d"],
    &["SADD", "s", "d"],
    &["SREM", "s", "a", "zz"],
    &["SCARD", "s"],
    &["SISMEMBER", "s", "b"],
    &["SISMEMBER", "s", "a"],
    &["SMEMBERS", "s"],
    &["TYPE", "s"],
    &["SPOP", "s", "10"],
    &["EXISTS", "s"],
    &["SPOP", "s"],
    &["SPOP", "s", "2"],
    &["SPOP", "s", "1", "2"],
    &["SCARD", "s"],
    &["HSET", "h", "f1", "v1", "f2", "v2", "f1", "v3"],
    &["HSET", "h", "f1"],
    &["HGET", "h", "f1"],
    &["HMGET", "h", "f1", "nope", "f2"],
    &["HLEN", "h"],
    &["HEXISTS", "h", "f2"],
    &["HEXISTS", "h", "nope"],
    &["HGETALL", "h"],
    &["HKEYS", "h"],
    &["HVALS", "h"],
    &["HDEL", "h", "f1", "nope"],
    &["HINCRBY", "h", "n", "5"],
    &["HINCRBY", "h", "n", "-7"],
    &["HINCRBY", "h", "f2", "1"],
    &["HINCRBY", "h", "n", "9223372036854775807"],
    &["HMSET", "h", "a", "1", "b", "2"],
    &["TYPE", "h"],
    &["HDEL", "h", "f2", "n", "a", "b"],
    &["EXISTS", "h"],
    &["HGETALL", "h"],
    &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
    &["ZADD", "z", "NX", "5", "a", "4", "d"],
    &["ZADD", "z", "XX", "CH", "10", "a", "1", "zz"],
    &["ZADD", "z", "GT", "CH", "5", "a", "20", "b"],
    &["ZADD", "z", "LT", "1", "c"],
    &["ZADD", "z", "INCR", "2.5", "c"],
    &["ZADD", "z", "XX", "INCR", "1", "nope"],
    &["ZADD", "z", "NX", "XX", "1", "a"],
    &["ZADD", "z", "GT", "LT", "1", "a"],
    &["ZADD", "z", "INCR", "1", "a", "2", "b"],
    &["ZADD", "z", "1"],
    &["ZADD", "z", "nan", "a"],
    &["ZADD", "z", "inf", "e", "-inf", "f"],
    &["ZADD", "z", "CH", "1", "x", "1", "x", "2", "x"],
    &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
    &["ZRANGE", "z", "1", "2"],
    &["ZRANGE", "z", "-2", "-1", "WITHSCORES"],
    &["ZSCORE", "z", "a"],
    &["ZSCORE", "z", "e"],
    &["ZSCORE", "z", "nope"],
    &["ZCARD", "z"],
    &["TYPE", "z"],
    &["ZREM", "z", "a", "nope"],
    &["ZPOPMIN", "z"],
    &["ZPOPMAX", "z", "2"],
    &["ZPOPMIN", "z", "-1"],
    &["ZPOPMIN", "z", "1", "2"],
    &["ZRANGE", "z", "0", "-1", "WITHSCORES"],
    &["ZPOPMIN", "z", "100"],
    &["EXISTS", "z"],
    &["ZPOPMIN", "z"],
    // Strings and collections do not mix.
    &["SET", "str", "v"],
    &["LPUSH", "str", "x"],
    &["SADD", "str", "x"],
    &["HSET", "str", "f", "v"],
    &["ZADD", "str", "1", "a"],
    &["HGET", "str", "f"],
    &["LRANGE", "str", "0", "1"],
    &["SMEMBERS", "str"],
    &["ZRANGE", "str", "0", "1"],
    &["RPUSH", "t", "a", "b"],
    &["GET", "t"],
    &["APPEND", "t", "x"],
    &["INCR", "t"],
    &["STRLEN", "t"],
    &["GETRANGE", "t", "0", "1"],
    &["GETSET", "t", "v"],
    &["SET", "t", "v", "GET"],
    &["SET", "t", "v", "XX", "GET"],
    &["GETDEL", "t"],
    &["MGET", "t", "str"],
    &["SADD", "t", "x"],
    &["LRANGE", "t", "0", "-1"],
    &["SET", "t", "v"],
    &["TYPE", "t"],
    // Generic commands keep the type.
    &["RPUSH", "r", "a", "b"],
    &["RENAME", "r", "r2"],
    &["TYPE", "r2"],
    &["LRANGE", "r2", "0", "-1"],
    &["COPY", "r2", "r3"],
    &["LRANGE", "r3", "0", "-1"],
    &["EXPIRE", "r3", "100"],
    &["TTL", "r3"],
    &["LPUSH", "r3", "x"],
    &["TTL", "r3"],
    &["PERSIST", "r3"],
    &["TTL", "r3"],
    &["SCAN", "0", "TYPE", "list", "COUNT", "1000"],
    &["SCAN", "0", "TYPE", "string", "COUNT", "1000"],
    &["SCAN", "0", "TYPE", "hash", "COUNT", "1000"],
    &["DEL", "r2", "r3"],
    &["EXISTS", "r2", "r3"],
];

/// Every reply of [`SCRIPT`] is what redis-server 7 replies, in order, in
/// RESP2 and then (on fresh keyspaces) in RESP3, where scores are doubles,
/// sets and maps are their own types and scored ranges nest their pairs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collection_commands_answer_as_redis_server_does() {
    let kafka = Kafka::start().await;
    for resp3 in [false, true] {
        let redis = RedisServer::start().await;
        let kv = Kafkv::start(kafka.config(&unique_topic("collections-peer"))).await;
        let (mut theirs, mut ours) = if resp3 {
            (
                connect_resp3(redis.address).await,
                connect_resp3(kv.resp).await,
            )
        } else {
            (connect(redis.address).await, connect(kv.resp).await)
        };
        let differences = differences(&mut theirs, &mut ours).await;
        assert!(
            differences.is_empty(),
            "RESP{}:\n{}",
            if resp3 { 3 } else { 2 },
            differences.join("\n")
        );
        drop(ours);
        kv.stop().await;
    }
}

/// Where kafkv's replies to [`SCRIPT`] differ from redis-server's.
async fn differences(
    theirs: &mut MultiplexedConnection,
    ours: &mut MultiplexedConnection,
) -> Vec<String> {
    let mut differences = Vec::new();
    for command in SCRIPT {
        let expected = normalized(command[0], reply(theirs, command).await);
        let got = normalized(command[0], reply(ours, command).await);
        if got != expected {
            differences.push(format!(
                "{}\n  redis-server: {expected:?}\n  kafkv:        {got:?}",
                command.join(" ")
            ));
        }
    }
    differences
}

/// What a key holds on an instance, as RESP reads it: its type and contents.
async fn contents(c: &mut MultiplexedConnection, key: &str) -> (String, Value) {
    let ty = match reply(c, &["TYPE", key]).await.unwrap() {
        Value::SimpleString(ty) => ty,
        other => panic!("TYPE {key}: {other:?}"),
    };
    let read: &[&str] = match &ty[..] {
        "list" => &["LRANGE", key, "0", "-1"],
        "set" => &["SMEMBERS", key],
        "hash" => &["HGETALL", key],
        "zset" => &["ZRANGE", key, "0", "-1", "WITHSCORES"],
        _ => &["GET", key],
    };
    let value = normalized(read[0], reply(c, read).await).unwrap();
    (ty, value)
}

const WRITERS_PER_INSTANCE: usize = 4;
const ROUNDS: usize = 40;

/// Three instances take list pushes, set adds, hash increments and sorted
/// set increments from clients on each at once. Every push's reply is a
/// distinct length (each was computed at its own record, in log order),
/// nothing is lost, and every instance holds the same collections. Once
/// compaction has left only each key's newest record (a repair carrying
/// `kafkv.type`), a fresh instance bootstraps the same collections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_agree_on_collections_written_at_once_and_after_compaction() {
    let margin = MIN_TIMING_MARGIN + Duration::from_secs(1);
    let broker = BrokerProcess::start_with(Duration::from_secs(1)).await;
    let brokers = broker.address();
    let topic = unique_topic("collections-agree");
    let config = StoreConfig {
        min_compaction_lag: margin,
        delete_retention: margin,
        ..test_config(&brokers, &topic)
    };
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Kafkv::start(config.clone()).await);
    }
    let started = Instant::now();
    let mut writers = Vec::new();
    for (i, kv) in instances.iter().enumerate() {
        for w in 0..WRITERS_PER_INSTANCE {
            let mut c = connect(kv.resp).await;
            writers.push(tokio::spawn(async move {
                let mut lengths = Vec::new();
                for round in 0..ROUNDS {
                    let element = format!("{i}-{w}-{round}");
                    let push = if round % 2 == 0 { "LPUSH" } else { "RPUSH" };
                    match reply(&mut c, &[push, "list", &element]).await {
                        Ok(Value::Int(len)) => lengths.push(len),
                        other => panic!("{push}: {other:?}"),
                    }
                    let added = reply(&mut c, &["SADD", "set", &element, "shared"]).await;
                    assert!(matches!(added, Ok(Value::Int(1 | 2))), "{added:?}");
                    let field = format!("f{}", round % 3);
                    let counted = reply(&mut c, &["HINCRBY", "hash", &field, "1"]).await;
                    assert!(matches!(counted, Ok(Value::Int(_))), "{counted:?}");
                    let member = format!("m{w}");
                    let scored = reply(&mut c, &["ZADD", "zset", "INCR", "0.5", &member]).await;
                    assert!(matches!(scored, Ok(Value::BulkString(_))), "{scored:?}");
                }
                lengths
            }));
        }
    }
    let mut lengths = Vec::new();
    for writer in writers {
        lengths.extend(writer.await.expect("writer"));
    }
    let pushes = 3 * WRITERS_PER_INSTANCE * ROUNDS;
    lengths.sort_unstable();
    let expected: Vec<i64> = (1..=pushes as i64).collect();
    assert_eq!(lengths, expected, "each push saw its own length");

    // Every instance holds every write, and the same collections.
    let keys = ["list", "set", "hash", "zset"];
    let mut connections = Vec::new();
    for kv in &instances {
        kv.store.catch_up().await.unwrap();
        connections.push(connect(kv.resp).await);
    }
    let mut seen = BTreeMap::new();
    for key in keys {
        seen.insert(key, contents(&mut connections[0], key).await);
    }
    let Value::Array(list) = &seen["list"].1 else {
        panic!("{:?}", seen["list"])
    };
    assert_eq!(list.len(), pushes);
    let Value::Array(set) = &seen["set"].1 else {
        panic!("{:?}", seen["set"])
    };
    assert_eq!(set.len(), pushes + 1);
    let field_counts: i64 = ["f0", "f1", "f2"]
        .iter()
        .map(|f| {
            let mut c = connections[0].clone();
            async move {
                match reply(&mut c, &["HGET", "hash", f]).await.unwrap() {
                    Value::BulkString(n) => String::from_utf8(n).unwrap().parse::<i64>().unwrap(),
                    other => panic!("{other:?}"),
                }
            }
        })
        .collect::<futures::future::JoinAll<_>>()
        .await
        .into_iter()
        .sum();
    assert_eq!(field_counts, pushes as i64);
    let score = reply(&mut connections[0], &["ZSCORE", "zset", "m0"]).await;
    let expected_score = 0.5 * (3 * ROUNDS) as f64;
    assert_eq!(
        score,
        Ok(Value::BulkString(expected_score.to_string().into_bytes()))
    );
    for c in &mut connections[1..] {
        for key in keys {
            assert_eq!(contents(c, key).await, seen[key], "{key}");
        }
    }

    // Compaction leaves one record per key: a repair restating the whole
    // collection, typed.
    for kv in &instances {
        eventually("repairs are done", || async {
            kv.store.unsettled_keys() == 0
        })
        .await;
    }
    // The partition's last record must outlive compaction (see
    // expiry::a_fresh_instance_after_compaction_agrees_on_values_versions_and_expiries).
    instances[0]
        .store
        .put(b"the-end", Bytes::from_static(b"last"))
        .await
        .unwrap();
    eventually("compaction left one record per key", || async {
        if started.elapsed() < margin {
            return false;
        }
        let records = read_topic_with_headers(&brokers, &topic).await;
        let mut per_key: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for record in &records {
            *per_key
                .entry(record.record.key.clone().unwrap())
                .or_default() += 1;
        }
        per_key.len() == keys.len() + 1 && per_key.values().all(|n| *n == 1)
    })
    .await;
    for record in read_topic_with_headers(&brokers, &topic).await {
        let key = String::from_utf8(record.record.key.clone().unwrap()).unwrap();
        let ty = record
            .headers
            .iter()
            .find(|(name, _)| name == "kafkv.type")
            .and_then(|(_, value)| value.clone());
        let expected = (key != "the-end").then(|| seen[&key[..]].0.clone().into_bytes());
        assert_eq!(ty, expected, "{key}: {:?}", record.headers);
    }
    let fresh = Kafkv::start(config).await;
    let mut c = connect(fresh.resp).await;
    for key in keys {
        assert_eq!(
            contents(&mut c, key).await,
            seen[key],
            "{key} on the fresh instance"
        );
    }
    drop((c, connections));
    for kv in instances.into_iter().chain([fresh]) {
        kv.stop().await;
    }
}

/// A `--state disk` store reopened from its checkpoint keeps each key's
/// type and contents, and goes on applying operations to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_store_keeps_collection_types_across_a_restart() {
    let kafka = Kafka::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = kafka.config(&unique_topic("collections-disk"));
    config.state = StateConfig::Disk(dir.path().to_owned());
    let push = |value: &str| {
        Op::Collection(CollectionOp::Push {
            left: false,
            values: vec![Bytes::from(value.to_owned())],
            only_if_exists: false,
            max_len: 1 << 20,
        })
    };
    let add = Op::Collection(CollectionOp::SetAdd {
        members: vec![Bytes::from_static(b"m")],
        max_len: 1 << 20,
    });
    let store = kafkv::Store::open(config.clone()).await.unwrap();
    store.apply_op(b"list", push("a")).await.unwrap();
    store.apply_op(b"set", add).await.unwrap();
    store
        .put(b"string", Bytes::from_static(b"s"))
        .await
        .unwrap();
    store.close().await;
    drop(store);

    let store = kafkv::Store::open(config).await.unwrap();
    let types: Vec<Type> = [&b"list"[..], b"set", b"string"]
        .iter()
        .map(|key| store.get_now(key).unwrap().unwrap().ty)
        .collect();
    assert_eq!(types, [Type::List, Type::Set, Type::String]);
    let pushed = store.apply_op(b"list", push("b")).await.unwrap();
    let after = pushed.outcome.after.unwrap();
    assert_eq!(after.ty, Type::List);
    assert_eq!(
        kafkv::collection::list_range(&after.value, 0, -1).unwrap(),
        [Bytes::from_static(b"a"), Bytes::from_static(b"b")]
    );
    store.close().await;
}
