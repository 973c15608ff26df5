//! The Redis protocol front end: raw RESP bytes on the wire, the `redis`
//! crate in RESP2 and RESP3, `AUTH`, limits, and Debian's redis-cli and
//! redis-benchmark against kafkv.

use std::time::Duration;

use bytes::Bytes;
use redis::{AsyncCommands, Value};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::harness::{Kafka, Kafkv, read_topic, replay, unique_topic};

async fn kafkv() -> (Kafka, Kafkv) {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("resp"))).await;
    (kafka, kv)
}

/// Reads exactly `expected.len()` bytes and compares them.
async fn expect(stream: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut got))
        .await
        .expect("reply in time")
        .expect("read reply");
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected)
    );
}

async fn expect_closed(stream: &mut TcpStream) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut rest))
        .await
        .expect("server closes the connection");
    assert!(
        read.is_ok() && rest.is_empty(),
        "unexpected bytes: {rest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wire_pipelining_split_frames_and_errors() {
    let (_kafka, kv) = kafkv().await;
    let mut s = TcpStream::connect(kv.resp).await.unwrap();

    // Pipelined in one write, answered in order; a GET sees the SET before it.
    s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n")
        .await
        .unwrap();
    expect(&mut s, b"+OK\r\n$1\r\n1\r\n+PONG\r\n").await;

    // A frame split across many writes.
    for chunk in b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n".chunks(3) {
        s.write_all(chunk).await.unwrap();
        s.flush().await.unwrap();
    }
    expect(&mut s, b"$5\r\nhello\r\n").await;

    // Reads and writes interleaved in a pipeline keep their order.
    s.write_all(
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
          *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n2\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    )
    .await
    .unwrap();
    expect(&mut s, b"+OK\r\n$1\r\n1\r\n+OK\r\n$1\r\n2\r\n").await;

    // Unknown commands are answered and the connection stays usable; so is inline syntax.
    s.write_all(b"*2\r\n$3\r\nFOO\r\n$1\r\nx\r\nPING\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"-ERR unknown command 'FOO', with args beginning with: 'x' \r\n+PONG\r\n",
    )
    .await;

    // A malformed frame closes only this connection, with a protocol error.
    let mut other = TcpStream::connect(kv.resp).await.unwrap();
    s.write_all(b"*1\r\n+PING\r\n").await.unwrap();
    expect(&mut s, b"-ERR Protocol error: expected '$', got '+'\r\n").await;
    expect_closed(&mut s).await;
    other.write_all(b"PING\r\n").await.unwrap();
    expect(&mut other, b"+PONG\r\n").await;

    // A value over --max-value-bytes is read and discarded, the command is
    // refused with the limit and the flag, and the connection stays usable,
    // even when the oversize bulk string arrives in pieces.
    let max = kv.store.config().max_value_bytes;
    let big = vec![b'x'; max + 1];
    let mut request = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", big.len()).into_bytes();
    request.extend_from_slice(&big);
    request.extend_from_slice(b"\r\n*1\r\n$4\r\nPING\r\n");
    for chunk in request.chunks(64 * 1024) {
        other.write_all(chunk).await.unwrap();
    }
    let refused = format!(
        "-ERR the request has a bulk string of {} bytes, over the limit of {max} bytes; it was \
         read and discarded, nothing was run. --max-value-bytes raises the limit (keep key + \
         value under the broker's message.max.bytes)\r\n+PONG\r\n",
        max + 1
    );
    expect(&mut other, refused.as_bytes()).await;
    // Arguments after the oversize one are discarded too; nothing is written.
    let mut request = format!("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n${}\r\n", big.len()).into_bytes();
    request.extend_from_slice(&big);
    request.extend_from_slice(b"\r\n$1\r\nb\r\n$1\r\nv\r\n*2\r\n$6\r\nEXISTS\r\n$1\r\nb\r\n");
    other.write_all(&request).await.unwrap();
    let mut refused = refused.into_bytes();
    refused.truncate(refused.len() - b"+PONG\r\n".len());
    refused.extend_from_slice(b":0\r\n");
    expect(&mut other, &refused).await;
    // Over Redis's own 512 MB bound: a protocol error, and the connection closes.
    other
        .write_all(b"*2\r\n$3\r\nGET\r\n$999999999999\r\n")
        .await
        .unwrap();
    expect(&mut other, b"-ERR Protocol error: invalid bulk length\r\n").await;
    expect_closed(&mut other).await;

    // Without --auth-token, as Redis without a password: the default user
    // takes any password, the one-argument form is refused. Inline commands
    // follow Redis's quoting, and unbalanced quotes are a protocol error.
    let mut third = TcpStream::connect(kv.resp).await.unwrap();
    third
        .write_all(
            b"AUTH default anything\r\nAUTH pw\r\nSET \"a b\" 'c d'\r\nGET \"a b\"\r\n\
              set \"\"\"k\"\"\" v\r\n",
        )
        .await
        .unwrap();
    expect(
        &mut third,
        b"+OK\r\n-ERR AUTH <password> called without any password configured for the \
          default user. Are you sure your configuration is correct?\r\n+OK\r\n$3\r\nc d\r\n\
          -ERR Protocol error: unbalanced quotes in request\r\n",
    )
    .await;
    expect_closed(&mut third).await;
    kv.stop().await;
}

/// Pipelines 200 `SET`s of `key` to the values 0..200 on a connection of its
/// own, then a `GET`, and checks every reply.
async fn pipeline_sets(kv: &Kafkv, key: &str) {
    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    let mut pipeline = Vec::new();
    for i in 0..200 {
        let value = i.to_string();
        pipeline.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            )
            .as_bytes(),
        );
    }
    pipeline
        .extend_from_slice(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
    s.write_all(&pipeline).await.unwrap();
    let mut expected = b"+OK\r\n".repeat(200);
    expected.extend_from_slice(b"$3\r\n199\r\n");
    expect(&mut s, &expected).await;
}

