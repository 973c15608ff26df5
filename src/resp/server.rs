//! Accepts RESP connections, caps how many are open, and drains them on
//! shutdown.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{io::AsyncWriteExt, net::TcpListener, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    connection::{self, Session},
    frame::Limits,
};
use crate::store::Store;

/// Settings of the RESP front end.
#[derive(Debug, Clone)]
pub struct RespConfig {
    /// Most connections open at once; one more is told so and closed. Default 10,000.
    pub max_connections: usize,
    pub limits: Limits,
    /// When set, clients must `AUTH` with it first.
    pub auth_token: Option<String>,
}

impl RespConfig {
    /// Defaults for a store whose values may be `max_value_bytes` long.
    pub fn new(max_value_bytes: usize) -> Self {
        Self {
            max_connections: 10_000,
            limits: Limits {
                max_bulk: max_value_bytes,
                max_args: 1024 * 1024,
                max_inline: 64 * 1024,
            },
            auth_token: None,
        }
    }
}

/// What every connection shares.
pub struct Shared {
    pub config: RespConfig,
    pub auth_token: Option<String>,
    pub started: Instant,
    pub connections: AtomicUsize,
    next_id: AtomicU64,
    pub port: u16,
}

/// Serves RESP on `listener` until `shutdown` is cancelled, then waits up to
/// `drain` for connections to finish what they are doing.
pub async fn run(
    listener: TcpListener,
    store: Store,
    config: RespConfig,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let shared = Arc::new(Shared {
        auth_token: config.auth_token.clone(),
        config,
        started: Instant::now(),
        connections: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        port,
    });
    info!(port, "RESP (Redis protocol) listening");
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (mut stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving.
                warn!(%error, "RESP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if shared.connections.load(Ordering::Acquire) >= shared.config.max_connections {
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        }
        shared.connections.fetch_add(1, Ordering::AcqRel);
        let session = Session {
            store: store.clone(),
            server: shared.clone(),
            id: shared.next_id.fetch_add(1, Ordering::Relaxed),
            resp3: false,
            authenticated: false,
            name: None,
            quit: false,
        };
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        connections.spawn(async move {
            tracing::trace!(%peer, "RESP connection");
            connection::serve(stream, session, shutdown).await;
            shared.connections.fetch_sub(1, Ordering::AcqRel);
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            open = connections.len(),
            "RESP connections still busy after the drain timeout"
        );
        connections.abort_all();
    }
}
