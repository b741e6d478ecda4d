//! The single writer thread and its group commit.
//!
//! Every write goes through one channel to one thread. The thread takes all requests
//! that are queued (up to a maximum), applies them in order in one redb write
//! transaction, commits once with immediate durability, publishes the events and only
//! then sends each request its result. Concurrent writers therefore share one fsync, and a write
//! is acknowledged only after the commit that contains it returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::codec::{ITEMS, META, REVISION_KEY, decode, encode, internal};
use crate::hub::WatchHub;
use crate::memory::check_expected;
use crate::{Event, KeyValue, Revision, StoreError};

/// One write operation, as the store's methods receive it.
pub(super) enum WriteOp {
    Create { key: String, value: Vec<u8> },
    Update { key: String, value: Vec<u8>, expected: Option<Revision> },
    Delete { key: String, expected: Option<Revision> },
}

/// The result of a successful write.
pub(super) enum WriteOutput {
    Put(KeyValue),
    Deleted(KeyValue, Revision),
}

pub(super) type WriteResult = Result<WriteOutput, StoreError>;

/// A write operation and the channel its result goes back on.
pub(super) struct WriteRequest {
    pub(super) op: WriteOp,
    pub(super) reply: oneshot::Sender<WriteResult>,
}

/// State of the writer thread, apart from its channel.
pub(super) struct Writer {
    pub(super) db: Arc<Database>,
    pub(super) hub: Arc<WatchHub>,
    /// Number of committed transactions, one fsync each.
    pub(super) commits: Arc<AtomicU64>,
    /// The latest committed revision.
    pub(super) revision: Revision,
    pub(super) max_batch: usize,
}

/// Runs the writer loop until every sender is dropped.
pub(super) fn run(mut writer: Writer, mut requests: mpsc::Receiver<WriteRequest>) {
    let max_batch = writer.max_batch;
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        writer.commit_batch(batch);
    }
    tracing::debug!(revision = writer.revision, "store writer stopped");
}

impl Writer {
    /// Applies and commits one batch, then publishes its events and sends each request its result.
    fn commit_batch(&mut self, batch: Vec<WriteRequest>) {
        let size = batch.len();
        let (ops, replies): (Vec<WriteOp>, Vec<oneshot::Sender<WriteResult>>) =
            batch.into_iter().map(|request| (request.op, request.reply)).unzip();

        match apply_batch(&self.db, self.revision, ops) {
            Ok(applied) => {
                tracing::trace!(batch = size, revision = applied.revision, "batch committed");
                if applied.revision != self.revision {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                }
                self.revision = applied.revision;
                self.hub.publish(applied.events);
                for (reply, result) in replies.into_iter().zip(applied.results) {
                    // The caller may have stopped waiting, but the write is committed regardless.
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(batch = size, revision = self.revision, %error, "batch commit failed");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// A batch applied and committed: one result per operation, one event per revision.
struct AppliedBatch {
    results: Vec<WriteResult>,
    events: Vec<Event>,
    revision: Revision,
}

fn apply_batch(
    db: &Database,
    start: Revision,
    ops: Vec<WriteOp>,
) -> Result<AppliedBatch, StoreError> {
    let mut txn = db.begin_write().map_err(|e| internal("begin write transaction", e))?;
    txn.set_durability(Durability::Immediate).map_err(|e| internal("set durability", e))?;

    let mut applied = AppliedBatch { results: Vec::new(), events: Vec::new(), revision: start };
    {
        let mut items = txn.open_table(ITEMS).map_err(|e| internal("open items table", e))?;
        for op in ops {
            match apply_one(&mut items, op, applied.revision + 1)? {
                Ok((event, output)) => {
                    applied.revision += 1;
                    applied.events.push(event);
                    applied.results.push(Ok(output));
                }
                Err(error) => applied.results.push(Err(error)),
            }
        }
    }

    // A batch of failed compare-and-swaps changes nothing and needs no fsync.
    if applied.events.is_empty() {
        txn.abort().map_err(|e| internal("abort write transaction", e))?;
        return Ok(applied);
    }
    {
        let mut meta = txn.open_table(META).map_err(|e| internal("open meta table", e))?;
        meta.insert(REVISION_KEY, applied.revision).map_err(|e| internal("write revision", e))?;
    }
    txn.commit().map_err(|e| internal("commit", e))?;
    Ok(applied)
}

/// Applies one operation at `revision`. The outer error is a database failure that
/// aborts the batch; the inner one is this operation's own outcome.
fn apply_one(
    items: &mut Table<&str, &[u8]>,
    op: WriteOp,
    revision: Revision,
) -> Result<Result<(Event, WriteOutput), StoreError>, StoreError> {
    let key = match &op {
        WriteOp::Create { key, .. } | WriteOp::Update { key, .. } | WriteOp::Delete { key, .. } => {
            key.clone()
        }
    };
    let current = match items.get(key.as_str()).map_err(|e| internal("read key", e))? {
        Some(guard) => Some(decode(&key, guard.value())?),
        None => None,
    };

    match (op, current) {
        (WriteOp::Create { .. }, Some(_)) => Ok(Err(StoreError::AlreadyExists { key })),
        (WriteOp::Update { .. } | WriteOp::Delete { .. }, None) => {
            Ok(Err(StoreError::NotFound { key }))
        }
        (WriteOp::Create { key, value }, None) => {
            let kv = KeyValue { key, value, create_revision: revision, mod_revision: revision };
            items
                .insert(kv.key.as_str(), encode(&kv).as_slice())
                .map_err(|e| internal("write key", e))?;
            Ok(Ok((Event::Put { kv: kv.clone(), prev: None }, WriteOutput::Put(kv))))
        }
        (WriteOp::Update { value, expected, .. }, Some(prev)) => {
            if let Err(conflict) = check_expected(&prev, expected) {
                return Ok(Err(conflict));
            }
            let kv = KeyValue { value, mod_revision: revision, ..prev.clone() };
            items
                .insert(kv.key.as_str(), encode(&kv).as_slice())
                .map_err(|e| internal("write key", e))?;
            Ok(Ok((Event::Put { kv: kv.clone(), prev: Some(prev) }, WriteOutput::Put(kv))))
        }
        (WriteOp::Delete { expected, .. }, Some(prev)) => {
            if let Err(conflict) = check_expected(&prev, expected) {
                return Ok(Err(conflict));
            }
            items.remove(prev.key.as_str()).map_err(|e| internal("delete key", e))?;
            let event = Event::Delete { prev: prev.clone(), revision };
            Ok(Ok((event, WriteOutput::Deleted(prev, revision))))
        }
    }
}
