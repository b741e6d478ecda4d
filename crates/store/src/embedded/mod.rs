//! The embedded [`Store`]: one redb file on the server's disk.
//!
//! Writes go through a single writer thread that commits in groups (see `writer`).
//! Gets and lists open their own redb read transactions and do not queue behind writes. Watches
//! and lists at older revisions use an in-memory history of recent events, which starts
//! empty at the persisted revision after a restart.

mod codec;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use self::codec::{ITEMS, META, REVISION_KEY, decode, internal};
use self::writer::{WriteOp, WriteOutput, WriteRequest, Writer};
use crate::hub::WatchHub;
use crate::{KeyValue, ListResult, Revision, Store, StoreError, WatchStream};

/// Settings of an [`EmbeddedStore`].
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Number of recent events kept in memory for watches and lists at older revisions.
    ///
    /// NOTE: an update event holds the new and the previous value, so the history's memory
    /// use is up to twice the size of the last `history` values written.
    pub history: usize,
    /// Maximum number of writes committed in one transaction.
    pub max_batch: usize,
    /// Number of writes that may wait for the writer before callers wait to enqueue.
    pub queue: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions { history: 100_000, max_batch: 1024, queue: 4096 }
    }
}

/// A [`Store`] in one redb file. Clones share the file and the writer; the file is
/// closed when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    hub: Arc<WatchHub>,
    commits: Arc<AtomicU64>,
    /// `None` only while dropping, because taking it closes the writer's channel.
    requests: Option<mpsc::Sender<WriteRequest>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its current batch. Joining it here
        // means the file is unlocked once the last handle is gone, so it can be reopened.
        self.requests = None;
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "store writer thread panicked");
        }
    }
}

impl EmbeddedStore {
    /// Opens the store file at `path`, creating it when absent, and starts its writer.
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let db = Database::create(path)
            .map_err(|e| internal(&format!("open store file {}", path.display()), e))?;
        let revision = init_tables(&db)?;
        let db = Arc::new(db);
        let hub = Arc::new(WatchHub::new(options.history, revision));
        let (requests, receiver) = mpsc::channel(options.queue.max(1));

        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            hub: hub.clone(),
            commits: commits.clone(),
            revision,
            max_batch: options.max_batch.max(1),
        };
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::run(writer, receiver))
            .map_err(|e| internal("start store writer thread", e))?;
        tracing::info!(path = %path.display(), revision, "store opened");

        let inner = Inner {
            path: path.to_path_buf(),
            db,
            hub,
            commits,
            requests: Some(requests),
            writer: Some(writer),
        };
        Ok(EmbeddedStore { inner: Arc::new(inner) })
    }

    /// Returns the number of write transactions committed since the store was opened.
    /// Each is one fsync, so with concurrent writers it is usually lower than the number of writes.
    pub fn commit_count(&self) -> u64 {
        self.inner.commits.load(Ordering::Relaxed)
    }

    /// Sends `op` to the writer and waits until its batch is committed.
    async fn write(&self, op: WriteOp) -> Result<WriteOutput, StoreError> {
        let stopped = || {
            StoreError::Internal(
                "store writer thread is not running, so writes fail until the store is reopened"
                    .into(),
            )
        };
        let requests = self.inner.requests.as_ref().ok_or_else(stopped)?;
        let (reply, answer) = oneshot::channel();
        requests.send(WriteRequest { op, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `read` in a read transaction on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(|e| internal("begin read transaction", e))?;
            read(&txn)
        })
        .await
        .map_err(|e| internal("read task", e))?
    }
}

/// Creates the tables if absent and returns the persisted revision.
fn init_tables(db: &Database) -> Result<Revision, StoreError> {
    let txn = db.begin_write().map_err(|e| internal("begin write transaction", e))?;
    let revision = {
        txn.open_table(ITEMS).map_err(|e| internal("create items table", e))?;
        let meta = txn.open_table(META).map_err(|e| internal("create meta table", e))?;
        let stored = meta.get(REVISION_KEY).map_err(|e| internal("read revision", e))?;
        stored.map(|guard| guard.value()).unwrap_or(0)
    };
    txn.commit().map_err(|e| internal("commit table creation", e))?;
    Ok(revision)
}

/// Reads the keys under `prefix` and the revision they reflect, in one transaction.
fn read_prefix(
    txn: &redb::ReadTransaction,
    prefix: &str,
) -> Result<(BTreeMap<String, KeyValue>, Revision), StoreError> {
    let meta = txn.open_table(META).map_err(|e| internal("open meta table", e))?;
    let revision = meta
        .get(REVISION_KEY)
        .map_err(|e| internal("read revision", e))?
        .map(|guard| guard.value())
        .unwrap_or(0);

    let table = txn.open_table(ITEMS).map_err(|e| internal("open items table", e))?;
    let mut items = BTreeMap::new();
    for entry in table.range(prefix..).map_err(|e| internal("list keys", e))? {
        let (key, value) = entry.map_err(|e| internal("list keys", e))?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        items.insert(key.to_string(), decode(key, value.value())?);
    }
    Ok((items, revision))
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let key = key.to_string();
        self.read(move |txn| {
            let table = txn.open_table(ITEMS).map_err(|e| internal("open items table", e))?;
            let stored = table.get(key.as_str()).map_err(|e| internal("read key", e))?;
            stored.map(|guard| decode(&key, guard.value())).transpose()
        })
        .await
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        let owned = prefix.to_string();
        let (items, revision) = self.read(move |txn| read_prefix(txn, &owned)).await?;
        let Some(at) = at else {
            return Ok(ListResult { items: items.into_values().collect(), revision });
        };

        // The writer publishes a batch right after its commit, so the history may lag the
        // snapshot for a moment. The undo needs every event up to the snapshot.
        if at <= revision {
            self.inner.hub.wait_published(revision).await;
        }
        let items = self.inner.hub.rewind_to(items, prefix, at, revision)?;
        Ok(ListResult { items, revision: at })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        match self.write(WriteOp::Create { key: key.to_string(), value }).await? {
            WriteOutput::Put(kv) => Ok(kv),
            WriteOutput::Deleted(..) => {
                Err(StoreError::Internal("create returned a delete".into()))
            }
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        match self.write(WriteOp::Update { key: key.to_string(), value, expected }).await? {
            WriteOutput::Put(kv) => Ok(kv),
            WriteOutput::Deleted(..) => {
                Err(StoreError::Internal("update returned a delete".into()))
            }
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        match self.write(WriteOp::Delete { key: key.to_string(), expected }).await? {
            WriteOutput::Deleted(prev, revision) => Ok((prev, revision)),
            WriteOutput::Put(_) => Err(StoreError::Internal("delete returned a put".into())),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.hub.watch(prefix, after)
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.hub.last())
    }

    async fn oldest_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.hub.oldest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();

        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.create(&format!("/g/{i}"), vec![1; 32]).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }

        assert_eq!(store.current_revision().await.unwrap(), 64);
        let commits = store.commit_count();
        assert!(commits < 64, "64 concurrent creates took {commits} commits, so none were grouped");
    }

    #[tokio::test]
    async fn failed_compare_and_swap_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        store.create("/k", b"1".to_vec()).await.unwrap();

        let error = store.update("/k", b"2".to_vec(), Some(7)).await.unwrap_err();
        assert_eq!(error, StoreError::Conflict { key: "/k".into(), expected: 7, current: 1 });
        assert_eq!(store.commit_count(), 1, "only the create was committed");
    }
}
