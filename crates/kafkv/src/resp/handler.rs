//! Runs one client: takes its requests as a pipeline, runs the commands, and
//! writes the replies in order.
//!
//! Every complete request in the input buffer is parsed before anything is
//! written, and all the replies go out in one write. Within that batch,
//! consecutive writes (`SET`, `MSET`, `DEL`) are put in flight together and
//! answered in order; a read or session command first waits for the writes
//! before it, so a pipeline reads its own writes, and writes after it start
//! only once it has been answered. Other connections never wait on this one.
//!
//! `MULTI` opens a transaction that lives across batches: commands are
//! queued (`+QUEUED`) until `EXEC` runs them the same way, into one array
//! reply, or `DISCARD` drops them. An unknown or malformed command while
//! queueing makes `EXEC` refuse the whole queue (`EXECABORT`), as in Redis.

use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{
    cmd::{Command, Kind},
    connection::{Connection, Incoming},
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
    let mut transaction = None;
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
        run_batch(requests, &mut session, &mut transaction, &mut connection).await;
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

/// A `MULTI` in progress: the commands queued, and whether one was refused
/// while queueing (then `EXEC` discards them all, as in Redis).
#[derive(Default)]
pub struct Transaction {
    queued: Vec<Command>,
    failed: bool,
}

/// Where replies go: the connection, or an `EXEC`'s array.
trait Replies {
    fn send(&mut self, reply: Frame, resp3: bool);
}

impl Replies for Connection {
    fn send(&mut self, reply: Frame, resp3: bool) {
        self.reply(&reply, resp3);
    }
}

impl Replies for Vec<Frame> {
    fn send(&mut self, reply: Frame, _resp3: bool) {
        self.push(reply);
    }
}

/// Runs commands in order, replying in order: consecutive writes are put in
/// flight together, anything else first waits for the writes before it.
struct Runner<'a, R: Replies> {
    writes: Vec<Command>,
    replies: &'a mut R,
}

impl<'a, R: Replies> Runner<'a, R> {
    fn new(replies: &'a mut R) -> Self {
        Self {
            writes: Vec::new(),
            replies,
        }
    }

    async fn run(&mut self, command: Command, session: &mut Session) {
        if command.kind() == Kind::Write {
            self.writes.push(command);
            return;
        }
        self.finish(session).await;
        let name = command.counted_name();
        if command.is_invalid() {
            // Refused before running: rejected, not a call (as Redis counts).
            session.server.stats.rejected(name);
            let reply = command.apply(session).await;
            self.send(reply, session);
            return;
        }
        let started = Instant::now();
        let reply = command.apply(session).await;
        session.server.stats.called(name, started.elapsed(), &reply);
        self.send(reply, session);
    }

    /// Replies `reply` after the writes before it.
    async fn reply(&mut self, reply: Frame, session: &Session) {
        self.finish(session).await;
        self.send(reply, session);
    }

    /// Runs the pending writes concurrently and sends their replies in order.
    async fn finish(&mut self, session: &Session) {
        if self.writes.is_empty() {
            return;
        }
        let store = &session.store;
        let stats = &session.server.stats;
        let replies = join_all(self.writes.drain(..).map(|write| async move {
            let name = write.counted_name();
            let started = Instant::now();
            let reply = write.apply_write(store).await;
            stats.called(name, started.elapsed(), &reply);
            reply
        }))
        .await;
        for reply in replies {
            self.send(reply, session);
        }
    }

    fn send(&mut self, reply: Frame, session: &Session) {
        session.server.stats.replied(&reply);
        self.replies.send(reply, session.resp3);
    }
}

async fn run_batch(
    requests: Vec<Incoming>,
    session: &mut Session,
    transaction: &mut Option<Transaction>,
    connection: &mut Connection,
) {
    let mut runner = Runner::new(connection);
    for request in requests {
        // A flood of requests leaves real-time priority once its budget is
        // spent (crate::scheduling).
        crate::scheduling::RequestThread::checkpoint();
        let request = match request {
            Incoming::Request(request) => request,
            Incoming::TooLarge { len, max } => {
                if let Some(open) = transaction {
                    open.failed = true;
                }
                let refused = Frame::error(format!(
                    "ERR the request has a bulk string of {len} bytes, over the limit of {max} \
                     bytes; it was read and discarded, nothing was run. --max-value-bytes \
                     raises the limit (keep key + value under the broker's message.max.bytes)"
                ));
                runner.reply(refused, session).await;
                continue;
            }
        };
        let Some(command) = Command::parse(request) else {
            continue;
        };
        session
            .server
            .commands_processed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if session.needs_auth() && !command.allowed_before_auth() {
            session.server.stats.rejected(command.counted_name());
            runner
                .reply(Frame::error("NOAUTH Authentication required."), session)
                .await;
            continue;
        }
        if session.in_subscribe_mode() && !command.allowed_in_subscribe_mode() {
            session.server.stats.rejected(command.counted_name());
            let refused = Frame::error(format!(
                "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
                 RESET are allowed in this context",
                command.name()
            ));
            runner.reply(refused, session).await;
            continue;
        }
        // MULTI, EXEC, DISCARD and the refusals inside a transaction are
        // calls of their own; a queued command is counted when EXEC runs it.
        let counted = (command.transaction_role() != "queued").then(|| command.counted_name());
        // An EXEC refused for errors while queueing unwatches too, as in Redis.
        let exec = command.transaction_role() == "exec" && transaction.is_some();
        let command = match transact(command, transaction) {
            Step::Run(command) => command,
            Step::Reply(reply) => {
                if exec {
                    session.watched.clear();
                }
                if let Some(name) = counted {
                    session.server.stats.called(name, Duration::ZERO, &reply);
                }
                runner.reply(reply, session).await;
                continue;
            }
            Step::Discard => {
                session.watched.clear();
                let reply = Frame::ok();
                if let Some(name) = counted {
                    session.server.stats.called(name, Duration::ZERO, &reply);
                }
                runner.reply(reply, session).await;
                continue;
            }
            Step::Exec(queued) => {
                runner.finish(session).await;
                let started = Instant::now();
                let reply = if session.watched.is_empty() {
                    let mut replies = Vec::with_capacity(queued.len());
                    let mut exec = Runner::new(&mut replies);
                    for command in queued {
                        exec.run(command, session).await;
                    }
                    exec.finish(session).await;
                    Frame::Array(replies)
                } else {
                    exec_watched(queued, session).await
                };
                if let Some(name) = counted {
                    session.server.stats.called(name, started.elapsed(), &reply);
                }
                runner.reply(reply, session).await;
                continue;
            }
        };
        runner.run(command, session).await;
        if session.quit {
            break;
        }
    }
    runner.finish(session).await;
}

