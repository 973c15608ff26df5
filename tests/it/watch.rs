//! Change streams against a real broker: order and completeness checked
//! against the topic as an independent consumer reads it, resume from
//! memory and from the log, refused tokens, snapshot under concurrent
//! writes, slow watchers, and the SSE front end across a server restart.

use std::{collections::BTreeMap, time::Duration};

use bytes::Bytes;
use futures::StreamExt;
use kafkv::{
    Store, StoreConfig,
    watch::{Start, Token, TokenError, Watch, WatchError, WatchEvent, WatchOptions},
};

use crate::harness::{
    Kafka, Kafkv, PATIENCE, RawRecord, eventually, read_topic, replay, unique_topic,
};

/// One change as a watch reports it and as the topic holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    partition: i32,
    offset: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl From<&RawRecord> for Seen {
    fn from(r: &RawRecord) -> Self {
        Seen {
            partition: r.partition,
            offset: r.offset,
            key: r.key.clone().unwrap_or_default(),
            value: r.value.clone(),
        }
    }
}

/// The change an event reports, if it is one.
fn seen(event: &WatchEvent) -> Option<Seen> {
    event.record().map(|r| Seen {
        partition: r.partition,
        offset: r.offset,
        key: r.key.to_vec(),
        value: r.value.map(|v| v.to_vec()),
    })
}

async fn next(watch: &mut Watch) -> WatchEvent {
    tokio::time::timeout(PATIENCE, watch.next())
        .await
        .expect("a watch event in time")
        .expect("the watch is still open")
}

/// The next `n` changes, and the token after the last of them.
async fn changes(watch: &mut Watch, n: usize) -> (Vec<Seen>, Token) {
    let mut out = Vec::new();
    loop {
        let event = next(watch).await;
        if let Some(change) = seen(&event) {
            out.push(change);
            if out.len() == n {
                return (out, event.token().expect("changes carry tokens").clone());
            }
        }
    }
}

/// Per partition, in offset order.
fn by_partition(changes: &[Seen]) -> BTreeMap<i32, Vec<Seen>> {
    let mut out: BTreeMap<i32, Vec<Seen>> = BTreeMap::new();
    for change in changes {
        out.entry(change.partition)
            .or_default()
            .push(change.clone());
    }
    out
}

fn four_partitions(kafka: &Kafka, name: &str) -> StoreConfig {
    let mut config = kafka.config(&unique_topic(name));
    config.partitions = 4;
    config
}

fn after(token: &Token) -> WatchOptions {
    WatchOptions {
        start: Start::After(token.encode()),
        ..WatchOptions::default()
    }
}

