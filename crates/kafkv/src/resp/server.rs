//! Accepts RESP connections, caps how many are open, hands them to the RESP
//! threads (each runs its clients with [`handler::serve`]), and drains them
//! on shutdown.
//!
//! Connections run on their own threads, each a single-threaded runtime
//! (`--resp-threads`, default 1), like Redis's event loop: a connection's
//! reads, parsing and replies never hop between threads or wait for a worker
//! to be woken, which measurably costs an unpipelined request on a small
//! machine. Writes still complete on librdkafka's threads and wake the
//! connection's task wherever it is.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    handler,
    session::{RespConfig, Session, Shared},
};
use crate::{scheduling::RequestThread, store::Store};

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
    let shared = Arc::new(Shared::new(config, port));
    info!(
        port,
        threads = shared.config.threads,
        "RESP (Redis protocol) listening"
    );
    let workers: Vec<_> = (0..shared.config.threads.max(1))
        .map(|i| Worker::start(i, shutdown.clone(), drain))
        .collect::<std::io::Result<_>>()
        .expect("start RESP threads");
    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.cancelled() => break,
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
        shared.connections_received.fetch_add(1, Ordering::Relaxed);
        if shared.connections.load(Ordering::Acquire) >= shared.config.max_connections {
            shared.rejected_connections.fetch_add(1, Ordering::Relaxed);
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            continue;
        }
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        shared.connections.fetch_add(1, Ordering::AcqRel);
        let session = Session::new(store.clone(), shared.clone());
        tracing::trace!(%peer, "RESP connection");
        workers[next % workers.len()].hand(stream, session);
        next += 1;
    }
    drop(listener);
    // Closing the hand-off channels lets each thread drain and end.
    let threads: Vec<_> = workers.into_iter().map(|w| w.thread).collect();
    let _ = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    })
    .await;
}

/// A thread with a single-threaded runtime serving the connections handed to it.
struct Worker {
    handoff: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, Session)>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn start(index: usize, shutdown: CancellationToken, drain: Duration) -> std::io::Result<Self> {
        let (handoff, mut incoming) =
            tokio::sync::mpsc::unbounded_channel::<(std::net::TcpStream, Session)>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .on_thread_park(RequestThread::parking)
            .on_thread_unpark(RequestThread::unparked)
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("kafkv-resp-{index}"))
            .spawn(move || {
                // Requests wake this thread: ahead of background work
                // (crate::scheduling says why, how and within what budget).
                RequestThread::start();
                runtime.block_on(async move {
                    let mut connections = JoinSet::new();
                    loop {
                        tokio::select! {
                            handed = incoming.recv() => match handed {
                                Some((stream, session)) => {
                                    let shutdown = shutdown.clone();
                                    connections.spawn(async move {
                                        let shared = session.server.clone();
                                        if stream.set_nonblocking(true).is_ok()
                                            && let Ok(stream) = TcpStream::from_std(stream)
                                        {
                                            handler::serve(stream, session, shutdown).await;
                                        }
                                        shared.connections.fetch_sub(1, Ordering::AcqRel);
                                    });
                                }
                                None => break,
                            },
                            Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        }
                    }
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
                });
            })?;
        Ok(Self { handoff, thread })
    }

    fn hand(&self, stream: std::net::TcpStream, session: Session) {
        if let Err(returned) = self.handoff.send((stream, session)) {
            // The thread is gone (shutting down): give the slot back.
            let (_, session) = returned.0;
            session.server.connections.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