/// `EXEC` after `WATCH`: the queued commands as one batch record,
/// conditional on every watched key's version (docs/rmw.md); nil when one
/// changed, and then nothing was written. Unwatches, whatever the outcome.
async fn exec_watched(queued: Vec<Command>, session: &mut Session) -> Frame {
    use crate::op::{Batch, Condition};
    let watched = std::mem::take(&mut session.watched);
    let max_len = session.store.max_value_len();
    let mut steps = Vec::new();
    let mut replies = Vec::with_capacity(queued.len());
    for command in queued {
        let name = command.name();
        match command.batched(max_len) {
            Ok(batched) => {
                replies.push((batched.steps.len(), batched.reply));
                steps.extend(batched.steps);
            }
            // Its reply reads no key, so where it runs does not matter.
            Err(command) if matches!(name, "ping" | "echo" | "time") => {
                let reply = command.apply(session).await;
                replies.push((0, Box::new(move |_| reply)));
            }
            Err(_) => {
                return Frame::error(format!(
                    "ERR kafkv cannot run '{name}' inside a transaction with WATCH: such a \
                     transaction is one atomic record, and '{name}' has no form in it; nothing \
                     was written"
                ));
            }
        }
    }
    let conditions = watched
        .into_iter()
        .map(|(key, version)| {
            let when = version.map_or(Condition::Absent, Condition::Version);
            (key, when)
        })
        .collect();
    let batch = Batch { conditions, steps };
    match session.store.apply_batch(batch).await {
        Ok(applied) if !applied.outcome.applied => Frame::NullArray,
        Ok(applied) => {
            let mut outcomes = applied.outcome.steps.into_iter();
            Frame::Array(
                replies
                    .into_iter()
                    .map(|(count, reply)| reply(outcomes.by_ref().take(count).collect()))
                    .collect(),
            )
        }
        Err(error) => super::cmd::store_error(error),
    }
}

/// What a command does with respect to `MULTI`.
enum Step {
    /// Run it now.
    Run(Command),
    /// Answer this instead (queued, refused, a transaction opened or dropped).
    Reply(Frame),
    /// `EXEC`: run these, answering with their replies in one array.
    Exec(Vec<Command>),
    /// `DISCARD`: the queue is dropped; the watched keys go too.
    Discard,
}

/// Queues `command` when a transaction is open, and handles the
/// transaction commands themselves, as Redis does.
fn transact(command: Command, transaction: &mut Option<Transaction>) -> Step {
    let role = command.transaction_role();
    let Some(open) = transaction else {
        if role == "multi" {
            *transaction = Some(Transaction::default());
            return Step::Reply(Frame::ok());
        }
        return Step::Run(command);
    };
    match role {
        "exec" => {
            let Transaction { queued, failed } = transaction.take().expect("open");
            if failed {
                return Step::Reply(Frame::error(
                    "EXECABORT Transaction discarded because of previous errors.",
                ));
            }
            Step::Exec(queued)
        }
        "discard" => {
            *transaction = None;
            Step::Discard
        }
        "multi" => Step::Reply(Frame::error("ERR MULTI calls can not be nested")),
        "watch" => Step::Reply(Frame::error("ERR WATCH inside MULTI is not allowed")),
        // Not queued: the connection closes after the reply.
        "quit" => Step::Run(command),
        // Unknown or malformed: refused now, and EXEC will refuse the rest.
        "" => {
            open.failed = true;
            Step::Run(command)
        }
        _ => {
            open.queued.push(command);
            Step::Reply(Frame::Simple("QUEUED".into()))
        }
    }
}

/// The next batch of applied changes for this connection's subscriptions;
/// never resolves while it has none. `None`: it fell too far behind.
async fn next_changes(session: &mut Session) -> Option<std::sync::Arc<crate::state::ChangeBatch>> {
    match &mut session.pubsub {
        Some(subscriptions) => subscriptions.next_batch().await,
        None => std::future::pending().await,
    }
}
