//! `run(config, listeners, shutdown)`: wires the embedded broker (if any), the
//! store and the HTTP front end, and shuts them down in order: stop accepting,
//! finish in-flight requests, flush the producer and stop the consumer, stop
//! the broker last.

use std::{future::Future, sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{KafkaSource, ServiceConfig},
    error::Result,
    http::{self, AppState},
    store::Store,
};

/// Listeners bound by the caller (tests bind `127.0.0.1:0`).
pub struct Listeners {
    pub http: TcpListener,
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

/// Runs kafkv until `shutdown` resolves: the embedded broker if configured,
/// the store, and the front ends; then shuts them down in that order reversed.
pub async fn run(
    config: ServiceConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut store_config = config.store.clone();
    #[cfg(feature = "embedded-broker")]
    let mut broker = None;
    match &config.kafka {
        KafkaSource::External(brokers) => {
            info!(%brokers, "using the Kafka cluster at --brokers");
            store_config.brokers = brokers.clone();
        }
        #[cfg(feature = "embedded-broker")]
        KafkaSource::Embedded(broker_config) => {
            let started = crate::broker::EmbeddedBroker::start(broker_config).await?;
            store_config.brokers = started.address().to_string();
            broker = Some(started);
        }
        #[cfg(not(feature = "embedded-broker"))]
        KafkaSource::Embedded(_) => {
            return Err(crate::error::Error::Io(std::io::Error::other(
                "this kafkv was built without the embedded-broker feature; pass --brokers",
            )));
        }
    }

    let store = Store::start(store_config).await?;
    serve(store, listeners, config.drain_timeout, shutdown).await;
    #[cfg(feature = "embedded-broker")]
    if let Some(broker) = broker {
        broker.stop().await;
    }
    info!("shutdown complete");
    Ok(())
}

/// Serves `store` on the front ends until `shutdown` resolves, then stops
/// accepting, waits up to `drain_timeout` for in-flight requests, and closes
/// the store (flushing the producer).
pub async fn serve(
    store: Store,
    listeners: Listeners,
    drain_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let token = CancellationToken::new();
    let app = http::router(AppState {
        store: store.clone(),
        metrics: metrics_handle(),
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
    readiness.abort();
    store.close().await;
}
