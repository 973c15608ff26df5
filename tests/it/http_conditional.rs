//! Versions over HTTP: `ETag` on reads and writes, `If-Match` /
//! `If-None-Match: *` on `PUT` and `DELETE`, the increment route, and
//! compare-and-set under contention from two instances.

use reqwest::{
    StatusCode,
    header::{ETAG, IF_MATCH, IF_NONE_MATCH},
};
use serde_json::{Value, json};

use crate::harness::{Kafka, Kafkv, end_offset_total, eventually, unique_topic};

/// The `ETag` header of a response, if any.
fn etag(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(ETAG)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// The ETag a version is named by: `"<partition>:<offset>"`.
fn tag(body: &Value) -> String {
    format!("\"{}:{}\"", body["partition"], body["offset"])
}

/// The tag's offset: the version it names.
fn version(etag: &str) -> i64 {
    etag.trim_matches('"')
        .split_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap()
}

/// GET /v1/kv/{key}: status, ETag and body.
async fn read(kv: &Kafkv, key: &str) -> (StatusCode, Option<String>, String) {
    let got = kv
        .http
        .get(kv.url(&format!("/v1/kv/{key}")))
        .send()
        .await
        .unwrap();
    let status = got.status();
    let etag = etag(&got);
    (status, etag, got.text().await.unwrap())
}

/// PUT /v1/kv/{key} with `headers`: status, ETag and JSON body.
async fn put(
    kv: &Kafkv,
    key: &str,
    value: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> (StatusCode, Option<String>, Value) {
    let request = kv
        .http
        .put(kv.url(&format!("/v1/kv/{key}")))
        .body(value.to_owned());
    send(request, headers).await
}

/// DELETE /v1/kv/{key} with `headers`: status, ETag and JSON body.
async fn delete(
    kv: &Kafkv,
    key: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> (StatusCode, Option<String>, Value) {
    send(kv.http.delete(kv.url(&format!("/v1/kv/{key}"))), headers).await
}

/// Sends `request` with `headers`: status, ETag and JSON body.
async fn send(
    mut request: reqwest::RequestBuilder,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> (StatusCode, Option<String>, Value) {
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let etag = etag(&response);
    (status, etag, response.json().await.unwrap())
}

/// POST /v1/kv/{key}/incr{query}: status, ETag and JSON body.
async fn incr(kv: &Kafkv, key: &str, query: &str) -> (StatusCode, Option<String>, Value) {
    let url = kv.url(&format!("/v1/kv/{key}/incr{query}"));
    let response = kv.http.post(url).send().await.unwrap();
    let status = response.status();
    let etag = etag(&response);
    (status, etag, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_carry_the_version_and_if_match_writes_only_at_it() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("if-match"))).await;

    // An unconditional put names its version; every read of the key shows it.
    let (status, first, body) = put(&kv, "k", "one", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let first = first.expect("a put answers the new ETag");
    assert_eq!(first, tag(&body));
    let (status, got, value) = read(&kv, "k").await;
    assert_eq!(
        (status, got.as_deref(), &value[..]),
        (StatusCode::OK, Some(&first[..]), "one")
    );
    let reference = kv.http.get(kv.url("/keys/k")).send().await.unwrap();
    assert_eq!(etag(&reference).as_deref(), Some(&first[..]));

    // If-Match with the current ETag writes, and names the new version.
    let (status, second, body) = put(&kv, "k", "two", &[(IF_MATCH, &first)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = second.expect("a conditional put answers the new ETag");
    assert_eq!(second, tag(&body));
    assert!(version(&second) > version(&first));
    let (_, got, value) = read(&kv, "k").await;
    assert_eq!((got.as_deref(), &value[..]), (Some(&second[..]), "two"));

    // A stale ETag: 412 with the current one, and nothing changes.
    let (status, current, body) = put(&kv, "k", "three", &[(IF_MATCH, &first)]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(current.as_deref(), Some(&second[..]));
    assert_eq!(body["etag"], json!(second));
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("precondition failed"), "{message}");
    assert!(message.contains(&second), "{message}");
    let (_, got, value) = read(&kv, "k").await;
    assert_eq!((got.as_deref(), &value[..]), (Some(&second[..]), "two"));

    // If-Match: * writes when the key exists, and only then.
    let (status, third, _) = put(&kv, "k", "four", &[(IF_MATCH, "*")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(third.as_deref(), Some(&second[..]));
    let (status, none, body) = put(&kv, "nothing-here", "x", &[(IF_MATCH, "*")]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!((none, &body["etag"]), (None, &Value::Null));
    assert!(body["error"].as_str().unwrap().contains("does not exist"));
    let (status, _, body) = put(&kv, "nothing-here", "x", &[(IF_MATCH, &second)]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert_eq!(read(&kv, "nothing-here").await.0, StatusCode::NOT_FOUND);
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_star_creates_once() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("if-none-match"))).await;

    let (status, created, body) = put(&kv, "once", "first", &[(IF_NONE_MATCH, "*")]).await;
    assert_eq!(status, StatusCode::OK);
    let created = created.unwrap();
    assert_eq!(created, tag(&body));

    let (status, current, body) = put(&kv, "once", "second", &[(IF_NONE_MATCH, "*")]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(current.as_deref(), Some(&created[..]));
    assert!(body["error"].as_str().unwrap().contains("If-None-Match: *"));
    let (_, got, value) = read(&kv, "once").await;
    assert_eq!((got.as_deref(), &value[..]), (Some(&created[..]), "first"));
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_on_a_delete() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("if-match-delete"))).await;

    let (_, old, _) = put(&kv, "d", "a", &[]).await;
    let (_, current, _) = put(&kv, "d", "b", &[]).await;
    let (old, current) = (old.unwrap(), current.unwrap());

    let (status, found, _) = delete(&kv, "d", &[(IF_MATCH, &old)]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(found.as_deref(), Some(&current[..]));
    assert_eq!(read(&kv, "d").await.2, "b");

    let (status, gone, body) = delete(&kv, "d", &[(IF_MATCH, &current)]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(gone, None, "a deleted key has no version");
    assert_eq!(read(&kv, "d").await.0, StatusCode::NOT_FOUND);

    // Gone: no version can match, and the 412 names none.
    let (status, none, body) = delete(&kv, "d", &[(IF_MATCH, &current)]).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!((none, &body["etag"]), (None, &Value::Null));
    // An unconditional delete stays idempotent.
    assert_eq!(delete(&kv, "d", &[]).await.0, StatusCode::OK);
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_preconditions_are_refused_and_write_nothing() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("bad-precondition"))).await;
    let topic = kv.store.config().topic.clone();
    let (_, current, _) = put(&kv, "k", "v", &[]).await;
    let current = current.unwrap();
    let before = end_offset_total(&kafka.brokers(), &topic).await;

    let weak = format!("W/{current}");
    let two = format!("{current}, {current}");
    for (name, value, says) in [
        (IF_MATCH, "42", "malformed"),
        (IF_MATCH, "\"42\"", "not an ETag kafkv returned"),
        (IF_MATCH, &weak[..], "weak"),
        (IF_MATCH, &two[..], "exactly one"),
        (IF_NONE_MATCH, &current[..], "only *"),
    ] {
        let (status, _, body) = put(&kv, "k", "w", &[(name.clone(), value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {value}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {value}: {message}");
        let (status, _, _) = delete(&kv, "k", &[(name.clone(), value)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {value}");
    }
    let both = [(IF_MATCH, "*"), (IF_NONE_MATCH, "*")];
    assert_eq!(put(&kv, "k", "w", &both).await.0, StatusCode::BAD_REQUEST);

    assert_eq!(end_offset_total(&kafka.brokers(), &topic).await, before);
    assert_eq!(read(&kv, "k").await.2, "v");
    kv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_count_from_absent_and_refuse_what_is_not_an_integer() {
    let kafka = Kafka::start().await;
    let kv = Kafkv::start(kafka.config(&unique_topic("incr"))).await;

    let (status, tag, body) = incr(&kv, "n", "").await;
    assert_eq!((status, &body), (StatusCode::OK, &json!({"value": 1})));
    assert_eq!(read(&kv, "n").await.1, tag);
    assert_eq!(incr(&kv, "n", "?by=41").await.2, json!({"value": 42}));
    assert_eq!(incr(&kv, "n", "?by=-50").await.2, json!({"value": -8}));
    let (status, _, body) = incr(&kv, "n", "?by=1.5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        incr(&kv, "n", "?by_float=0.5").await.2,
        json!({"value": -7.5})
    );
    assert_eq!(read(&kv, "n").await.2, "-7.5");

    // Not an integer: Redis's error, and the key keeps value and version.
    let (_, text, _) = put(&kv, "n", "abc", &[]).await;
    let (status, current, body) = incr(&kv, "n", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(current, text);
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("not an integer or out of range"),
        "{message}"
    );
    let (_, got, value) = read(&kv, "n").await;
    assert_eq!((got, &value[..]), (text, "abc"));

    // Overflow: refused, unchanged.
    put(&kv, "n", &i64::MAX.to_string(), &[]).await;
    let (status, _, body) = incr(&kv, "n", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"].as_str().unwrap().contains("overflow"),
        "{body}"
    );
    assert_eq!(read(&kv, "n").await.2, i64::MAX.to_string());
    kv.stop().await;
}

/// One `PUT If-Match` that succeeded: the version and value it replaced,
/// and the ones it wrote.
#[derive(Debug, Clone)]
struct Success {
    expected: String,
    old: i64,
    etag: String,
    new: i64,
}

/// Read, then `PUT If-Match` value + 1, again on 412, until `wins` writes
/// succeeded; returns them and how many were refused.
async fn increment_by_compare_and_set(
    http: reqwest::Client,
    url: String,
    wins: usize,
) -> (Vec<Success>, usize) {
    let mut successes = Vec::new();
    let mut refused = 0;
    // After a 412, read strongly: this instance may not have applied the
    // winner's record yet, and a local read would only lose again.
    let mut strong = false;
    while successes.len() < wins {
        assert!(refused < 10_000, "no progress after {refused} refusals");
        let query = if strong { "?consistency=strong" } else { "" };
        let got = http.get(format!("{url}{query}")).send().await.unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        let expected = etag(&got).expect("a read names the version");
        let old: i64 = got.text().await.unwrap().parse().unwrap();
        let response = http
            .put(&url)
            .header(IF_MATCH, &expected)
            .body((old + 1).to_string())
            .send()
            .await
            .unwrap();
        match response.status() {
            StatusCode::OK => {
                let etag = etag(&response).expect("a write names the new version");
                successes.push(Success {
                    expected,
                    old,
                    etag,
                    new: old + 1,
                });
                strong = false;
            }
            StatusCode::PRECONDITION_FAILED => {
                let current = etag(&response).expect("the key exists");
                assert_ne!(current, expected, "refused at the version it asked for");
                refused += 1;
                strong = true;
            }
            other => panic!("{other}: {}", response.text().await.unwrap()),
        }
    }
    (successes, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_if_match_updates_lose_nothing() {
    const CLIENTS: usize = 8;
    const WINS: usize = 5;
    let kafka = Kafka::start().await;
    let topic = unique_topic("cas");
    let a = Kafkv::start(kafka.config(&topic)).await;
    let b = Kafkv::start(kafka.config(&topic)).await;
    let (_, start, _) = put(&a, "counter", "0", &[]).await;
    let start = start.unwrap();
    let initial = (StatusCode::OK, Some(start.clone()), "0".to_owned());
    eventually("B holds the initial value", || {
        let (b, initial) = (&b, initial.clone());
        async move { read(b, "counter").await == initial }
    })
    .await;

    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let kv = if i % 2 == 0 { &a } else { &b };
            tokio::spawn(increment_by_compare_and_set(
                kv.http.clone(),
                kv.url("/v1/kv/counter"),
                WINS,
            ))
        })
        .collect();
    let mut history = Vec::new();
    let mut refused = 0;
    for client in clients {
        let (successes, lost) = client.await.unwrap();
        history.extend(successes);
        refused += lost;
    }
    let total = (CLIENTS * WINS) as i64;
    assert_eq!(history.len() as i64, total);
    assert!(
        refused > 0,
        "the clients never raced, so this proved nothing"
    );

    // Linearizable compare-and-set: in log order, every success replaced
    // exactly what the one before it wrote, starting from the initial put.
    history.sort_by_key(|s| version(&s.etag));
    let (mut etag, mut value) = (start, 0);
    for success in &history {
        assert_eq!(
            (&success.expected, success.old),
            (&etag, value),
            "{success:?} does not follow the previous success; refused: {refused}"
        );
        assert_eq!(success.new, success.old + 1);
        (etag, value) = (success.etag.clone(), success.new);
    }
    assert_eq!(value, total, "no lost update");

    // Both instances reach the last success's value and version.
    for kv in [&a, &b] {
        let expected = (StatusCode::OK, Some(etag.clone()), total.to_string());
        eventually("both instances hold the last compare-and-set", || {
            let expected = expected.clone();
            async move { read(kv, "counter").await == expected }
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
}