/// Two connections pipeline at once, so most of their writes wait in the
/// writer's send window (five records outstanding per partition) and are
/// handed to the producer in bursts: each key's writes must still reach the
/// log in pipeline order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_are_all_acknowledged_in_order() {
    let (kafka, kv) = kafkv().await;
    tokio::join!(pipeline_sets(&kv, "hot"), pipeline_sets(&kv, "warm"));

    // The log has them in pipeline order: the last one wins everywhere.
    kv.store.catch_up().await.unwrap();
    let records = read_topic(&kafka.brokers(), &kv.store.config().topic).await;
    let expected: Vec<String> = (0..200).map(|i| i.to_string()).collect();
    for key in ["hot", "warm"] {
        let values: Vec<String> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(key.as_bytes()))
            .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
            .collect();
        assert_eq!(values, expected, "{key}");
    }
    assert_eq!(replay(&records), kv.state().await);
    kv.stop().await;
}

/// A `redis` crate connection with timeouts fit for a loaded test machine
/// (its defaults are 1 s to connect and 500 ms per reply).
async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    crate::harness::redis_connection_to(url)
        .await
        .expect("connect with the redis crate")
}

/// Every supported command through a real client, in one protocol version.
async fn every_command(kv: &Kafkv, resp3: bool) {
    let suffix = if resp3 { "?protocol=resp3" } else { "" };
    let mut c = connect(&format!("redis://{}/{suffix}", kv.resp)).await;
    let p = if resp3 { "r3:" } else { "r2:" };
    let key = |k: &str| format!("{p}{k}");

    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");
    let echoed: String = redis::cmd("ECHO")
        .arg("hi")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(echoed, "hi");

    let () = c.set(key("a"), "1").await.unwrap();
    let a: String = c.get(key("a")).await.unwrap();
    assert_eq!(a, "1");
    let missing: Option<String> = c.get(key("missing")).await.unwrap();
    assert_eq!(missing, None);

    let binary = Bytes::from_static(&[0, 255, 13, 10, 7]);
    let () = c.set(key("bin"), binary.to_vec()).await.unwrap();
    let back: Vec<u8> = c.get(key("bin")).await.unwrap();
    assert_eq!(back, binary.to_vec());

    let () = c.mset(&[(key("b"), "2"), (key("c"), "3")]).await.unwrap();
    let many: Vec<Option<String>> = c
        .mget(&[key("a"), key("b"), key("c"), key("nope")])
        .await
        .unwrap();
    assert_eq!(
        many,
        vec![Some("1".into()), Some("2".into()), Some("3".into()), None]
    );

    let exists: i64 = c.exists(&[key("a"), key("b"), key("nope")]).await.unwrap();
    assert_eq!(exists, 2);
    let len: i64 = c.strlen(key("bin")).await.unwrap();
    assert_eq!(len, 5);
    let kind: String = redis::cmd("TYPE")
        .arg(key("a"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(kind, "string");
    let none: String = redis::cmd("TYPE")
        .arg(key("nope"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(none, "none");

    let mut keys: Vec<String> = c.keys(format!("{p}*")).await.unwrap();
    keys.sort();
    assert_eq!(keys, vec![key("a"), key("b"), key("bin"), key("c")]);

    let mut scanned: Vec<String> = {
        let mut iter: redis::AsyncIter<String> = c.scan_match(format!("{p}*")).await.unwrap();
        let mut all = Vec::new();
        while let Some(k) = iter.next_item().await {
            all.push(k.unwrap());
        }
        all
    };
    scanned.sort();
    scanned.dedup();
    assert_eq!(scanned, keys);

    let deleted: i64 = c.del(&[key("a"), key("nope")]).await.unwrap();
    assert_eq!(deleted, 1);
    let unlinked: i64 = redis::cmd("UNLINK")
        .arg(key("b"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(unlinked, 1);
    let gone: Option<String> = c.get(key("a")).await.unwrap();
    assert_eq!(gone, None);

    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size as usize, kv.store.len());

    let info: String = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    for needle in [
        "redis_version:",
        "connected_clients:",
        "# Keyspace",
        "# Kafka",
        "topic:",
        "partition0:applied_offset=",
    ] {
        assert!(info.contains(needle), "INFO lacks {needle}:\n{info}");
    }
    let count: i64 = redis::cmd("COMMAND")
        .arg("COUNT")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(count >= 20);
    let table: Value = redis::cmd("COMMAND").query_async(&mut c).await.unwrap();
    assert!(matches!(table, Value::Array(ref a) if a.len() as i64 == count));
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("get")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!matches!(docs, Value::Nil));

    let () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query_async(&mut c)
        .await
        .unwrap();
    let name: String = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(name, "tester");
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(id > 0);
    let () = redis::cmd("CLIENT")
        .arg("SETINFO")
        .arg("LIB-NAME")
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let config: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(config.get("appendonly").map(String::as_str), Some("no"));

    let () = redis::cmd("SELECT")
        .arg(0)
        .query_async(&mut c)
        .await
        .unwrap();
    let other_db: redis::RedisResult<()> = redis::cmd("SELECT").arg(1).query_async(&mut c).await;
    assert!(other_db.unwrap_err().to_string().contains("out of range"));

    // SET takes an expiry, and TTL reads it back.
    let () = redis::cmd("SET")
        .arg(key("x"))
        .arg("1")
        .arg("EX")
        .arg("10")
        .query_async(&mut c)
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(key("x"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((9..=10).contains(&ttl), "TTL {ttl}");
    let unknown: redis::RedisResult<()> = redis::cmd("XADD")
        .arg(key("stream"))
        .arg("*")
        .arg("f")
        .arg("v")
        .query_async(&mut c)
        .await;
    assert!(unknown.unwrap_err().to_string().contains("unknown command"));
    let wrong: redis::RedisResult<()> = redis::cmd("GET").query_async(&mut c).await;
    assert!(
        wrong
            .unwrap_err()
            .to_string()
            .contains("wrong number of arguments")
    );
    // Still usable after the errors.
    let pong: String = redis::cmd("PING").query_async(&mut c).await.unwrap();
    assert_eq!(pong, "PONG");

    let hello: Value = redis::cmd("HELLO")
        .arg(if resp3 { 3 } else { 2 })
        .query_async(&mut c)
        .await
        .unwrap();
    let text = format!("{hello:?}");
    assert!(text.contains("proto"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_through_the_redis_client_in_resp2_and_resp3() {
    let (_kafka, kv) = kafkv().await;
    every_command(&kv, false).await;
    every_command(&kv, true).await;
    // The writes went through Kafka like any other.
    kv.store.catch_up().await.unwrap();
    assert_eq!(kv.state().await.get(&b"r3:c"[..]), Some(&b"3".to_vec()));
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_guards_resp_and_http() {
    let kafka = Kafka::start().await;
    let store = kafkv::Store::open(kafka.config(&unique_topic("auth")))
        .await
        .unwrap();
    let kv = Kafkv::serve_with(store, Some("s3cret")).await;

    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    s.write_all(b"GET a\r\nPING\r\nAUTH wrong\r\nAUTH s3cret\r\nGET a\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n\
          -WRONGPASS invalid username-password pair or user is disabled.\r\n+OK\r\n$-1\r\n",
    )
    .await;
    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    s.write_all(b"AUTH default s3cret\r\nAUTH nobody s3cret\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"+OK\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    let mut c = connect(&format!(
        "redis://default:s3cret@{}/?protocol=resp3",
        kv.resp
    ))
    .await;
    let () = c.set("k", "v").await.unwrap();

    let status = |path: &'static str, token: Option<&'static str>| {
        let (http, url) = (kv.http.clone(), kv.url(path));
        async move {
            let mut request = http.get(url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status("/v1/kv/k", None).await, 401);
    assert_eq!(status("/v1/kv/k", Some("wrong")).await, 401);
    assert_eq!(status("/keys/k", None).await, 401);
    assert_eq!(status("/metrics", None).await, 401);
    assert_eq!(status("/v1/kv/k", Some("s3cret")).await, 200);
    assert_eq!(status("/livez", None).await, 200);
    assert_eq!(status("/readyz", None).await, 200);
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_told_and_closed() {
    let kafka = Kafka::start().await;
    let store = kafkv::Store::open(kafka.config(&unique_topic("maxconn")))
        .await
        .unwrap();
    let mut front_ends = kafkv::service::FrontEnds::new(store.config());
    front_ends.resp.max_connections = 2;
    let kv = Kafkv::serve_front_ends(store, front_ends).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(kv.resp).await.unwrap();
        s.write_all(b"PING\r\n").await.unwrap();
        expect(&mut s, b"+PONG\r\n").await;
        open.push(s);
    }
    let mut third = TcpStream::connect(kv.resp).await.unwrap();
    expect(&mut third, b"-ERR max number of clients reached\r\n").await;
    expect_closed(&mut third).await;
    // Closing one frees its place.
    drop(open.pop());
    crate::harness::eventually("a freed connection slot is reused", || async {
        let Ok(mut s) = TcpStream::connect(kv.resp).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).await.is_ok() && &reply == b"+PONG\r\n"
    })
    .await;
    kv.stop().await;
}

fn tool(name: &str) -> tokio::process::Command {
    // Debian's redis-tools; .ci/run installs it. Missing, the test fails.
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{name} is not installed: apt-get install redis-tools"
    );
    tokio::process::Command::new(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_benchmark_work_against_kafkv() {
    let (_kafka, kv) = kafkv().await;
    let port = kv.resp.port().to_string();
    let cli = |args: &'static [&'static str]| {
        let port = port.clone();
        async move {
            let output = tool("redis-cli")
                .args(["-h", "127.0.0.1", "-p", &port])
                .args(args)
                .output()
                .await
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap()
        }
    };
    assert_eq!(cli(&["SET", "cli:key", "cli value"]).await.trim(), "OK");
    assert_eq!(cli(&["GET", "cli:key"]).await.trim(), "cli value");
    cli(&["SET", "cli:other", "x"]).await;
    let mut scanned: Vec<String> = cli(&["--scan", "--pattern", "cli:*"])
        .await
        .lines()
        .map(str::to_owned)
        .collect();
    scanned.sort();
    assert_eq!(scanned, ["cli:key", "cli:other"]);

    let output = tool("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            // redis-benchmark's default list up to its first non-string
            // test (LPUSH), and MSET from its end.
            "ping,set,get,incr,mset",
            "-n",
            "10000",
            "-q",
        ])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for test in [
        "PING_INLINE:",
        "PING_MBULK:",
        "SET:",
        "GET:",
        "INCR:",
        "MSET (10 keys):",
    ] {
        assert!(stdout.contains(test), "{test} missing:\n{stdout}");
    }
    assert!(
        !stdout.to_lowercase().contains("error") && !stderr.to_lowercase().contains("error"),
        "{stdout}\n{stderr}"
    );
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_not_delayed_behind_another_connections_writes() {
    let broker = crate::harness::BrokerProcess::start().await;
    let config = crate::harness::test_config(&broker.address(), &unique_topic("resp-isolation"));
    let kv = Kafkv::start(config).await;
    let mut writer = TcpStream::connect(kv.resp).await.unwrap();
    let mut reader = TcpStream::connect(kv.resp).await.unwrap();
    writer.write_all(b"SET ready yes\r\n").await.unwrap();
    expect(&mut writer, b"+OK\r\n").await;

    // Freeze the broker: the writer's next SET stays in flight.
    broker.pause();
    writer.write_all(b"SET stuck value\r\n").await.unwrap();
    crate::harness::eventually("the SET is in flight", || async {
        kv.store.writes_in_flight() == 1
    })
    .await;
    // Another connection's reads are answered meanwhile.
    reader
        .write_all(b"GET ready\r\nPING\r\nQUIT\r\n")
        .await
        .unwrap();
    expect(&mut reader, b"$3\r\nyes\r\n+PONG\r\n+OK\r\n").await;
    expect_closed(&mut reader).await;
    assert_eq!(kv.store.writes_in_flight(), 1, "the write is still waiting");

    broker.resume();
    expect(&mut writer, b"+OK\r\n").await;
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_arguments_is_a_protocol_error() {
    let kafka = Kafka::start().await;
    let store = kafkv::Store::open(kafka.config(&unique_topic("maxargs")))
        .await
        .unwrap();
    let mut front_ends = kafkv::service::FrontEnds::new(store.config());
    front_ends.resp.limits.max_args = 3;
    let kv = Kafkv::serve_front_ends(store, front_ends).await;
    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    s.write_all(b"MGET a b\r\n").await.unwrap();
    expect(&mut s, b"*2\r\n$-1\r\n$-1\r\n").await;
    s.write_all(b"*4\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"-ERR Protocol error: invalid multibulk length: 4 arguments, the limit is 3\r\n",
    )
    .await;
    expect_closed(&mut s).await;
    kv.stop().await;
}

/// The keyspace notifications one subscriber receives, as
/// `(pattern or "", channel, message)`.
async fn notifications(
    stream: &mut (impl futures::Stream<Item = redis::Msg> + Unpin),
    n: usize,
) -> Vec<(String, String, String)> {
    use futures::StreamExt;
    let mut got = Vec::new();
    while got.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a notification in time")
            .expect("subscribed");
        let pattern: String = msg.get_pattern().unwrap_or_default();
        got.push((
            pattern,
            msg.get_channel_name().to_owned(),
            msg.get_payload::<String>().unwrap(),
        ));
    }
    got
}

/// SET a, MSET b c, DEL a, UNLINK b under the prefix `p`, through the
/// `redis` crate on a connection of its own.
async fn set_mset_del_unlink(kv: &Kafkv, p: &str) {
    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let k = |name: &str| format!("{p}{name}");
    let _: () = c.set(k("a"), "1").await.unwrap();
    let _: () = redis::cmd("MSET")
        .arg(k("b"))
        .arg("2")
        .arg(k("c"))
        .arg("3")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: i64 = c.del(k("a")).await.unwrap();
    let _: i64 = redis::cmd("UNLINK")
        .arg(k("b"))
        .query_async(&mut c)
        .await
        .unwrap();
}

/// The `(pattern, channel, message)` notifications [`set_mset_del_unlink`]
/// makes for a subscriber of `__keyspace@0__:<p>*` and `__keyevent@0__:del`.
fn expected_notifications(p: &str) -> Vec<(String, String, String)> {
    let pattern = format!("__keyspace@0__:{p}*");
    let keyspace = |key: &str, event: &str| {
        (
            pattern.clone(),
            format!("__keyspace@0__:{p}{key}"),
            event.to_owned(),
        )
    };
    let keyevent = |key: &str| {
        (
            String::new(),
            "__keyevent@0__:del".to_owned(),
            format!("{p}{key}"),
        )
    };
    vec![
        keyspace("a", "set"),
        keyspace("b", "set"),
        keyspace("c", "set"),
        keyspace("a", "del"),
        keyevent("a"),
        keyspace("b", "del"),
        keyevent("b"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_for_set_mset_del_unlink_in_resp2_and_resp3() {
    let (_kafka, kv) = kafkv().await;
    for protocol in ["resp2", "resp3"] {
        let p = format!("{protocol}:");
        let client =
            redis::Client::open(format!("redis://{}/?protocol={protocol}", kv.resp)).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub
            .psubscribe(format!("__keyspace@0__:{p}*"))
            .await
            .unwrap();
        pubsub.subscribe("__keyevent@0__:del").await.unwrap();
        let mut messages = pubsub.on_message();

        set_mset_del_unlink(&kv, &p).await;
        assert_eq!(
            notifications(&mut messages, 7).await,
            expected_notifications(&p),
            "{protocol}"
        );

        let mut c = connect(&format!("redis://{}/", kv.resp)).await;
        // PUBSUB from another connection counts this subscriber.
        let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("__keyevent@0__:del")
            .arg("nobody")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(
            numsub,
            [
                Value::BulkString(b"__keyevent@0__:del".to_vec()),
                Value::Int(1),
                Value::BulkString(b"nobody".to_vec()),
                Value::Int(0),
            ]
        );
        let numpat: i64 = redis::cmd("PUBSUB")
            .arg("NUMPAT")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(numpat, 1);
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg("__keyevent*")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(channels, ["__keyevent@0__:del"]);
        drop(messages);
        drop(pubsub);
        // The subscriber's connection closed: its counts are gone.
        crate::harness::eventually("the closed subscriber is no longer counted", || {
            let mut c = c.clone();
            async move {
                let numpat: i64 = redis::cmd("PUBSUB")
                    .arg("NUMPAT")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                numpat == 0
            }
        })
        .await;
    }
    kv.stop().await;
}

/// Each write's notifications name what it did as Redis 7 does, on the
/// keyspace channel (the event) and the keyevent channel (the key), with
/// `RENAME` as `rename_from` then `rename_to`; a refused or failed write
/// sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_name_the_operation_as_redis_7_does() {
    let (_kafka, kv) = kafkv().await;
    let client = redis::Client::open(format!("redis://{}/", kv.resp)).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("__keyspace@0__:op:*").await.unwrap();
    pubsub.psubscribe("__keyevent@0__:*").await.unwrap();
    let mut messages = pubsub.on_message();

    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    for (command, refused) in [
        ("INCR op:n", false),
        ("INCRBY op:n 5", false),
        ("DECR op:n", false),
        ("INCRBYFLOAT op:n 0.5", false),
        ("APPEND op:s ab", false),
        ("SETRANGE op:s 1 X", false),
        ("SETBIT op:b 1 1", false),
        // op:s exists: refused, and no notification.
        ("SET op:s v NX", false),
        // Not an integer: an error, and no notification.
        ("INCR op:s", true),
        ("RENAME op:s op:t", false),
        ("COPY op:t op:u", false),
        ("GETDEL op:u", false),
        ("MSETNX op:m1 1 op:m2 2", false),
        // An expiry with the value: `set` then `expire`, as Redis 7 sends;
        // KEEPTTL keeps it (an operation record) and is only a `set`.
        ("SET op:e v EX 100", false),
        ("SETEX op:f 100 v", false),
        ("SET op:e w KEEPTTL", false),
        ("EXPIRE op:e 200", false),
        ("PERSIST op:e", false),
        ("SET op:end x", false),
    ] {
        let mut args = command.split(' ');
        let mut cmd = redis::cmd(args.next().unwrap());
        cmd.arg(args.collect::<Vec<_>>());
        let reply: redis::RedisResult<Value> = cmd.query_async(&mut c).await;
        assert_eq!(reply.is_err(), refused, "{command}: {reply:?}");
    }

    let keyspace = |key: &str, event: &str| {
        (
            "__keyspace@0__:op:*".to_owned(),
            format!("__keyspace@0__:op:{key}"),
            event.to_owned(),
        )
    };
    let keyevent = |event: &str, key: &str| {
        (
            "__keyevent@0__:*".to_owned(),
            format!("__keyevent@0__:{event}"),
            format!("op:{key}"),
        )
    };
    let expected: Vec<_> = [
        ("n", "incrby"),
        ("n", "incrby"),
        ("n", "incrby"),
        ("n", "incrbyfloat"),
        ("s", "append"),
        ("s", "setrange"),
        ("b", "setbit"),
        ("s", "rename_from"),
        ("t", "rename_to"),
        ("u", "copy_to"),
        ("u", "del"),
        ("m1", "set"),
        ("m2", "set"),
        ("e", "set"),
        ("e", "expire"),
        ("f", "set"),
        ("f", "expire"),
        ("e", "set"),
        ("e", "expire"),
        ("e", "persist"),
        ("end", "set"),
    ]
    .into_iter()
    .flat_map(|(key, event)| [keyspace(key, event), keyevent(event, key)])
    .collect();
    assert_eq!(notifications(&mut messages, expected.len()).await, expected);
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_mode_allows_only_what_redis_allows_and_publish_is_refused() {
    let (_kafka, kv) = kafkv().await;
    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    s.write_all(b"CONFIG GET notify-keyspace-events\r\nPUBLISH ch hi\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"*2\r\n$22\r\nnotify-keyspace-events\r\n$9\r\ng$lshzxKE\r\n-ERR kafkv has no message bus",
    )
    .await;
    let mut rest = [0u8; 512];
    let _ = s.read(&mut rest).await.unwrap();

    s.write_all(b"SUBSCRIBE a b\r\nGET k\r\nPING\r\nPING hi\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
          *3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n\
          -ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n\
          *2\r\n$4\r\npong\r\n$0\r\n\r\n\
          *2\r\n$4\r\npong\r\n$2\r\nhi\r\n",
    )
    .await;
    // Unsubscribing from everything leaves subscribe mode.
    s.write_all(b"UNSUBSCRIBE\r\nUNSUBSCRIBE\r\nGET k\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n\
          *3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n\
          *3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n\
          $-1\r\n",
    )
    .await;
    // RESP3: subscriptions are pushes, and other commands still run.
    s.write_all(b"HELLO 3\r\n").await.unwrap();
    let _ = s.read(&mut rest).await.unwrap();
    s.write_all(b"SUBSCRIBE __keyevent@0__:set\r\nSET k v\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b">3\r\n$9\r\nsubscribe\r\n$18\r\n__keyevent@0__:set\r\n:1\r\n+OK\r\n\
          >3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n",
    )
    .await;
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_receives_keyspace_notifications() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let (_kafka, kv) = kafkv().await;
    let mut cli = tool("redis-cli")
        .args([
            "-p",
            &kv.resp.port().to_string(),
            "psubscribe",
            "__keyspace@0__:cli*",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("redis-cli prints in time")
            .unwrap()
            .expect("redis-cli is running")
    };
    // The confirmation: psubscribe, the pattern, 1.
    assert_eq!(next().await, "psubscribe");
    assert_eq!(next().await, "__keyspace@0__:cli*");
    assert_eq!(next().await, "1");
    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let _: () = c.set("cli-key", "v").await.unwrap();
    let _: i64 = c.del("cli-key").await.unwrap();
    let printed = [next().await, next().await, next().await, next().await];
    assert_eq!(
        printed,
        [
            "pmessage",
            "__keyspace@0__:cli*",
            "__keyspace@0__:cli-key",
            "set"
        ]
    );
    let printed = [next().await, next().await, next().await, next().await];
    assert_eq!(printed[3], "del");
    kv.stop().await;
}

/// A command running `tests/py/<script>` with redis-py's Python.
fn redis_py_script(script: &str) -> tokio::process::Command {
    let mut command =
        tokio::process::Command::new(crate::harness::python_with("redis", "redis==8.1.0"));
    command.arg(format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR")));
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_receives_keyspace_notifications_in_resp2_and_resp3() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let (_kafka, kv) = kafkv().await;
    for protocol in ["2", "3"] {
        let p = format!("py{protocol}:");
        let mut child = redis_py_script("keyspace_notifications.py")
            .args([&kv.resp.port().to_string(), protocol, &p, "7"])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut line = async || {
            tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("redis-py prints in time")
                .unwrap()
                .expect("the redis-py subscriber is running")
        };
        assert_eq!(line().await, "ready");
        set_mset_del_unlink(&kv, &p).await;
        let mut got = Vec::new();
        for _ in 0..7 {
            let (pattern, channel, message): (String, String, String) =
                serde_json::from_str(&line().await).unwrap();
            got.push((pattern, channel, message));
        }
        assert_eq!(got, expected_notifications(&p), "RESP{protocol}");
        let status = child.wait().await.unwrap();
        assert!(status.success(), "the redis-py subscriber failed");
    }
    kv.stop().await;
}

// redis-py's optimistic transaction (WATCH, GET, MULTI, SET, EXEC, retried
// when EXEC answers nil) from concurrent threads: no increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_transactions_from_concurrent_clients_lose_no_update() {
    let (_kafka, kv) = kafkv().await;
    let (workers, increments) = (4, 25);
    let output = redis_py_script("transaction_counter.py")
        .args([
            &kv.resp.port().to_string(),
            "py:counter",
            &workers.to_string(),
            &increments.to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let mut fields = printed.split_whitespace();
    let value: i64 = fields.next().unwrap().parse().unwrap();
    let retried: i64 = fields.next().unwrap().parse().unwrap();
    assert_eq!(
        value,
        workers * increments,
        "retried {retried} transactions"
    );
    // How often EXEC answered nil and redis-py retried: the conflicts the
    // check above survived.
    eprintln!("redis-py transactions: {value} increments, {retried} retried");
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_queues_until_exec_and_discard_writes_nothing() {
    let (kafka, kv) = kafkv().await;
    let topic = kv.store.config().topic.clone();
    let mut s = TcpStream::connect(kv.resp).await.unwrap();

    // Queued commands run only at EXEC, in order; the read sees the write.
    s.write_all(b"MULTI\r\nSET k 1\r\nGET k\r\nEXEC\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n$1\r\n1\r\n",
    )
    .await;

    // DISCARD drops the queue: nothing reaches the topic.
    let end = crate::harness::end_offset_total(&kafka.brokers(), &topic).await;
    s.write_all(b"MULTI\r\nSET d v\r\nDISCARD\r\nGET d\r\n")
        .await
        .unwrap();
    expect(&mut s, b"+OK\r\n+QUEUED\r\n+OK\r\n$-1\r\n").await;
    assert_eq!(
        crate::harness::end_offset_total(&kafka.brokers(), &topic).await,
        end
    );

    // Misuse answers as Redis does.
    s.write_all(b"EXEC\r\nDISCARD\r\nMULTI\r\nMULTI\r\nWATCH k\r\nEXEC\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"-ERR EXEC without MULTI\r\n-ERR DISCARD without MULTI\r\n+OK\r\n\
          -ERR MULTI calls can not be nested\r\n-ERR WATCH inside MULTI is not allowed\r\n*0\r\n",
    )
    .await;

    // An unknown command or a wrong arity while queueing discards the whole
    // transaction at EXEC; nothing queued runs.
    s.write_all(
        b"MULTI\r\nSET e 1\r\nNOSUCH\r\nEXEC\r\nMULTI\r\nSET e 1\r\nGET\r\nEXEC\r\nGET e\r\n",
    )
    .await
    .unwrap();
    expect(
        &mut s,
        b"+OK\r\n+QUEUED\r\n-ERR unknown command 'NOSUCH', with args beginning with: \r\n\
          -EXECABORT Transaction discarded because of previous errors.\r\n\
          +OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'get' command\r\n\
          -EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n",
    )
    .await;

    // An argument the command itself refuses (a syntax error, a bad
    // offset) is queued and fails at EXEC, alone, as in Redis.
    ask(
        &mut s,
        b"MULTI\r\nSET f 1\r\nSET g 1 NOSUCHOPTION\r\nGETBIT f x\r\nEXEC\r\nGET f\r\n",
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n+OK\r\n-ERR syntax error\r\n\
          -ERR bit offset is not an integer or out of range\r\n$1\r\n1\r\n",
    )
    .await;

    // WATCH makes the next EXEC one conditional record: a write to a
    // watched key in between (here, by this same client) makes it answer
    // nil and write nothing; unchanged, it runs; EXEC unwatches either way.
    s.write_all(b"SET w 1\r\nWATCH w\r\nSET w 2\r\nMULTI\r\nSET w 3\r\nEXEC\r\nGET w\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n+QUEUED\r\n*-1\r\n$1\r\n2\r\n",
    )
    .await;
    s.write_all(b"WATCH w\r\nMULTI\r\nINCR w\r\nGET w\r\nEXEC\r\nUNWATCH\r\n")
        .await
        .unwrap();
    expect(
        &mut s,
        b"+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:3\r\n$1\r\n3\r\n+OK\r\n",
    )
    .await;

    // A client library's transactional pipeline (MULTI/EXEC around it).
    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let (set, got): (String, String) = redis::pipe()
        .atomic()
        .set("p", "2")
        .get("p")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((set.as_str(), got.as_str()), ("OK", "2"));
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_getrange_touch_time_and_the_script_flushes() {
    let (kafka, kv) = kafkv().await;
    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let () = c.set("k", "Hello World").await.unwrap();
    let () = c.set("other", "x").await.unwrap();
    let range = |name: &'static str, start: i64, end: i64| {
        let mut c = c.clone();
        async move {
            let got: String = redis::cmd(name)
                .arg("k")
                .arg(start)
                .arg(end)
                .query_async(&mut c)
                .await
                .unwrap();
            got
        }
    };
    assert_eq!(range("GETRANGE", 0, 4).await, "Hello");
    assert_eq!(range("SUBSTR", -3, -1).await, "rld");
    assert_eq!(range("GETRANGE", 5, 3).await, "");
    let touched: i64 = redis::cmd("TOUCH")
        .arg("k")
        .arg("nothing")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(touched, 1);
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    assert!(seconds > 1_700_000_000 && micros < 1_000_000);
    for command in ["FUNCTION", "SCRIPT"] {
        let ok: String = redis::cmd(command)
            .arg("FLUSH")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ok, "OK");
    }
    let refused = redis::cmd("FUNCTION")
        .arg("LIST")
        .query_async::<Value>(&mut c)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("not supported"), "{refused}");

    // FLUSHALL answers once a tombstone for every key is acknowledged.
    let ok: String = redis::cmd("FLUSHALL")
        .arg("SYNC")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(ok, "OK");
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 0);
    kv.store.catch_up().await.unwrap();
    let records = read_topic(&kafka.brokers(), &kv.store.config().topic).await;
    assert!(
        replay(&records).is_empty(),
        "the log replays to an empty store"
    );
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_stat_reads_every_figure_it_needs() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let (_kafka, kv) = kafkv().await;
    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let () = c.set("k", "v").await.unwrap();
    let mut stat = tool("redis-cli")
        .args(["-p", &kv.resp.port().to_string(), "--stat", "-i", "0.1"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(stat.stdout.take().unwrap()).lines();
    let mut figures = None;
    for _ in 0..4 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("redis-cli --stat prints in time")
            .unwrap()
            .expect("redis-cli --stat is running");
        if line.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            figures = Some(line);
            break;
        }
    }
    let figures = figures.expect("a line of figures");
    // keys, mem, clients, blocked, requests (+delta), connections: no
    // missing field shows as i64::MIN.
    assert!(!figures.contains("-9223372036854775808"), "{figures}");
    let fields: Vec<&str> = figures.split_whitespace().collect();
    assert_eq!(fields[0], "1", "one key: {figures}");
    assert!(
        fields[1].ends_with('M') || fields[1].ends_with('K'),
        "memory: {figures}"
    );
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_pipeline_runs_as_a_multi_exec_transaction() {
    let (_kafka, kv) = kafkv().await;
    for protocol in ["2", "3"] {
        let p = format!("tx{protocol}:");
        let output = redis_py_script("transaction_pipeline.py")
            .args([&kv.resp.port().to_string(), protocol, &p])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!([[true, true, "1", ["1", "2"]], "2"]),
            "RESP{protocol}"
        );
        // redis-py raises the queued command's error once EXEC is refused.
        let error = lines[1][0].as_str().expect("the refused pipeline raised");
        assert!(error.contains("unknown command 'NOSUCHCOMMAND'"), "{error}");
        assert_eq!(lines[1][1], serde_json::Value::Null, "a refused EXEC wrote");
    }
    kv.stop().await;
}

/// Sends `request` and checks that exactly `expected` comes back.
async fn ask(stream: &mut TcpStream, request: &[u8], expected: &[u8]) {
    stream.write_all(request).await.unwrap();
    expect(stream, expected).await;
}

/// Reads one line of a reply (a simple string, an error, an integer),
/// without its CRLF.
async fn line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        let byte = tokio::time::timeout(Duration::from_secs(30), stream.read_u8())
            .await
            .expect("reply in time")
            .expect("read reply");
        line.push(byte);
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomkey_getbit_lcs_memory_object_lastsave_as_redis() {
    let (_kafka, kv) = kafkv().await;
    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    ask(&mut s, b"RANDOMKEY\r\n", b"$-1\r\n").await;

    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let () = c.set("foo", "x").await.unwrap();
    let () = c.set("bar", "y").await.unwrap();
    let () = c.set("gone", "z").await.unwrap();
    let _: i64 = c.del("gone").await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let key: String = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
        seen.insert(key);
    }
    assert_eq!(seen, ["bar", "foo"].map(String::from).into());

    // GETBIT: '`' is 0b0110_0000.
    let () = c.set("bits", "`").await.unwrap();
    let bits: Vec<i64> = {
        let mut bits = Vec::new();
        for offset in [0, 1, 2, 3, 100] {
            bits.push(c.getbit("bits", offset).await.unwrap());
        }
        bits
    };
    assert_eq!(bits, [0, 1, 1, 0, 0]);
    ask(
        &mut s,
        b"GETBIT bits -1\r\n",
        b"-ERR bit offset is not an integer or out of range\r\n",
    )
    .await;

    // LCS with Redis's documented example, in raw RESP2.
    let () = c.set("key1", "ohmytext").await.unwrap();
    let () = c.set("key2", "mynewtext").await.unwrap();
    ask(
        &mut s,
        b"LCS key1 key2\r\nLCS key1 key2 LEN\r\n",
        b"$6\r\nmytext\r\n:6\r\n",
    )
    .await;
    ask(
        &mut s,
        b"LCS key1 key2 IDX MINMATCHLEN 0 WITHMATCHLEN\r\n",
        b"*4\r\n$7\r\nmatches\r\n*2\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
          *3\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n$3\r\nlen\r\n:6\r\n",
    )
    .await;
    ask(
        &mut s,
        b"LCS key1 key2 LEN IDX\r\n",
        b"-ERR If you want both the length and indexes, please just use IDX.\r\n",
    )
    .await;

    // Two 5,000-byte values need a 100 MB table: refused, nothing computed.
    let big = "x".repeat(5_000);
    let () = c.mset(&[("big1", &big), ("big2", &big)]).await.unwrap();
    s.write_all(b"LCS big1 big2\r\n").await.unwrap();
    let refused = line(&mut s).await;
    assert!(
        refused.starts_with("-ERR Insufficient memory") && refused.contains("64 MiB"),
        "{refused}"
    );

    // MEMORY USAGE counts at least the key and value; nil when missing.
    let usage: i64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("key2")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(usage >= 4 + 9, "{usage}");
    ask(
        &mut s,
        b"MEMORY USAGE missing\r\nOBJECT ENCODING missing\r\n",
        b"$-1\r\n$-1\r\n",
    )
    .await;

    let () = c.set("n", "12345").await.unwrap();
    ask(
        &mut s,
        b"OBJECT ENCODING n\r\nOBJECT ENCODING key1\r\nOBJECT REFCOUNT n\r\n",
        b"$3\r\nint\r\n$6\r\nembstr\r\n:1\r\n",
    )
    .await;
    s.write_all(b"OBJECT FREQ n\r\n").await.unwrap();
    let freq = line(&mut s).await;
    let () = c.set("small", "42").await.unwrap();
    ask(&mut s, b"OBJECT REFCOUNT small\r\n", b":2147483647\r\n").await;
    assert!(freq.starts_with("-ERR An LFU maxmemory policy"), "{freq}");

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let lastsave: i64 = redis::cmd("LASTSAVE").query_async(&mut c).await.unwrap();
    assert!((lastsave - now).abs() <= 5, "{lastsave} vs {now}");
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_info_sections_command_info_and_subcommand_errors_as_redis() {
    let (_kafka, kv) = kafkv().await;
    let mut c = connect(&format!("redis://{}/", kv.resp)).await;
    let config_set = |name: &'static str, value: &'static str| {
        let mut c = c.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async::<()>(&mut c)
                .await
                .map_err(|e| e.to_string())
        }
    };
    // What kafkv already does is accepted; anything else says which flag.
    assert_eq!(config_set("notify-keyspace-events", "KEA").await, Ok(()));
    assert_eq!(config_set("save", "").await, Ok(()));
    let error = config_set("notify-keyspace-events", "Ex")
        .await
        .unwrap_err();
    assert!(error.contains("KEA"), "{error}");
    let error = config_set("maxclients", "5").await.unwrap_err();
    assert!(error.contains("--resp-max-connections"), "{error}");
    let error = config_set("no-such-parameter", "1").await.unwrap_err();
    assert!(error.contains("Unknown option"), "{error}");

    // Commands and errors are counted; commandstats only in all/everything.
    let _: Option<String> = c.get("k").await.unwrap();
    let _ = redis::cmd("GET").query_async::<()>(&mut c).await; // rejected: arity
    let _ = redis::cmd("NOSUCH").query_async::<()>(&mut c).await;
    // An alias counts under its own name; MULTI and EXEC count as calls.
    let _: i64 = redis::cmd("UNLINK")
        .arg("nothing")
        .query_async(&mut c)
        .await
        .unwrap();
    let _: (Option<String>,) = redis::pipe()
        .atomic()
        .get("k")
        .query_async(&mut c)
        .await
        .unwrap();
    let info = |section: &'static str| {
        let mut c = c.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg(section)
                .query_async(&mut c)
                .await
                .unwrap();
            info
        }
    };
    let commandstats = info("commandstats").await;
    let get = commandstats
        .lines()
        .find(|l| l.starts_with("cmdstat_get:"))
        .expect("cmdstat_get");
    assert!(
        get.starts_with("cmdstat_get:calls=2,")
            && get.ends_with(",rejected_calls=1,failed_calls=0"),
        "{get}"
    );
    assert!(!commandstats.contains("used_memory"), "{commandstats}");
    for name in ["unlink", "multi", "exec"] {
        let row = format!("cmdstat_{name}:calls=1,");
        assert!(commandstats.contains(&row), "{row}:\n{commandstats}");
    }
    assert!(!commandstats.contains("cmdstat_del:"), "{commandstats}");
    let errorstats = info("errorstats").await;
    assert!(errorstats.contains("errorstat_ERR:count="), "{errorstats}");
    let default = info("default").await;
    assert!(!default.contains("rejected_calls") && default.contains("used_memory"));
    let everything = info("everything").await;
    for needle in [
        "rejected_calls",
        "master_repl_offset",
        "used_cpu_user",
        "# Kafka",
    ] {
        assert!(
            everything.contains(needle),
            "INFO everything lacks {needle}"
        );
    }
    let twice: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("all")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(twice.matches("# CPU").count(), 1, "{twice}");

    // Redis 7's COMMAND INFO: ten fields, with key specs for key commands.
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .query_async(&mut c)
        .await
        .unwrap();
    let Value::Array(entries) = info else {
        panic!("{info:?}")
    };
    let Value::Array(get) = &entries[0] else {
        panic!("{entries:?}")
    };
    assert_eq!(get.len(), 10, "{get:?}");
    assert!(
        matches!(&get[8], Value::Array(specs) if specs.len() == 1),
        "{get:?}"
    );

    // Arity errors name the subcommand; names with spaces are refused.
    let mut s = TcpStream::connect(kv.resp).await.unwrap();
    ask(
        &mut s,
        b"CLIENT SETNAME\r\nCONFIG GET\r\n",
        b"-ERR wrong number of arguments for 'client|setname' command\r\n\
          -ERR wrong number of arguments for 'config|get' command\r\n",
    )
    .await;
    ask(
        &mut s,
        b"HELLO 2 SETNAME \"a b\"\r\n",
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
    kv.stop().await;
}

/// A key swept off the topic is counted where Redis counts it (`INFO stats`
/// `expired_keys`) and in the sweep metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swept_key_counts_in_info_stats_and_the_sweep_metrics() {
    let (_kafka, kv) = kafkv().await;
    let mut c = crate::harness::redis_connection(kv.resp).await.unwrap();
    let expired_keys = |info: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix("expired_keys:"))
            .expect("expired_keys in INFO stats")
            .trim()
            .parse()
            .unwrap()
    };
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(expired_keys(&info), 0);
    let () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(50)
        .query_async(&mut c)
        .await
        .unwrap();
    crate::harness::eventually("the swept key is counted", || {
        let mut c = c.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("stats")
                .query_async(&mut c)
                .await
                .unwrap();
            expired_keys(&info) == 1
        }
    })
    .await;
    let metrics = kv.metrics().await;
    for name in [
        "kafkv_sweeps_written_total",
        "kafkv_sweeps_applied_total{result=\"deleted\"}",
        "kafkv_sweep_delay_seconds_count",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    kv.stop().await;
}
