//! The HTTP section: `GET` and `PUT /v1/kv/{key}` throughput and latency with
//! `--concurrency` requests in flight, against a kafkv served in this process
//! on a fresh topic; and the load generator it shares with the throughput
//! comparison.
//!
//! The generator runs `concurrency` tasks, each sending its next request as
//! soon as the previous one is answered over its own kept-alive connection,
//! until the run's fixed number of requests is used up. Each
//! request's latency runs from before it is sent to its last body byte. There
//! is no peer: nothing else serves this API.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method,
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use kafkv::Store;

use crate::{
    BenchConfig,
    error::{Error, Result},
    kafka::{serve, store_config},
    progress,
    report::{Row, percentile},
};

/// Keys the GETs and PUTs pick from at random; all are written before the
/// GETs, so every GET finds a value.
pub const KEYSPACE: usize = 10_000;

/// One request of a run: `PUT` with the body, or `GET` without one.
pub struct Request {
    pub path: String,
    pub body: Option<Bytes>,
}

/// What a run measured.
pub struct Load {
    /// From the first request sent to the last answer read.
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Load {
    /// Requests answered per second.
    pub fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `requests` requests to `address` from `concurrency` tasks, each
/// with its own kept-alive HTTP/1.1 connection and one request at a time;
/// `request(n, rng)` makes the `n`th, with the sending task's random numbers.
/// Any answer but a 2xx fails the run.
///
/// The client is hyper's connection-level API rather than reqwest: on this
/// 2-core machine the load generator shares the CPU with kafkv, and reqwest's
/// pool and layers cost about half again as much CPU per request (see the
/// README's Benchmarks section).
pub async fn generate(
    address: SocketAddr,
    concurrency: usize,
    requests: usize,
    request: impl Fn(usize, &mut Rng) -> Request + Send + Sync + 'static,
) -> Result<Load> {
    let next = Arc::new(AtomicUsize::new(0));
    let request = Arc::new(request);
    let host = HeaderValue::from_str(&address.to_string()).expect("an address is a valid header");
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (next, request, host) = (next.clone(), request.clone(), host.clone());
            tokio::spawn(async move {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(io)?;
                let connection = tokio::spawn(connection);
                let mut rng = Rng::new(task as u64);
                let mut latencies = Vec::with_capacity(requests / concurrency + 1);
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        break;
                    }
                    let Request { path, body } = request(n, &mut rng);
                    let builder = hyper::Request::builder()
                        .method(if body.is_some() {
                            Method::PUT
                        } else {
                            Method::GET
                        })
                        .uri(&path)
                        .header(header::HOST, host.clone());
                    let outgoing = builder
                        .body(Full::new(body.unwrap_or_default()))
                        .map_err(io)?;
                    let sent = Instant::now();
                    sender.ready().await.map_err(io)?;
                    let answer = sender.send_request(outgoing).await.map_err(io)?;
                    let status = answer.status();
                    let body = answer.into_body().collect().await.map_err(io)?.to_bytes();
                    if !status.is_success() {
                        return Err(Error::Failed(format!(
                            "{path} answered {status}: {}",
                            String::from_utf8_lossy(&body)
                        )));
                    }
                    latencies.push(sent.elapsed());
                }
                drop(sender);
                let _ = connection.await;
                Ok::<_, Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(requests);
    for task in tasks {
        latencies.extend(task.await.expect("load task panicked")?);
    }
    Ok(Load {
        elapsed: started.elapsed(),
        latencies,
    })
}

fn io(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Io(std::io::Error::other(e))
}

/// `/v1/kv/key-000000000042`: the 16-byte key of record `i`.
pub fn key_path(i: usize) -> String {
    format!("/v1/kv/key-{i:012}")
}

/// SplitMix64: cheap, seedable random numbers for picking keys; one per task.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (the modulo bias is negligible for small `n`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Serves a fresh topic, writes the keyspace, then measures GETs and PUTs of
/// random keys from it.
pub async fn measure(brokers: &str, run_id: u32, config: &BenchConfig) -> Result<Vec<Row>> {
    let c = config.concurrency;
    let store = Store::open(store_config(brokers, &format!("bench-http-{run_id}"))).await?;
    let served = serve(store, None).await?;
    let address = served.http_address();
    let value = Bytes::from(vec![b'v'; config.value_bytes]);

    progress(format!("http: writing {KEYSPACE} keys with c={c}"));
    let body = value.clone();
    generate(address, c, KEYSPACE, move |n, _| Request {
        path: key_path(n),
        body: Some(body.clone()),
    })
    .await?;

    progress(format!(
        "http: {} GETs of random keys, c={c}",
        config.http_get_requests
    ));
    let gets = generate(address, c, config.http_get_requests, |_, rng| Request {
        path: key_path(rng.below(KEYSPACE)),
        body: None,
    })
    .await?;

    progress(format!(
        "http: {} PUTs of random keys, c={c}",
        config.http_put_requests
    ));
    let body = value.clone();
    let puts = generate(address, c, config.http_put_requests, move |_, rng| {
        Request {
            path: key_path(rng.below(KEYSPACE)),
            body: Some(body.clone()),
        }
    })
    .await?;
    served.stop().await;

    let mut rows = Vec::new();
    for (method, load) in [("GET", &gets), ("PUT", &puts)] {
        rows.push(Row::without_peer(
            format!("HTTP {method} throughput (c={c})"),
            "req/s",
            load.rate(),
        ));
        for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
            rows.push(Row::without_peer(
                format!("HTTP {method} latency {name} (c={c})"),
                "ms",
                percentile(&load.latencies, q),
            ));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_16_bytes() {
        assert_eq!(key_path(42), "/v1/kv/key-000000000042");
        assert_eq!(key_path(42).len() - "/v1/kv/".len(), 16);
    }

    #[test]
    fn random_keys_cover_the_keyspace() {
        let mut rng = Rng::new(7);
        let mut seen = [false; 100];
        for _ in 0..10_000 {
            seen[rng.below(100)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
