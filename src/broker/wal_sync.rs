//! What an acknowledgement means on the embedded broker: `--broker-sync`.
//!
//! tansu 0.6 commits each produced batch in its own SQLite transaction on
//! connections it opens with `journal_mode=WAL` and `synchronous=NORMAL`: a
//! commit is written to `broker.db-wal` but not fsynced; the WAL reaches the
//! disk at checkpoints (about every 4 MiB of WAL; with kafkv's produce path,
//! by a checkpoint task about a second after a commit and by the writer
//! every 10,000 pages, [`super::checkpoint`]). An acknowledged write therefore survives a crash of the process (SIGKILL, a panic), not an OS
//! crash or a power loss since the last checkpoint, and after such a loss
//! the broker hands the lost offsets out again. That is what a single Kafka
//! broker with its default flush settings promises too (Kafka's durability
//! comes from replication, which a one-node broker has none of).
//!
//! `--broker-sync commit` (the default) closes that gap: the wrapper
//! acknowledges a produce only after an `fsync` of the WAL that began after
//! the produce committed. The fsyncs are shared ("group commit"): one runs
//! at a time, and each covers every commit made before it began, so
//! concurrent producers pay for about one fsync per round, not one each.
//! Syncing the WAL from another file descriptor is sound: `fsync` flushes
//! the file's dirty pages whoever wrote them, and SQLite's recovery keeps
//! every frame up to the last valid commit, so a synced commit frame is
//! recovered. `--broker-sync none` is tansu's behaviour.

use std::{
    io,
    path::{Path, PathBuf},
};

use tokio::sync::{mpsc, oneshot};
use tracing::error;

use super::storage::Health;

/// What an acknowledgement waits for: the WAL fsync with `--broker-sync
/// commit`, nothing with `none`. A failed fsync stops the broker: the
/// commit may not be durable, and the next fsync may report success for
/// pages the kernel dropped (the process exits; a restart recovers from the
/// WAL).
#[derive(Clone)]
pub struct Durability {
    pub sync: Option<WalSync>,
    pub health: Health,
}

impl Durability {
    /// Returns once everything committed so far is on disk (with `commit`).
    pub async fn synced(&self) -> tansu_storage::Result<()> {
        let Some(sync) = &self.sync else {
            return Ok(());
        };
        sync.synced().await.map_err(|error| {
            let reason = format!(
                "the embedded broker could not fsync its write-ahead log ({error}); it cannot \
                 promise that acknowledged writes survive a power loss"
            );
            self.health.fail(reason.clone());
            tansu_storage::Error::Message(reason)
        })
    }
}

/// Shares WAL fsyncs among the produces that wait for one.
#[derive(Debug, Clone)]
pub struct WalSync {
    requests: mpsc::UnboundedSender<oneshot::Sender<io::Result<()>>>,
}

impl WalSync {
    /// Syncs `<database>-wal` (or the database itself while it has no WAL).
    pub fn new(database: &Path) -> Self {
        let (requests, pending) = mpsc::unbounded_channel();
        tokio::spawn(run(wal_of(database), database.to_owned(), pending));
        Self { requests }
    }

    /// Returns once everything committed before this call is on disk.
    pub async fn synced(&self) -> io::Result<()> {
        let (done, outcome) = oneshot::channel();
        self.requests
            .send(done)
            .map_err(|_| io::Error::other("the WAL sync task has stopped"))?;
        outcome
            .await
            .map_err(|_| io::Error::other("the WAL sync task has stopped"))?
    }
}

fn wal_of(database: &Path) -> PathBuf {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// One fsync at a time, for every request that arrived before it began.
async fn run(
    wal: PathBuf,
    database: PathBuf,
    mut pending: mpsc::UnboundedReceiver<oneshot::Sender<io::Result<()>>>,
) {
    let mut waiting = Vec::new();
    while let Some(first) = pending.recv().await {
        waiting.push(first);
        while let Ok(more) = pending.try_recv() {
            waiting.push(more);
        }
        let (wal, database) = (wal.clone(), database.clone());
        let outcome = tokio::task::spawn_blocking(move || sync(&wal, &database))
            .await
            .unwrap_or_else(|panic| Err(io::Error::other(panic.to_string())));
        if let Err(error) = &outcome {
            error!(%error, "embedded broker: could not fsync its write-ahead log");
        }
        for done in waiting.drain(..) {
            let _ = done.send(match &outcome {
                Ok(()) => Ok(()),
                Err(error) => Err(io::Error::new(error.kind(), error.to_string())),
            });
        }
    }
}

/// The WAL holds every commit since the last checkpoint; without a WAL the
/// commits are in the database file.
fn sync(wal: &Path, database: &Path) -> io::Result<()> {
    match std::fs::File::open(wal) {
        Ok(file) => file.sync_data(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::File::open(database)?.sync_data()
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_waiters_share_fsyncs_and_each_is_answered() {
        let dir = tempfile::tempdir().expect("a directory");
        let database = dir.path().join("broker.db");
        std::fs::write(&database, b"db").expect("written");
        std::fs::write(wal_of(&database), b"wal").expect("written");
        let sync = WalSync::new(&database);
        let waits: Vec<_> = (0..100).map(|_| sync.synced()).collect();
        for outcome in futures::future::join_all(waits).await {
            outcome.expect("synced");
        }
        // Without a WAL the database file is synced; without either, the
        // error reaches every waiter.
        std::fs::remove_file(wal_of(&database)).expect("removed");
        sync.synced().await.expect("the database synced");
        std::fs::remove_file(&database).expect("removed");
        assert!(sync.synced().await.is_err());
    }
}
