//! `run(config, listeners, shutdown)`: wires the store and the front ends,
//! and shuts them down in order: stop accepting, finish in-flight requests,
//! flush the producer and stop the consumer. (An embedded broker is the
//! binary's: it starts before `run` and stops after it.)
//!
//! [`serve`] is the part after the broker and the store: the front ends and
//! their drain. [`spawn`] runs it as a task and returns a [`Server`] handle,
//! for programs that embed kafkv (and tests and benchmarks) and stop it
//! themselves instead of on a signal.

use std::{future::Future, net::SocketAddr, sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::ServiceConfig,
    error::Result,
    http::{self, AppState},
    store::Store,
};

/// Listeners bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    pub http: TcpListener,
    /// The Redis-protocol front end, if it is on.
    pub resp: Option<TcpListener>,
}

/// Front-end settings [`serve`] needs beside the store.
#[derive(Clone)]
pub struct FrontEnds {
    pub drain_timeout: Duration,
    pub auth_token: Option<String>,
    pub resp: crate::resp::RespConfig,
}

impl FrontEnds {
    /// No token, default limits for `store_config`'s value size.
    pub fn new(store_config: &crate::config::StoreConfig) -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
            auth_token: None,
            resp: crate::resp::RespConfig::new(store_config.max_value_bytes),
        }
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ])
                .expect("static buckets are valid")
                // A count, not a duration: produces sharing one transaction
                // in the embedded broker (at most 256).
                .set_buckets_for_metric(
                    Matcher::Full("kafkv_broker_produces_per_transaction".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; then ours only renders.
            if metrics::set_global_recorder(recorder).is_err() {
                warn!(
                    "a metrics recorder was already installed; /metrics shows only what it records"
                );
            }
            handle
        })
        .clone()
}

/// Runs kafkv until `shutdown` resolves: the store on `config.store.brokers`,
/// and the front ends; then shuts them down in that order reversed.
pub async fn run(
    config: ServiceConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let store = Store::start(config.store.clone()).await?;
    let front_ends = FrontEnds {
        drain_timeout: config.drain_timeout,
        auth_token: config.auth_token.clone(),
        resp: config.resp.clone(),
    };
    serve(store, listeners, front_ends, shutdown).await;
    Ok(())
}

/// Serves `store` on the front ends until `shutdown` resolves, then stops
/// accepting, waits up to the drain timeout for in-flight requests on both,
/// and closes the store (flushing the producer).
pub async fn serve(
    store: Store,
    listeners: Listeners,
    front_ends: FrontEnds,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let drain_timeout = front_ends.drain_timeout;
    let token = CancellationToken::new();
    let app = http::router(AppState {
        store: store.clone(),
        metrics: metrics_handle(),
        auth_token: front_ends.auth_token.clone().map(Into::into),
        shutdown: token.clone(),
    });
    let resp = listeners.resp.map(|listener| {
        let mut config = front_ends.resp.clone();
        config.auth_token = front_ends.auth_token.clone();
        tokio::spawn(crate::resp::run(
            listener,
            store.clone(),
            config,
            token.clone(),
            drain_timeout,
        ))
    });
    match listeners.http.local_addr() {
        Ok(address) => {
            info!(%address, topic = %store.config().topic, "HTTP API listening (ready once bootstrapped: /readyz)")
        }
        Err(e) => warn!(%e, "HTTP listener has no local address"),
    }
    let server = {
        let token = token.clone();
        tokio::spawn(async move {
            axum::serve(listeners.http, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        })
    };
    let readiness = {
        let store = store.clone();
        tokio::spawn(async move {
            if store.wait_ready().await.is_ok() {
                info!(keys = store.len(), "ready");
            }
        })
    };

    shutdown.await;
    info!(
        writes_in_flight = store.writes_in_flight(),
        "shutting down: finishing in-flight requests"
    );
    token.cancel();
    match tokio::time::timeout(drain_timeout, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => error!(%e, "HTTP server error"),
        Ok(Err(e)) => error!(%e, "HTTP server task failed"),
        Err(_) => warn!(timeout = ?drain_timeout, "requests still running after the drain timeout"),
    }
    if let Some(resp) = resp {
        let _ = resp.await;
    }
    readiness.abort();
    store.close().await;
}

/// A store served by [`spawn`] on a task of its own. Dropping the handle
/// without [`stop`](Server::stop) leaves it serving, like a detached task.
pub struct Server {
    http: SocketAddr,
    resp: Option<SocketAddr>,
    /// Cancelled to begin the graceful shutdown.
    shutdown: CancellationToken,
    /// [`serve`]; it ends once the front ends drained and the store closed.
    task: JoinHandle<()>,
}

/// Serves `store` like [`serve`], on a task of its own, until
/// [`Server::stop`]. Fails only if a listener has no local address.
pub fn spawn(store: Store, listeners: Listeners, front_ends: FrontEnds) -> Result<Server> {
    let http = listeners.http.local_addr()?;
    let resp = listeners
        .resp
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        store,
        listeners,
        front_ends,
        shutdown.clone().cancelled_owned(),
    ));
    Ok(Server {
        http,
        resp,
        shutdown,
        task,
    })
}

impl Server {
    /// Where the HTTP API listens.
    pub fn http_address(&self) -> SocketAddr {
        self.http
    }

    /// Where the RESP front end listens, if it is on.
    pub fn resp_address(&self) -> Option<SocketAddr> {
        self.resp
    }

    /// Begins the graceful shutdown without waiting for it: from here on no
    /// connection is accepted; requests in flight are still answered.
    pub fn begin_stop(&self) {
        self.shutdown.cancel();
    }

    /// Begins the graceful shutdown (if [`begin_stop`](Self::begin_stop) did
    /// not) and waits until in-flight requests are answered (up to the drain
    /// timeout) and the store is closed.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
