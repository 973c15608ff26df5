//! Expiry over HTTP, in the change streams and in the library
//! (docs/expiry.md, "Surfaces"): `?ttl=`, `?expire_at=` and `?keep_ttl=` on
//! `PUT`, the `x-kafkv-expires-at` header and `expires_at` fields, the
//! conditional forms, `POST …/expire` with each `when` and `persist`, the
//! transaction ops, the 400s, the `expired` event of `kafkv watch` and a
//! watch snapshot without expired keys, and `Store::put_with` / `expire` /
//! `persist`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafkv::{
    Deadline, ExpireWhen, Expiry, Store,
    error::{InputError, WriteError},
    watch::{ChangeOp, Start, Watch, WatchEvent, WatchOptions},
};
use reqwest::{
    StatusCode,
    header::{ETAG, HeaderName, IF_MATCH, IF_NONE_MATCH},
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};

use crate::harness::{KAFKV, Kafka, Kafkv, PATIENCE, end_offset_total, eventually, unique_topic};

const EXPIRES_AT: &str = "x-kafkv-expires-at";

/// How far the broker's clock, which stamps records, may be from this
/// machine's (the same clock with the embedded broker).
const SKEW_MS: i64 = 1000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Status, `ETag`, `x-kafkv-expires-at` and body of an answer.
struct Answer {
    status: StatusCode,
    etag: Option<String>,
    expires_at: Option<i64>,
    body: String,
}

