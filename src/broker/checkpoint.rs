//! Checkpoints of the embedded broker's write-ahead log, taken beside the
//! produce path instead of inside it.
//!
//! **Why.** SQLite checkpoints a WAL database from inside a commit: the
//! commit that takes the WAL past `wal_autocheckpoint` pages (1,000 by
//! default) also copies every page the WAL holds back into the database
//! file and fsyncs it. On kafkv's produce connection that commit is the
//! writer's, which holds the storage gate until it returns, so every
//! produce queued behind it waited for the copy: a profile of the broker
//! during a bulk expiry put 14.6% of its CPU in `walCheckpoint` under the
//! writer's commit.
//!
//! **How.** After each commit the writer wakes this task ([`Checkpointer::committed`]),
//! which waits [`GATHER`] for more commits and then runs a `PASSIVE`
//! checkpoint on its own connection, on a blocking thread. A passive
//! checkpoint takes no lock a writer or a reader waits for: it copies the
//! frames no reader still needs and leaves the rest for the next one, and
//! the writer's next transaction starts the WAL over once every frame is
//! copied.
//!
//! **The writer still checkpoints, rarely.** Under a steady stream of
//! produces a commit nearly always lands while this task's checkpoint runs,
//! so a transaction seldom begins with every frame copied and the WAL is not
//! started over; it grows to [`super::database::BACKSTOP_PAGES`] (ten times
//! SQLite's default, about 40 MiB, which the file then keeps: no
//! `journal_size_limit`). There the writer's own commit checkpoints, under
//! the gate, copying only the frames this task has not (about a second's),
//! and the next transaction starts the WAL over. So the produce path copies
//! about a second's frames once every 10,000 pages, where with SQLite's
//! default it copied 1,000 pages every 1,000.
//!
//! **Durability is unchanged**: a checkpoint fsyncs the WAL before copying
//! from it and the database file before the WAL may be started over, on
//! any connection; `--broker-sync commit` ([`super::wal_sync`]) still
//! acknowledges a produce only after an fsync of the WAL holding its commit.

use std::{sync::Arc, time::Duration};

use libsql::Connection;
use tokio::sync::Notify;
use tracing::warn;

/// How long the checkpointer lets commits gather after the first one wakes
/// it: one checkpoint then copies a page the commits changed over and over
/// (an index leaf, the watermark) once. Measured on a bulk expiry of
/// 100,000 keys (three instances): at 50 ms the broker spent more CPU than
/// with SQLite's own checkpoints (3.0–3.1 s against 2.6–2.7) and swept no
/// faster; at 1 s it swept in 4.1–4.4 s instead of 5.2–5.9.
const GATHER: Duration = Duration::from_secs(1);

/// Wakes the checkpoint task; cheap to clone. The task stops when every
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct Checkpointer {
    wake: Arc<Notify>,
}

impl Checkpointer {
    /// Starts the task on `connection`, a connection of its own to the
    /// broker's database.
    pub fn start(connection: Connection) -> Self {
        let wake = Arc::new(Notify::new());
        tokio::spawn(run(connection, Arc::downgrade(&wake)));
        Self { wake }
    }

    /// Something was committed: a checkpoint follows within [`GATHER`] (or
    /// after the one running now).
    pub fn committed(&self) {
        self.wake.notify_one();
    }
}

async fn run(connection: Connection, wake: std::sync::Weak<Notify>) {
    loop {
        // Holding the Notify only while waiting lets the task end once
        // every Checkpointer is gone; `notify_one` keeps a wake-up that
        // came while a checkpoint ran.
        let Some(notify) = wake.upgrade() else {
            return;
        };
        tokio::select! {
            () = notify.notified() => {}
            // Looks again whether the Checkpointers are gone.
            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
        }
        drop(notify);
        tokio::time::sleep(GATHER).await;
        let connection = connection.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            futures::executor::block_on(checkpoint(&connection))
        })
        .await;
        // A checkpoint that met another connection's answers Ok (busy);
        // either way the checkpoint after the next commit, or the writer's
        // backstop, copies what this one did not.
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "embedded broker: a WAL checkpoint failed"),
            Err(error) => warn!(%error, "embedded broker: a WAL checkpoint did not finish"),
        }
    }
}

/// One passive checkpoint: copies what no reader needs, waits for nobody.
async fn checkpoint(connection: &Connection) -> libsql::Result<()> {
    let mut rows = connection
        .query("PRAGMA wal_checkpoint(PASSIVE)", ())
        .await?;
    while rows.next().await?.is_some() {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL is copied back into the database file by the task, not by
    /// the committing connection: with the committing connection's own
    /// checkpoint off, the rows are only in the WAL (the database file
    /// holds no more than the schema) until the task runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_are_checkpointed_by_the_task() {
        const ROWS: u64 = 50;
        const ROW_BYTES: u64 = 3000;
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("db");
        let database = libsql::Builder::new_local(&path)
            .build()
            .await
            .expect("opens");
        let writer = database.connect().expect("connects");
        for pragma in ["PRAGMA journal_mode = WAL", "PRAGMA wal_autocheckpoint = 0"] {
            let mut rows = writer.query(pragma, ()).await.expect("a pragma");
            while rows.next().await.expect("a row").is_some() {}
        }
        writer
            .execute("CREATE TABLE t (v BLOB)", ())
            .await
            .expect("a table");
        let checkpointer = Checkpointer::start(database.connect().expect("connects"));
        for _ in 0..ROWS {
            writer
                .execute(
                    &format!("INSERT INTO t VALUES (randomblob({ROW_BYTES}))"),
                    (),
                )
                .await
                .expect("an insert");
        }
        let file_bytes = || std::fs::metadata(&path).expect("the file").len();
        // The schema's pages at most; the rows would take ROWS * ROW_BYTES.
        assert!(file_bytes() <= 4 * 4096, "the writer checkpointed");
        checkpointer.committed();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while file_bytes() < ROWS * ROW_BYTES {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the task never checkpointed ({} bytes in the file)",
                file_bytes()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