/// Writes `n` puts (every fifth a delete of an earlier key) through `stores`
/// in turn.
async fn write_mix(stores: &[&Store], n: usize, tag: &str) {
    for i in 0..n {
        let store = stores[i % stores.len()];
        if i % 5 == 4 {
            store
                .delete(format!("{tag}-{}", i - 2).as_bytes())
                .await
                .unwrap();
        } else {
            store
                .put(
                    format!("{tag}-{i}").as_bytes(),
                    Bytes::from(format!("v{i}")),
                )
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_and_other_instances_writes_arrive_once_in_log_order() {
    let kafka = Kafka::start().await;
    let config = four_partitions(&kafka, "watch-order");
    let here = Store::open(config.clone()).await.unwrap();
    let other = Store::open(config.clone()).await.unwrap();
    let mut watch = here.watch(WatchOptions::default()).await.unwrap();

    write_mix(&[&here, &other], 100, "k").await;
    let records = read_topic(&kafka.brokers(), &config.topic).await;
    let (got, _) = changes(&mut watch, records.len()).await;

    let expected: Vec<Seen> = records.iter().map(Seen::from).collect();
    assert_eq!(by_partition(&got), by_partition(&expected));
    assert!(by_partition(&got).len() > 1, "the keys span partitions");
    here.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_watch_sees_only_its_keys_and_its_position_moves_past_the_rest() {
    let kafka = Kafka::start().await;
    let store = Store::open(kafka.config(&unique_topic("watch-prefix")))
        .await
        .unwrap();
    let mut watch = store
        .watch(WatchOptions {
            prefix: Bytes::from_static(b"app/"),
            values: false,
            progress_every: Duration::from_millis(50),
            ..WatchOptions::default()
        })
        .await
        .unwrap();
    for key in ["app/a", "other/b", "app/c", "apple"] {
        store
            .put(key.as_bytes(), Bytes::from_static(b"v"))
            .await
            .unwrap();
    }
    let (got, _) = changes(&mut watch, 2).await;
    let keys: Vec<&[u8]> = got.iter().map(|c| &c.key[..]).collect();
    assert_eq!(keys, [b"app/a".as_slice(), b"app/c"]);
    assert!(got.iter().all(|c| c.value.is_none()), "values=false");

    // Nothing more under the prefix: progress tokens move past "apple",
    // the last record (once this instance applied it).
    store.catch_up().await.unwrap();
    let end = store.status().partitions[0].position;
    loop {
        match next(&mut watch).await {
            WatchEvent::Progress { token } if token.positions()[0] >= end => {
                assert_eq!(token.positions()[0], end, "nothing was written after");
                break;
            }
            WatchEvent::Progress { .. } => {}
            other => panic!("only progress was expected, got {other:?}"),
        }
    }
    store.close().await;
}

/// Disconnects after some events and resumes with the last token, on this
/// instance and on a fresh one: together the two runs are the topic's
/// changes exactly once.
async fn resume_is_gapless(config: StoreConfig, from_log: bool) {
    let kafka_brokers = config.brokers.clone();
    let store = Store::open(config.clone()).await.unwrap();
    let mut watch = store.watch(WatchOptions::default()).await.unwrap();
    write_mix(&[&store], 40, "a").await;
    let (mut got, token) = changes(&mut watch, 25).await;
    drop(watch);
    write_mix(&[&store], 40, "b").await;

    let records = read_topic(&kafka_brokers, &config.topic).await;
    let mut resumed = store.watch(after(&token)).await.unwrap();
    assert_eq!(resumed.is_reading_log(), from_log);
    let (rest, _) = changes(&mut resumed, records.len() - 25).await;
    got.extend(rest);
    let expected: Vec<Seen> = records.iter().map(Seen::from).collect();
    assert_eq!(by_partition(&got), by_partition(&expected));

    // The token means the same to another instance.
    let fresh = Store::open(config).await.unwrap();
    let mut elsewhere = fresh.watch(after(&token)).await.unwrap();
    assert!(
        elsewhere.is_reading_log(),
        "a fresh instance has no window yet"
    );
    let (rest, _) = changes(&mut elsewhere, records.len() - 25).await;
    let after_token: Vec<Seen> = expected
        .into_iter()
        .filter(|r| r.offset >= token.positions()[r.partition as usize])
        .collect();
    assert_eq!(by_partition(&rest), by_partition(&after_token));
    store.close().await;
    fresh.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_from_memory_has_no_gap_and_no_duplicate() {
    let kafka = Kafka::start().await;
    resume_is_gapless(four_partitions(&kafka, "watch-resume"), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_older_than_the_window_reads_the_log_with_no_gap_and_no_duplicate() {
    let kafka = Kafka::start().await;
    let mut config = four_partitions(&kafka, "watch-resume-log");
    // No recent window: every resume reads the topic.
    config.watch_window_bytes = 0;
    resume_is_gapless(config, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_malformed_and_expired_tokens_are_refused() {
    let kafka = Kafka::start().await;
    let mut config = kafka.config(&unique_topic("watch-tokens"));
    config.delete_retention = Duration::from_secs(1);
    config.watch_window_bytes = 0;
    let store = Store::open(config).await.unwrap();
    let other = Store::open(kafka.config(&unique_topic("watch-tokens-other")))
        .await
        .unwrap();
    let foreign = other.watch(WatchOptions::default()).await.unwrap().token();
    let error = store.watch(after(&foreign)).await.err().expect("refused");
    assert!(
        matches!(error, WatchError::Token(TokenError::Foreign(_))),
        "{error}"
    );
    let error = store
        .watch(WatchOptions {
            start: Start::After("not-a-token".into()),
            ..WatchOptions::default()
        })
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(error, WatchError::Token(TokenError::Malformed(_))),
        "{error}"
    );

    // Older than the topic's delete.retention.ms: deletes since may be gone.
    let token = store.watch(WatchOptions::default()).await.unwrap().token();
    store.put(b"k", Bytes::from_static(b"v")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let error = store.watch(after(&token)).await.err().expect("refused");
    assert!(matches!(error, WatchError::Expired(_)), "{error}");
    assert!(error.to_string().contains("start=snapshot"), "{error}");
    store.close().await;
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_its_changes_reproduce_the_final_state_under_concurrent_writes() {
    let kafka = Kafka::start().await;
    let config = four_partitions(&kafka, "watch-snapshot");
    let store = Store::open(config.clone()).await.unwrap();
    write_mix(&[&store], 200, "s").await;

    let writer = {
        let store = store.clone();
        tokio::spawn(async move { write_mix(&[&store], 300, "t").await })
    };
    let mut watch = store
        .watch(WatchOptions {
            start: Start::Snapshot,
            progress_every: Duration::from_millis(50),
            ..WatchOptions::default()
        })
        .await
        .unwrap();
    let mut state: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    loop {
        match next(&mut watch).await {
            WatchEvent::Put {
                key,
                value,
                token: None,
                ..
            } => {
                state.insert(key.to_vec(), value.unwrap().to_vec());
            }
            WatchEvent::SnapshotEnd { .. } => break,
            other => panic!("the snapshot comes first, got {other:?}"),
        }
    }
    writer.await.unwrap();
    let records = read_topic(&kafka.brokers(), &config.topic).await;
    // Where the watch has seen everything written.
    let ends: Vec<i64> = (0..4)
        .map(|p| {
            records
                .iter()
                .filter(|r| r.partition == p)
                .map(|r| r.offset + 1)
                .max()
                .unwrap_or(0)
        })
        .collect();
    loop {
        let event = next(&mut watch).await;
        if let Some(change) = seen(&event) {
            match change.value {
                Some(value) => state.insert(change.key, value),
                None => state.remove(&change.key),
            };
        }
        let position = event
            .token()
            .expect("every event after the snapshot has one");
        if position.positions().iter().zip(&ends).all(|(p, e)| p >= e) {
            break;
        }
    }
    assert_eq!(state, replay(&records));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_ends_lagged_while_writes_and_other_watchers_go_on() {
    let kafka = Kafka::start().await;
    let mut config = kafka.config(&unique_topic("watch-slow"));
    config.watch_buffer = 4;
    let store = Store::open(config).await.unwrap();
    let mut slow = store.watch(WatchOptions::default()).await.unwrap();
    let mut keeping_up = store.watch(WatchOptions::default()).await.unwrap();
    let reader = tokio::spawn(async move {
        let (got, _) = changes(&mut keeping_up, 300).await;
        got
    });
    // Sequential writes: each is applied as a batch of its own or a few.
    write_mix(&[&store], 300, "w").await;
    assert_eq!(reader.await.unwrap().len(), 300);

    let mut delivered = 0;
    let last = loop {
        let event = next(&mut slow).await;
        match event {
            WatchEvent::Lagged { token } => break token,
            event => {
                assert!(seen(&event).is_some(), "{event:?}");
                delivered += 1;
            }
        }
    };
    assert!(delivered < 300, "the slow watcher fell behind");
    assert!(slow.next().await.is_none(), "lagged is the last event");
    // Its token resumes exactly after what it delivered.
    let mut resumed = store.watch(after(&last)).await.unwrap();
    let (rest, _) = changes(&mut resumed, 300 - delivered).await;
    assert_eq!(rest.len(), 300 - delivered);
    store.close().await;
}

/// One Server-Sent Event.
#[derive(Debug, Default, Clone)]
struct Sse {
    id: Option<String>,
    event: String,
    data: serde_json::Value,
}

/// Reads SSE events from `response` until `stop` says so.
async fn read_sse(response: reqwest::Response, mut stop: impl FnMut(&Sse) -> bool) -> Vec<Sse> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    loop {
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .expect("an SSE chunk in time")
            .expect("the stream is open")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = Sse::default();
            for line in block.lines() {
                if let Some(id) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                    event.id = Some(id.to_owned());
                } else if let Some(name) =
                    line.strip_prefix("event: ").or(line.strip_prefix("event:"))
                {
                    event.event = name.to_owned();
                } else if let Some(data) =
                    line.strip_prefix("data: ").or(line.strip_prefix("data:"))
                {
                    event.data = serde_json::from_str(data).unwrap();
                }
            }
            if event.event.is_empty() {
                continue; // a keep-alive comment
            }
            let done = stop(&event);
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_snapshot_then_changes_resume_with_last_event_id_after_a_restart() {
    let kafka = Kafka::start().await;
    let config = kafka.config(&unique_topic("watch-sse"));
    let kv = Kafkv::start(config.clone()).await;
    kv.store
        .put(b"cfg/a", Bytes::from_static(b"1"))
        .await
        .unwrap();
    kv.store
        .put(b"cfg/\xff", Bytes::from_static(b"2"))
        .await
        .unwrap();
    kv.store
        .put(b"other", Bytes::from_static(b"3"))
        .await
        .unwrap();

    let response = kv
        .http
        .get(kv.url("/v1/watch?prefix=cfg%2F&start=snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let writer = kv.store.clone();
    let writes = tokio::spawn(async move {
        writer
            .put(b"cfg/b", Bytes::from_static(b"4"))
            .await
            .unwrap();
        writer.delete(b"cfg/a").await.unwrap();
    });
    let events = read_sse(response, |e| e.event == "delete").await;
    writes.await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(kinds, ["put", "put", "snapshot-end", "put", "delete"]);
    assert_eq!(events[0].data["key"], "cfg/a");
    assert_eq!(events[1].data["key_base64"], "Y2ZnL/8=");
    assert!(
        events[0].id.is_none(),
        "snapshot entries cannot be resumed from"
    );
    assert_eq!(events[3].data["key"], "cfg/b");
    assert_eq!(events[3].data["value"], "4");
    let last_id = events[4].id.clone().expect("changes carry their token");
    assert_eq!(events[4].data["token"], last_id.as_str());

    // The server restarts; writes go on meanwhile.
    kv.stop().await;
    let writer = Store::open(config.clone()).await.unwrap();
    writer
        .put(b"cfg/c", Bytes::from_static(b"5"))
        .await
        .unwrap();
    writer.close().await;
    let kv = Kafkv::start(config).await;
    let response = kv
        .http
        .get(kv.url("/v1/watch?prefix=cfg%2F&start=snapshot"))
        .header("Last-Event-ID", &last_id)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = read_sse(response, |e| e.event == "put").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].data["key"], "cfg/c");

    // Refused tokens: 400 malformed, 400 foreign.
    let status = |url: String, id: Option<&str>| {
        let request = kv.http.get(url);
        let request = match id {
            Some(id) => request.header("Last-Event-ID", id),
            None => request,
        };
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status(kv.url("/v1/watch?after=%21%21"), None).await, 400);
    let other = Store::open(kafka.config(&unique_topic("watch-sse-other")))
        .await
        .unwrap();
    let foreign = other
        .watch(WatchOptions::default())
        .await
        .unwrap()
        .token()
        .encode();
    assert_eq!(status(kv.url("/v1/watch"), Some(&foreign)).await, 400);
    assert_eq!(status(kv.url("/v1/watch?start=later"), None).await, 400);
    other.close().await;
    kv.stop().await;
}

/// Each `put` and `delete` names the operation that made it (Redis's
/// keyspace event name) beside the key's resulting value, over SSE and in
/// the library; read back from the topic, plain records are `set` and `del`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_name_the_operation_that_made_them() {
    let kafka = Kafka::start().await;
    let mut config = kafka.config(&unique_topic("watch-op"));
    // Resuming always reads the topic.
    config.watch_window_bytes = 0;
    let kv = Kafkv::start(config).await;
    let response = kv
        .http
        .get(kv.url("/v1/watch?prefix=w%2F"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut watch = kv
        .store
        .watch(WatchOptions {
            prefix: Bytes::from_static(b"w/"),
            ..WatchOptions::default()
        })
        .await
        .unwrap();
    let timeouts = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(PATIENCE))
        .set_response_timeout(Some(PATIENCE));
    let mut conn = redis::Client::open(format!("redis://{}/", kv.resp))
        .unwrap()
        .get_multiplexed_async_connection_with_config(&timeouts)
        .await
        .unwrap();
    for command in [
        "INCRBY w/n 2",
        "APPEND w/s hi",
        "RENAME w/s w/t",
        "DEL w/t",
        "SET w/end x",
    ] {
        let mut args = command.split(' ');
        let mut cmd = redis::cmd(args.next().unwrap());
        cmd.arg(args.collect::<Vec<_>>());
        let _: redis::Value = cmd.query_async(&mut conn).await.unwrap();
    }

    let events = read_sse(response, |e| e.data["key"] == "w/end").await;
    let got: Vec<(&str, &str, &str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.event.as_str(),
                e.data["op"].as_str().unwrap_or_default(),
                e.data["key"].as_str().unwrap_or_default(),
                e.data["value"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("put", "incrby", "w/n", Some("2")),
            ("put", "append", "w/s", Some("hi")),
            ("delete", "rename_from", "w/s", None),
            ("put", "rename_to", "w/t", Some("hi")),
            ("delete", "del", "w/t", None),
            ("put", "set", "w/end", Some("x")),
        ]
    );

    let mut ops = Vec::new();
    let mut tokens = Vec::new();
    while ops.len() < 6 {
        let event = next(&mut watch).await;
        if let Some(record) = event.record() {
            ops.push(record.op.expect("a change names its operation").name());
            tokens.push(event.token().expect("a change carries a token").clone());
        }
    }
    assert_eq!(
        ops,
        ["incrby", "append", "rename_from", "rename_to", "del", "set"]
    );
    // The rename is one record: its first event's token resumes at it, its
    // last one's after it.
    assert_eq!(
        tokens[2].positions()[0] + 1,
        tokens[3].positions()[0],
        "rename_from resumes at the rename, rename_to after it"
    );
    let token = tokens[3].clone();

    // From the topic (no window): the plain records after the rename, and
    // any repair the repairer wrote meanwhile, each stating a value: `set`
    // or `del`.
    let mut resumed = kv.store.watch(after(&token)).await.unwrap();
    assert!(resumed.is_reading_log());
    let mut from_log = Vec::new();
    loop {
        let event = next(&mut resumed).await;
        let Some(record) = event.record() else {
            continue;
        };
        let key = String::from_utf8(record.key.to_vec()).unwrap();
        let op = record.op.expect("a change names its operation").name();
        assert_eq!(
            op,
            if record.value.is_some() { "set" } else { "del" },
            "{key}"
        );
        from_log.push((event.kind(), op, key));
        if from_log.last().unwrap().2 == "w/end" {
            break;
        }
    }
    assert!(
        from_log.contains(&("delete", "del", "w/t".to_owned())),
        "{from_log:?}"
    );
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_410_over_http() {
    let kafka = Kafka::start().await;
    let mut config = kafka.config(&unique_topic("watch-gone"));
    config.delete_retention = Duration::from_secs(1);
    config.watch_window_bytes = 0;
    let kv = Kafkv::start(config).await;
    let token = kv
        .store
        .watch(WatchOptions::default())
        .await
        .unwrap()
        .token()
        .encode();
    // A change since the token, so resuming needs the log.
    kv.store.put(b"k", Bytes::from_static(b"v")).await.unwrap();
    eventually("the token is older than delete.retention.ms", || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = kv
            .http
            .get(kv.url(&format!("/v1/watch?after={token}")))
            .send()
            .await
            .unwrap()
            .status();
        status == 410
    })
    .await;
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_one_json_line_per_event_and_resumes_after_a_token() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("watch-cli"))).await;
    kv.store
        .put(b"cli/a", Bytes::from_static(b"1"))
        .await
        .unwrap();
    let watch = |extra: &[&str]| {
        let mut command = tokio::process::Command::new(crate::harness::KAFKV);
        command
            .args(["watch", "--url", &kv.base, "--prefix", "cli/"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        command.spawn().expect("run kafkv watch")
    };
    let mut child = watch(&["--start", "snapshot"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut line = async || -> serde_json::Value {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a line in time")
            .unwrap()
            .expect("kafkv watch is running");
        serde_json::from_str(&line).expect("one JSON object per line")
    };
    let first = line().await;
    assert_eq!(
        (first["event"].as_str(), first["key"].as_str()),
        (Some("put"), Some("cli/a"))
    );
    assert_eq!(line().await["event"], "snapshot-end");
    kv.store
        .put(b"cli/b", Bytes::from_static(b"2"))
        .await
        .unwrap();
    let put = line().await;
    assert_eq!(
        (put["key"].as_str(), put["value"].as_str()),
        (Some("cli/b"), Some("2"))
    );
    let token = put["token"].as_str().unwrap().to_owned();
    drop(child);

    kv.store
        .put(b"cli/c", Bytes::from_static(b"3"))
        .await
        .unwrap();
    let mut child = watch(&["--after", &token]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let resumed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(resumed["key"], "cli/c", "resumes right after the token");
    kv.stop().await;
}

/// The key of a `put` or `delete` SSE message.
fn sse_key(message: &reqwest_eventsource::Event) -> Option<String> {
    let reqwest_eventsource::Event::Message(message) = message else {
        return None;
    };
    if message.event != "put" && message.event != "delete" {
        return None;
    }
    let data: serde_json::Value = serde_json::from_str(&message.data).unwrap();
    data["key"].as_str().map(str::to_owned)
}

/// An EventSource client library and `kafkv watch` both follow one
/// instance; it stops, another writes meanwhile, it comes back on the same
/// port: both resume after their last event, with nothing missed or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventsource_and_the_cli_resume_after_the_server_restarts() {
    use reqwest_eventsource::{EventSource, retry::Constant};
    use tokio::io::{AsyncBufReadExt, BufReader};

    let kafka = Kafka::start().await;
    let config = kafka.config(&unique_topic("watch-restart"));
    let port = crate::harness::free_port();
    let kv = Kafkv::start_on(config.clone(), port).await;
    let url = format!("http://127.0.0.1:{port}");

    let mut source = EventSource::get(format!("{url}/v1/watch?prefix=es/"));
    source.set_retry_policy(Box::new(Constant::new(Duration::from_millis(100), None)));
    let mut cli = tokio::process::Command::new(crate::harness::KAFKV)
        .args([
            "watch", "--url", &url, "--prefix", "es/", "--start", "snapshot",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut cli_lines = BufReader::new(cli.stdout.take().unwrap()).lines();
    let mut cli_event = async || -> serde_json::Value {
        let line = tokio::time::timeout(PATIENCE, cli_lines.next_line())
            .await
            .expect("kafkv watch prints in time")
            .unwrap()
            .expect("kafkv watch is running");
        serde_json::from_str(&line).unwrap()
    };
    // Connected: the CLI prints its (empty) snapshot's end, the EventSource
    // reports it opened (the server answers once the watch is open).
    assert_eq!(cli_event().await["event"], "snapshot-end");
    loop {
        let event = tokio::time::timeout(PATIENCE, source.next())
            .await
            .expect("the EventSource opens in time")
            .expect("the EventSource keeps retrying");
        if let Ok(reqwest_eventsource::Event::Open) = event {
            break;
        }
    }
    let mut source_key = async || -> String {
        loop {
            let event = tokio::time::timeout(PATIENCE, source.next())
                .await
                .expect("an SSE event in time")
                .expect("the EventSource keeps retrying");
            // Errors while the server is down are the library's to retry.
            if let Ok(event) = event
                && let Some(key) = sse_key(&event)
            {
                return key;
            }
        }
    };
    kv.store
        .put(b"es/1", Bytes::from_static(b"v"))
        .await
        .unwrap();
    assert_eq!(source_key().await, "es/1");
    assert_eq!(cli_event().await["key"], "es/1");

    kv.stop().await;
    let writer = Store::open(config.clone()).await.unwrap();
    writer
        .put(b"es/while-down", Bytes::from_static(b"v"))
        .await
        .unwrap();
    writer.close().await;
    let kv = Kafkv::start_on(config, port).await;
    kv.store
        .put(b"es/after", Bytes::from_static(b"v"))
        .await
        .unwrap();

    assert_eq!(source_key().await, "es/while-down");
    assert_eq!(source_key().await, "es/after");
    assert_eq!(cli_event().await["key"], "es/while-down");
    assert_eq!(cli_event().await["key"], "es/after");
    source.close();
    kv.stop().await;
}
