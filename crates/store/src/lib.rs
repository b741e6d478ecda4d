//! The revisioned key-value store under the API server.
//!
//! Every write gets the next value of one global revision, which the API server reports as
//! `resourceVersion`. Writes are create, compare-and-swap update and delete; reads are a
//! point get and a prefix list at the current or an earlier revision; watches replay every
//! event after a revision and then follow live writes. This is the contract etcd offers, so
//! an etcd backend can implement [`Store`] too and pass the same conformance suite.
//!
//! Start with [`Store`]; the backends live in their own modules.

use std::pin::Pin;

#[cfg(feature = "test-util")]
pub mod conformance;
pub mod embedded;
mod history;
mod hub;
pub mod memory;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use memory::MemoryStore;

use futures::Stream;

/// A store revision. Revision 0 is the empty store; the first write gets revision 1.
pub type Revision = u64;

/// One key with its value and the revisions that created and last changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the write that produced this value.
    pub mod_revision: Revision,
}

/// One change, as a watch delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A create or update. `prev` is the value before the write, absent for a create.
    Put { kv: KeyValue, prev: Option<KeyValue> },
    /// A deletion at `revision`; `prev` is the value that was deleted.
    Delete { prev: KeyValue, revision: Revision },
}

impl Event {
    /// The revision of the write that caused this event.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put { kv, .. } => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }

    /// The key this event changed.
    pub fn key(&self) -> &str {
        match self {
            Event::Put { kv, .. } => &kv.key,
            Event::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A store failure. Each variant except `Internal` is an expected outcome that callers
/// map to an API status.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    #[error("key {key} not found")]
    NotFound { key: String },
    #[error("key {key} already exists")]
    AlreadyExists { key: String },
    /// A compare-and-swap failed: the key's current mod revision differs from the expected one.
    #[error("key {key} was modified: expected revision {expected}, current {current}")]
    Conflict { key: String, expected: Revision, current: Revision },
    /// The requested revision is older than the retained history.
    #[error("revision {requested} is compacted, the oldest available is {oldest}")]
    Expired { requested: Revision, oldest: Revision },
    /// The requested revision is newer than the store's current revision.
    #[error("revision {requested} is in the future, the current revision is {current}")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("store failure: {0}")]
    Internal(String),
}

/// A watch: events in revision order, each with a revision greater than the start.
/// An `Err` item ends the stream (for example `Expired` when a slow watcher fell behind
/// the retained history); the caller then starts a new list and watch.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// The result of a prefix list: the matching keys in key order, and the revision they
/// reflect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
}

/// A revisioned key-value store with compare-and-swap writes and watches.
///
/// Contract, checked by the conformance suite:
/// - a write is durable when its future resolves (a crash afterwards loses nothing);
/// - revisions strictly increase across all keys, one per successful write;
/// - a watch from revision `r` delivers every event with revision greater than `r`
///   exactly once and in order, or `Expired` when `r` is older than the history kept.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Returns the current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Lists keys that start with `prefix`, at the current revision or at `at`.
    /// An `at` older than the retained history fails with `Expired`.
    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError>;

    /// Creates `key`; fails with `AlreadyExists` when it is present.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError>;

    /// Replaces the value of an existing `key`. With `expected` set, the write happens only
    /// when the key's mod revision equals it, and fails with `Conflict` otherwise.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key`, with the same `expected` rule as `update`. Returns the deleted value
    /// and the revision of the deletion.
    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError>;

    /// Watches keys that start with `prefix` for events after revision `after`.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision, StoreError>;

    /// The oldest revision a watch or list may start from.
    async fn oldest_revision(&self) -> Result<Revision, StoreError>;
}