impl Answer {
    async fn of(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let etag = header(ETAG.as_str());
        let expires_at = header(EXPIRES_AT).map(|at| at.parse().unwrap());
        Answer {
            status: response.status(),
            etag,
            expires_at,
            body: response.text().await.unwrap(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

async fn put(kv: &Kafkv, key: &str, query: &str, value: &str) -> Answer {
    let url = kv.url(&format!("/v1/kv/{key}{query}"));
    Answer::of(kv.http.put(url).body(value.to_owned())).await
}

async fn get(kv: &Kafkv, key: &str) -> Answer {
    Answer::of(kv.http.get(kv.url(&format!("/v1/kv/{key}")))).await
}

async fn expire(kv: &Kafkv, key: &str, query: &str) -> Answer {
    Answer::of(kv.http.post(kv.url(&format!("/v1/kv/{key}/expire{query}")))).await
}

async fn txn(kv: &Kafkv, body: Value) -> Answer {
    Answer::of(kv.http.post(kv.url("/v1/txn")).json(&body)).await
}

/// Waits until no read of `key` finds it: its expiry passed.
async fn gone(kv: &Kafkv, key: &str) {
    eventually(&format!("{key} expires"), || async {
        get(kv, key).await.status == StatusCode::NOT_FOUND
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_with_a_ttl_or_an_expiry_time_are_read_with_it_until_they_expire() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("http-expiry-put"))).await;

    // ttl: the expiry is the record's timestamp plus the ttl, on the
    // write's answer and on every read.
    let before = now_ms();
    let written = put(&kv, "ttl", "?ttl=4000", "v").await;
    let after = now_ms();
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    let expires_at = written.expires_at.expect("the put answers the expiry");
    assert!(
        (before + 4000 - SKEW_MS..=after + 4000 + SKEW_MS).contains(&expires_at),
        "{before} + 4000 ≤ {expires_at} ≤ {after} + 4000"
    );
    let read = get(&kv, "ttl").await;
    assert_eq!((read.status, &read.body[..]), (StatusCode::OK, "v"));
    assert_eq!(read.expires_at, Some(expires_at));
    assert_eq!(read.etag, written.etag);
    let reference = Answer::of(kv.http.get(kv.url("/keys/ttl"))).await;
    assert_eq!(reference.expires_at, Some(expires_at));

    // expire_at: exactly the time asked for.
    let at = now_ms() + 4000;
    let written = put(&kv, "at", &format!("?expire_at={at}"), "v").await;
    assert_eq!(written.status, StatusCode::OK, "{}", written.body);
    assert_eq!(written.expires_at, Some(at));
    assert_eq!(get(&kv, "at").await.expires_at, Some(at));

    // A key without an expiry has no header and no field; a scan shows
    // the others' expiries.
    assert_eq!(put(&kv, "plain", "", "v").await.status, StatusCode::OK);
    assert_eq!(get(&kv, "plain").await.expires_at, None);
    let scan = Answer::of(kv.http.get(kv.url("/v1/kv"))).await.json();
    let expiries: Vec<(&str, &Value)> = scan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["key"].as_str().unwrap(), &item["expires_at"]))
        .collect();
    assert_eq!(
        expiries,
        [
            ("at", &json!(at)),
            ("plain", &Value::Null),
            ("ttl", &json!(expires_at))
        ]
    );
    assert!(scan["items"][1].get("expires_at").is_none());

    // Both disappear once expired, from reads and scans.
    gone(&kv, "ttl").await;
    gone(&kv, "at").await;
    let scan = Answer::of(kv.http.get(kv.url("/v1/kv"))).await.json();
    assert_eq!(scan["items"].as_array().unwrap().len(), 1, "{scan}");

    // keep_ttl keeps the expiry the key has, and a version of its own; a
    // plain put clears it; on an absent key, it is a put without one.
    let first = put(&kv, "keep", "?ttl=600000", "one").await;
    let kept = put(&kv, "keep", "?keep_ttl=1", "two").await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.expires_at, first.expires_at);
    assert_ne!(kept.etag, first.etag);
    let read = get(&kv, "keep").await;
    assert_eq!(
        (&read.body[..], read.expires_at, read.etag),
        ("two", first.expires_at, kept.etag)
    );
    assert_eq!(put(&kv, "keep", "", "three").await.expires_at, None);
    assert_eq!(get(&kv, "keep").await.expires_at, None);
    let fresh = put(&kv, "fresh", "?keep_ttl=true", "v").await;
    assert_eq!((fresh.status, fresh.expires_at), (StatusCode::OK, None));
    assert_eq!(get(&kv, "fresh").await.body, "v");

    // An expiry time already past deletes the key, as Redis does.
    let past = put(&kv, "fresh", "?expire_at=1000", "v").await;
    assert_eq!((past.status, past.etag), (StatusCode::OK, None));
    assert_eq!(get(&kv, "fresh").await.status, StatusCode::NOT_FOUND);

    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_expiry_arguments_answer_400_and_write_nothing() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("http-expiry-400"))).await;
    assert_eq!(put(&kv, "k", "", "v").await.status, StatusCode::OK);
    let topic = kv.store.config().topic.clone();
    let offsets = end_offset_total(&kafka.brokers(), &topic).await;

    let far = i64::MAX.to_string();
    for (query, names) in [
        ("?ttl=0", "ttl"),
        ("?ttl=-5", "ttl"),
        ("?ttl=soon", "ttl"),
        ("?ttl=1.5", "ttl"),
        ("?ttl=99999999999999999999", "ttl"),
        (&format!("?ttl={far}")[..], "ttl"),
        ("?ttl=1000&expire_at=5", "expire_at"),
        ("?expire_at=-1", "expire_at"),
        ("?expire_at=tomorrow", "expire_at"),
        ("?keep_ttl=1&ttl=1000", "keep_ttl"),
        ("?keep_ttl=maybe", "keep_ttl"),
        ("?persist=1", "persist"),
        ("?when=nx", "when"),
    ] {
        let answer = put(&kv, "k", query, "new").await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "PUT {query}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(names), "PUT {query}: {error}");
    }
    for (query, names) in [
        ("", "ttl"),
        ("?ttl=0", "ttl"),
        ("?ttl=60000&when=sometimes", "when"),
        ("?ttl=60000&when=nx,xx", "when"),
        ("?ttl=60000&when=gt,lt", "when"),
        ("?persist=1&ttl=60000", "persist"),
        ("?persist=1&when=xx", "persist"),
        ("?keep_ttl=1", "keep_ttl"),
    ] {
        let answer = expire(&kv, "k", query).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "expire{query}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(names), "expire{query}: {error}");
    }
    let conditional = kv
        .http
        .post(kv.url("/v1/kv/k/expire?ttl=60000"))
        .header(IF_MATCH, "*");
    assert_eq!(
        Answer::of(conditional).await.status,
        StatusCode::BAD_REQUEST
    );
    for (op, names) in [
        (
            json!({"op": "put", "key": "k", "value": "v", "ttl": 0}),
            "ttl",
        ),
        (
            json!({"op": "put", "key": "k", "value": "v", "ttl": "5"}),
            "ttl",
        ),
        (
            json!({"op": "put", "key": "k", "value": "v", "ttl": 1.5}),
            "ttl",
        ),
        (
            json!({"op": "put", "key": "k", "value": "v", "ttl": 5, "expire_at": 5}),
            "expire_at",
        ),
        (
            json!({"op": "expire", "key": "k", "keep_ttl": true}),
            "keep_ttl",
        ),
        (json!({"op": "expire", "key": "k"}), "ttl"),
        (
            json!({"op": "expire", "key": "k", "ttl": 5, "value": "v"}),
            "value",
        ),
        (json!({"op": "get", "key": "k", "ttl": 5}), "ttl"),
    ] {
        let answer = txn(&kv, json!({ "ops": [op] })).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{op}");
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains(names) && error.contains("ops[0]"),
            "{op}: {error}"
        );
    }

    assert_eq!(end_offset_total(&kafka.brokers(), &topic).await, offsets);
    assert_eq!(
        (get(&kv, "k").await.body, get(&kv, "k").await.expires_at),
        ("v".to_owned(), None)
    );
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_puts_expire_with_each_condition_persist_and_transactions() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("http-expiry-cond"))).await;

    // If-None-Match: * with a ttl is a lock: granted once.
    let lock = [(IF_NONE_MATCH, "*")];
    let put_if = |key: &str, query: &str, headers: &[(HeaderName, &str)]| {
        let mut request = kv
            .http
            .put(kv.url(&format!("/v1/kv/{key}{query}")))
            .body("v");
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        Answer::of(request)
    };
    let granted = put_if("lock", "?ttl=600000", &lock).await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.body);
    assert!(granted.expires_at.is_some() && granted.etag.is_some());
    let refused = put_if("lock", "?ttl=600000", &lock).await;
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(refused.etag, granted.etag);

    // If-Match at the current version with a new ttl; a stale one is refused.
    let tag = granted.etag.clone().unwrap();
    let moved = put_if("lock", "?ttl=900000", &[(IF_MATCH, tag.as_str())]).await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    assert!(moved.expires_at > granted.expires_at);
    let stale = put_if("lock", "?ttl=900000", &[(IF_MATCH, tag.as_str())]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    // If-Match: * with keep_ttl keeps it.
    let kept = put_if("lock", "?keep_ttl=1", &[(IF_MATCH, "*")]).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
    assert_eq!(kept.expires_at, moved.expires_at);
    assert_eq!(get(&kv, "lock").await.expires_at, moved.expires_at);

    // POST …/expire with each `when`, on a key without an expiry first.
    assert_eq!(put(&kv, "k", "", "v").await.status, StatusCode::OK);
    let mut last: Option<i64> = None;
    let mut version = get(&kv, "k").await.etag;
    for (query, applies) in [
        ("?ttl=600000&when=xx", false),
        ("?ttl=600000&when=gt", false),
        ("?ttl=600000&when=nx", true),
        ("?ttl=700000&when=nx", false),
        ("?ttl=900000&when=gt", true),
        ("?ttl=800000&when=gt", false),
        ("?ttl=700000&when=lt", true),
        ("?ttl=800000&when=lt", false),
        ("?ttl=800000&when=xx,gt", true),
        ("?ttl=750000&when=lt,xx", true),
        ("?ttl=760000&when=xx,lt", false),
        ("?ttl=600000&when=xx", true),
        ("?ttl=500000", true),
    ] {
        let answer = expire(&kv, "k", query).await;
        assert_eq!(answer.status, StatusCode::OK, "{query}: {}", answer.body);
        let body = answer.json();
        assert_eq!(body["applied"], applies, "{query}: {body}");
        let expires_at = body["expires_at"].as_i64();
        assert!(
            body["partition"].is_i64() && body["offset"].is_i64(),
            "{body}"
        );
        assert_eq!(answer.expires_at, expires_at, "{query}");
        if applies {
            assert_ne!(
                answer.etag, version,
                "{query}: a new expiry is a new version"
            );
            assert_ne!(expires_at, last, "{query}");
        } else {
            assert_eq!((answer.etag.clone(), expires_at), (version.clone(), last));
        }
        let read = get(&kv, "k").await;
        assert_eq!(
            (read.expires_at, &read.etag),
            (expires_at, &answer.etag),
            "{query}"
        );
        (last, version) = (expires_at, answer.etag);
    }
    // lt applies to a key without an expiry (it counts as never expiring).
    assert_eq!(put(&kv, "l", "", "v").await.status, StatusCode::OK);
    assert_eq!(
        expire(&kv, "l", "?ttl=600000&when=lt").await.json()["applied"],
        true
    );

    // expire_at sets exactly that time; persist removes it, once.
    let at = now_ms() + 3_600_000;
    let answer = expire(&kv, "k", &format!("?expire_at={at}")).await.json();
    assert_eq!(
        (&answer["applied"], &answer["expires_at"]),
        (&json!(true), &json!(at))
    );
    let persisted = expire(&kv, "k", "?persist=1").await;
    assert_eq!(persisted.expires_at, None);
    let body = persisted.json();
    assert_eq!(
        (&body["applied"], &body["expires_at"]),
        (&json!(true), &Value::Null)
    );
    assert_eq!(get(&kv, "k").await.expires_at, None);
    assert_eq!(
        expire(&kv, "k", "?persist=1").await.json()["applied"],
        false
    );
    // Nothing on an absent key; a past expiry time deletes.
    let absent = expire(&kv, "nothing", "?ttl=60000").await;
    assert_eq!((absent.status, &absent.etag), (StatusCode::OK, &None));
    assert_eq!(absent.json()["applied"], false);
    assert_eq!(
        expire(&kv, "k", "?expire_at=1").await.json()["applied"],
        true
    );
    assert_eq!(get(&kv, "k").await.status, StatusCode::NOT_FOUND);

    // Transactions: puts with a ttl, an expiry time or keep_ttl, and the
    // expire op, answered with each key's expiry.
    assert_eq!(put(&kv, "t/c", "", "c").await.status, StatusCode::OK);
    let at = now_ms() + 3_600_000;
    let answer = txn(
        &kv,
        json!({"ops": [
            {"op": "put", "key": "t/a", "value": "a", "ttl": 600000},
            {"op": "put", "key": "t/b", "value": "b", "expire_at": at},
            {"op": "expire", "key": "t/c", "ttl": 600000, "when": "nx"},
            {"op": "expire", "key": "t/none", "ttl": 600000},
            {"op": "get", "key": "t/a"},
        ]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let results = answer.json()["results"].clone();
    let a = results[0]["expires_at"]
        .as_i64()
        .expect("t/a has an expiry");
    assert_eq!(results[1]["expires_at"], at);
    assert_eq!(
        (&results[2]["op"], &results[2]["applied"]),
        (&json!("expire"), &json!(true))
    );
    let c = results[2]["expires_at"]
        .as_i64()
        .expect("t/c has an expiry");
    assert_eq!(results[2]["version"], results[0]["version"]);
    assert_eq!(
        (&results[3]["applied"], &results[3]["version"]),
        (&json!(false), &Value::Null)
    );
    assert!(results[3].get("expires_at").is_none());
    assert_eq!(
        (&results[4]["value"], &results[4]["expires_at"]),
        (&json!("a"), &json!(a))
    );
    for (key, expected) in [("t/a", a), ("t/b", at), ("t/c", c)] {
        assert_eq!(get(&kv, key).await.expires_at, Some(expected), "{key}");
    }
    let answer = txn(
        &kv,
        json!({"ops": [
            {"op": "put", "key": "t/a", "value": "a2", "keep_ttl": true},
            {"op": "expire", "key": "t/b", "persist": true},
            {"op": "put", "key": "t/c", "value": "c2"},
        ]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let results = answer.json()["results"].clone();
    assert_eq!(results[0]["expires_at"], a);
    assert_eq!(results[1]["applied"], true);
    assert!(results[1].get("expires_at").is_none() && results[2].get("expires_at").is_none());
    assert_eq!(get(&kv, "t/a").await.expires_at, Some(a));
    assert_eq!(get(&kv, "t/b").await.expires_at, None);
    assert_eq!(get(&kv, "t/c").await.expires_at, None);

    kv.stop().await;
}

/// `kafkv watch` following `url`, its output one JSON value per line.
struct CliWatch {
    _child: tokio::process::Child,
    lines: Lines<BufReader<tokio::process::ChildStdout>>,
}

impl CliWatch {
    fn start(url: &str, args: &[&str]) -> CliWatch {
        let mut child = tokio::process::Command::new(KAFKV)
            .args(["watch", "--url", url])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        CliWatch {
            _child: child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
            .await
            .expect("kafkv watch prints in time")
            .unwrap()
            .expect("kafkv watch is running");
        serde_json::from_str(&line).unwrap()
    }

    /// The events up to and including the first `event` of this kind.
    async fn until(&mut self, event: &str) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let next = self.next().await;
            let done = next["event"] == event;
            seen.push(next);
            if done {
                return seen;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_carry_expiries_leave_expired_keys_out_and_report_the_sweep() {
    let kafka = Kafka::start().await;
    let mut config = kafka.config(&unique_topic("http-expiry-watch"));
    // This instance never sweeps: an expired key stays in its table until
    // the second instance, below, sweeps it.
    config.expiry_sweep_within = Duration::ZERO;
    let kv = Kafkv::start(config.clone()).await;
    let mut watch = CliWatch::start(&kv.base, &["--prefix", "w/", "--start", "snapshot"]);
    assert_eq!(watch.next().await["event"], "snapshot-end");

    let written = put(&kv, "w/gone", "?ttl=500", "v").await;
    let set = watch.next().await;
    assert_eq!(
        (&set["event"], &set["op"], &set["key"]),
        (&json!("put"), &json!("set"), &json!("w/gone"))
    );
    assert_eq!(set["expires_at"].as_i64(), written.expires_at);
    assert_eq!(put(&kv, "w/live", "", "v").await.status, StatusCode::OK);
    assert!(watch.next().await.get("expires_at").is_none());
    let expired = expire(&kv, "w/live", "?ttl=600000").await;
    let event = watch.next().await;
    assert_eq!(
        (&event["event"], &event["op"]),
        (&json!("put"), &json!("expire"))
    );
    assert_eq!(event["expires_at"].as_i64(), expired.expires_at);
    expire(&kv, "w/live", "?persist=1").await;
    let event = watch.next().await;
    assert_eq!(
        (&event["op"], event.get("expires_at")),
        (&json!("persist"), None)
    );

    // Expired for reads, transactions and snapshots, though not swept yet.
    gone(&kv, "w/gone").await;
    let read = txn(&kv, json!({"ops": [{"op": "get", "key": "w/gone"}]})).await;
    assert_eq!(
        read.json()["results"][0]["value"],
        Value::Null,
        "{}",
        read.body
    );
    assert_eq!(kv.store.expiry_counts(), (0, 1));
    let mut snapshot = CliWatch::start(&kv.base, &["--prefix", "w/", "--start", "snapshot"]);
    let keys: Vec<Value> = snapshot
        .until("snapshot-end")
        .await
        .iter()
        .filter(|event| event["event"] == "put")
        .map(|event| event["key"].clone())
        .collect();
    assert_eq!(keys, [json!("w/live")]);
    let library = kv
        .store
        .watch(WatchOptions {
            prefix: Bytes::from_static(b"w/"),
            start: Start::Snapshot,
            ..WatchOptions::default()
        })
        .await
        .unwrap();
    assert_eq!(
        snapshot_keys(library).await,
        [Bytes::from_static(b"w/live")]
    );

    // A sweeping instance joins and sweeps the key: `expired`, on every
    // watch, at the SWEEP's offset.
    let sweeper = Kafkv::start(kafka.config(&config.topic)).await;
    for watch in [&mut watch, &mut snapshot] {
        let event = watch.next().await;
        assert_eq!(
            (&event["event"], &event["op"], &event["key"]),
            (&json!("delete"), &json!("expired"), &json!("w/gone")),
            "{event}"
        );
        assert!(event.get("value").is_none() && event["offset"].is_i64());
    }
    eventually("the SWEEP is applied here", || async {
        kv.store.expiry_counts() == (0, 0)
    })
    .await;
    // The watches end before the servers they follow.
    drop((watch, snapshot));
    sweeper.stop().await;
    kv.stop().await;
}

/// The keys of a watch's snapshot.
async fn snapshot_keys(mut watch: Watch) -> Vec<Bytes> {
    let mut keys = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, watch.next()).await.unwrap() {
            Some(WatchEvent::Put { key, .. }) => keys.push(key),
            Some(WatchEvent::SnapshotEnd { .. }) => return keys,
            other => panic!("a snapshot holds puts, then its end; got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_puts_with_an_expiry_expires_and_persists() {
    let kafka = Kafka::start().await;
    let store = Store::open(kafka.config(&unique_topic("lib-expiry")))
        .await
        .unwrap();
    let mut watch = store
        .watch(WatchOptions {
            prefix: Bytes::from_static(b"lib/"),
            ..WatchOptions::default()
        })
        .await
        .unwrap();
    let v = |text: &'static str| Bytes::from_static(text.as_bytes());
    let expiry = |key: &[u8]| store.get_now(key).unwrap().and_then(|v| v.expires_at);

    // After: resolved at the record's timestamp, on every read.
    let before = now_ms();
    let applied = store
        .put_with(
            b"lib/short",
            v("s"),
            Expiry::After(Duration::from_millis(700)),
        )
        .await
        .unwrap();
    let short = applied.outcome.after.and_then(|s| s.expires_at).unwrap();
    assert!((before + 700 - SKEW_MS..=now_ms() + 700 + SKEW_MS).contains(&short));
    assert_eq!(expiry(b"lib/short"), Some(short));

    // At, then Keep with a new value, then Never.
    let at = SystemTime::now() + Duration::from_secs(3600);
    let at_ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    store
        .put_with(b"lib/k", v("1"), Expiry::At(at))
        .await
        .unwrap();
    assert_eq!(expiry(b"lib/k"), Some(at_ms));
    let kept = store
        .put_with(b"lib/k", v("2"), Expiry::Keep)
        .await
        .unwrap();
    assert_eq!(
        kept.outcome.after.map(|s| (s.value, s.expires_at)),
        Some((v("2"), Some(at_ms)))
    );
    store
        .put_with(b"lib/k", v("3"), Expiry::Never)
        .await
        .unwrap();
    assert_eq!(expiry(b"lib/k"), None);

    // Zero is refused; a time already past deletes.
    let zero = store
        .put_with(b"lib/k", v("x"), Expiry::After(Duration::ZERO))
        .await;
    assert!(
        matches!(zero, Err(WriteError::Input(InputError::InvalidExpiry))),
        "{zero:?}"
    );
    let past = UNIX_EPOCH + Duration::from_secs(1);
    store
        .put_with(b"lib/gone", v("x"), Expiry::Never)
        .await
        .unwrap();
    store
        .put_with(b"lib/gone", v("y"), Expiry::At(past))
        .await
        .unwrap();
    assert_eq!(store.get_now(b"lib/gone").unwrap(), None);

    // expire takes a Duration, a SystemTime or a Deadline, under a condition.
    let applied = |result: Result<kafkv::Applied, WriteError>| result.unwrap().outcome.applied;
    let hour = Duration::from_secs(3600);
    assert!(!applied(store.expire(b"lib/k", hour, ExpireWhen::Xx).await));
    assert!(applied(store.expire(b"lib/k", hour, ExpireWhen::Nx).await));
    let first = expiry(b"lib/k").unwrap();
    let later = SystemTime::now() + 2 * hour;
    assert!(applied(store.expire(b"lib/k", later, ExpireWhen::Gt).await));
    let later_ms = later.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert_eq!(expiry(b"lib/k"), Some(later_ms));
    assert!(!applied(
        store
            .expire(b"lib/k", Deadline::At(first), ExpireWhen::XxGt)
            .await
    ));
    assert!(applied(
        store
            .expire(b"lib/k", Deadline::At(first), ExpireWhen::XxLt)
            .await
    ));
    assert_eq!(expiry(b"lib/k"), Some(first));
    assert!(!applied(
        store.expire(b"lib/absent", hour, ExpireWhen::Always).await
    ));
    // persist removes it, once.
    assert!(applied(store.persist(b"lib/k").await));
    assert!(!applied(store.persist(b"lib/k").await));
    assert_eq!(expiry(b"lib/k"), None);

    // The library's watch: the put with its expiry, then the SWEEP.
    let mut short_events = Vec::new();
    while short_events.len() < 2 {
        let event = tokio::time::timeout(PATIENCE, watch.next())
            .await
            .unwrap()
            .unwrap();
        if let Some(record) = event.record()
            && record.key[..] == b"lib/short"[..]
        {
            short_events.push((record.op, record.expires_at));
        }
    }
    assert_eq!(
        short_events,
        [
            (Some(ChangeOp::Set), Some(short)),
            (Some(ChangeOp::Expired), None)
        ]
    );
    assert_eq!(store.get_now(b"lib/short").unwrap(), None);
    store.close().await;
}
