//! Runs one client: takes its requests as a pipeline, runs the commands, and
//! writes the replies in order.
//!
//! Every complete request in the input buffer is parsed before anything is
//! written, and all the replies go out in one write. Within that batch,
//! consecutive writes (`SET`, `MSET`, `DEL`) are put in flight together and
//! answered in order; a read or session command first waits for the writes
//! before it, so a pipeline reads its own writes, and writes after it start
//! only once it has been answered. Other connections never wait on this one.

use bytes::Bytes;
use futures::future::join_all;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{
    cmd::{Command, Kind},
    connection::Connection,
    frame::Frame,
    session::Session,
};

/// Most requests run as one batch; more wait for the next round.
const MAX_BATCH: usize = 1024;
/// Replies are written out once this much is buffered, even mid-batch.
const WRITE_AT: usize = 64 * 1024;

/// Serves one client until it leaves, breaks the protocol, or `shutdown`
/// (the batch in progress is finished and answered first).
pub async fn serve(stream: TcpStream, mut session: Session, shutdown: CancellationToken) {
    let mut connection = Connection::new(stream, session.server.config.limits);
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
            match connection.request() {
                Ok(Some(request)) => requests.push(request),
                Ok(None) => break,
                Err(error) => {
                    broken = Some(error);
                    break;
                }
            }
        }
        run_batch(requests, &mut session, &mut connection).await;
        if let Some(error) = broken {
            debug!(id = session.id, %error, "closing a connection that broke the protocol");
            connection.reply(&Frame::error(format!("ERR {error}")), session.resp3);
            let _ = connection.flush().await;
            return;
        }
        if session.quit {
            let _ = connection.flush().await;
            return;
        }
        // More requests buffered: run them before writing, unless enough
        // replies are waiting.
        if more_buffered && connection.buffered() < WRITE_AT {
            continue;
        }
        if connection.flush().await.is_err() {
            return;
        }
        if more_buffered {
            continue;
        }
        tokio::select! {
            open = connection.read() => if !open {
                return;
            },
            changes = next_changes(&mut session) => {
                let Some(batch) = changes else {
                    // Redis drops a subscriber past its output buffer limit too.
                    connection.reply(&Frame::error(
                        "ERR this subscriber fell too far behind the store's changes \
                         (kafkv serve --watch-buffer); subscribe again",
                    ), session.resp3);
                    let _ = connection.flush().await;
                    return;
                };
                if let Some(subscriptions) = &session.pubsub {
                    for message in subscriptions.messages(&batch) {
                        connection.reply(&message, session.resp3);
                    }
                }
            },
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn run_batch(requests: Vec<Vec<Bytes>>, session: &mut Session, connection: &mut Connection) {
    let mut writes = Vec::new();
    for request in requests {
        let Some(command) = Command::parse(request) else {
            continue;
        };
        if session.needs_auth() && !command.allowed_before_auth() {
            finish_writes(&mut writes, session, connection).await;
            connection.reply(
                &Frame::error("NOAUTH Authentication required."),
                session.resp3,
            );
            continue;
        }
        if session.in_subscribe_mode() && !command.allowed_in_subscribe_mode() {
            finish_writes(&mut writes, session, connection).await;
            connection.reply(
                &Frame::error(format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / \
                     QUIT / RESET are allowed in this context",
                    command.name()
                )),
                session.resp3,
            );
            continue;
        }
        if command.kind() == Kind::Write {
            writes.push(command);
            continue;
        }
        finish_writes(&mut writes, session, connection).await;
        let reply = command.apply(session).await;
        connection.reply(&reply, session.resp3);
        if session.quit {
            break;
        }
    }
    finish_writes(&mut writes, session, connection).await;
}

/// The next batch of applied changes for this connection's subscriptions;
/// never resolves while it has none. `None`: it fell too far behind.
async fn next_changes(session: &mut Session) -> Option<std::sync::Arc<crate::state::ChangeBatch>> {
    match &mut session.pubsub {
        Some(subscriptions) => subscriptions.next_batch().await,
        None => std::future::pending().await,
    }
}

/// Runs the pending writes concurrently and buffers their replies in order.
async fn finish_writes(writes: &mut Vec<Command>, session: &Session, connection: &mut Connection) {
    if writes.is_empty() {
        return;
    }
    let store = &session.store;
    let replies = join_all(writes.drain(..).map(|w| w.apply_write(store))).await;
    for reply in replies {
        connection.reply(&reply, session.resp3);
    }
}
