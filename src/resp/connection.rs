//! One client connection: read requests, run them as a pipeline, write the
//! replies in order.
//!
//! Every complete request in the input buffer is parsed before anything is
//! written, and all the replies go out in one write. Within that batch,
//! consecutive writes (`SET`, `MSET`, `DEL`) are put in flight together and
//! answered in order; a read or session command first waits for the writes
//! before it, so a pipeline reads its own writes, and writes after it start
//! only once it has been answered. Other connections never wait on this one.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::future::join_all;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{
    cmd::{Command, Kind},
    frame::{self, Frame},
    server::Shared,
};
use crate::store::Store;

/// Most requests run as one batch; more wait for the next round.
const MAX_BATCH: usize = 1024;
/// Replies are written out once this much is buffered, even mid-batch.
const WRITE_AT: usize = 64 * 1024;

/// A connection's own state.
pub struct Session {
    pub store: Store,
    pub server: Arc<Shared>,
    pub id: u64,
    pub resp3: bool,
    pub authenticated: bool,
    pub name: Option<Bytes>,
    /// Set by `QUIT`: close once the replies are written.
    pub quit: bool,
}

impl Session {
    fn needs_auth(&self) -> bool {
        self.server.auth_token.is_some() && !self.authenticated
    }
}

/// Serves one client until it leaves, breaks the protocol, or `shutdown`
/// (the batch in progress is finished and answered first).
pub async fn serve(mut stream: TcpStream, mut session: Session, shutdown: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let limits = session.server.config.limits;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    loop {
        let mut requests = Vec::new();
        let mut broken = None;
        // Whether the batch stopped at its size limit, so complete requests
        // may still be buffered; otherwise the buffer holds at most a partial one.
        let mut more_buffered = false;
        loop {
            if requests.len() == MAX_BATCH {
                more_buffered = true;
                break;
            }
            match frame::check(&input, &limits) {
                Ok(Some(request)) => requests.push(frame::take(&mut input, request)),
                Ok(None) => break,
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        run_batch(requests, &mut session, &mut output).await;
        if let Some(error) = broken {
            debug!(id = session.id, %error, "closing a connection that broke the protocol");
            Frame::error(format!("ERR {error}")).encode(&mut output, session.resp3);
            let _ = stream.write_all(&output).await;
            return;
        }
        if session.quit {
            let _ = stream.write_all(&output).await;
            return;
        }
        // More requests buffered: run them before writing, unless enough
        // replies are waiting.
        if more_buffered && output.len() < WRITE_AT {
            continue;
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        if more_buffered {
            continue;
        }
        tokio::select! {
            read = stream.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn run_batch(requests: Vec<Vec<Bytes>>, session: &mut Session, output: &mut BytesMut) {
    let mut writes = Vec::new();
    for request in requests {
        let Some(command) = Command::parse(request) else {
            continue;
        };
        if session.needs_auth() && !command.allowed_before_auth() {
            finish_writes(&mut writes, session, output).await;
            Frame::error("NOAUTH Authentication required.").encode(output, session.resp3);
            continue;
        }
        if command.kind() == Kind::Write {
            writes.push(command);
            continue;
        }
        finish_writes(&mut writes, session, output).await;
        let reply = command.apply(session).await;
        reply.encode(output, session.resp3);
        if session.quit {
            break;
        }
    }
    finish_writes(&mut writes, session, output).await;
}

/// Runs the pending writes concurrently and encodes their replies in order.
async fn finish_writes(writes: &mut Vec<Command>, session: &Session, output: &mut BytesMut) {
    if writes.is_empty() {
        return;
    }
    let store = &session.store;
    let replies = join_all(writes.drain(..).map(|w| w.apply_write(store))).await;
    for reply in replies {
        reply.encode(output, session.resp3);
    }
}
