//! An in-memory [`Store`] for tests and throwaway clusters. Nothing survives a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::hub::WatchHub;
use crate::{Event, KeyValue, ListResult, Revision, Store, StoreError, WatchStream};

/// A [`Store`] held in a `BTreeMap`; clones share the same data.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Every write holds this lock while it also publishes its event, so readers see
    /// the map and the history at the same revision.
    data: Mutex<Data>,
    hub: WatchHub,
}

struct Data {
    items: BTreeMap<String, KeyValue>,
    revision: Revision,
}

impl MemoryStore {
    /// Creates an empty store that keeps the last `history` events for watches and lists
    /// at older revisions.
    pub fn new(history: usize) -> Self {
        let data = Data { items: BTreeMap::new(), revision: 0 };
        MemoryStore {
            inner: Arc::new(Inner { data: Mutex::new(data), hub: WatchHub::new(history, 0) }),
        }
    }

    /// Applies one write under the lock and publishes its event.
    fn write<T>(
        &self,
        apply: impl FnOnce(&mut Data, Revision) -> Result<(Event, T), StoreError>,
    ) -> Result<T, StoreError> {
        let mut data = self.inner.data.lock();
        let revision = data.revision + 1;
        let (event, output) = apply(&mut data, revision)?;
        data.revision = revision;
        self.inner.hub.publish(vec![event]);
        Ok(output)
    }
}

/// Checks the compare-and-swap condition of an update or delete.
pub(crate) fn check_expected(
    current: &KeyValue,
    expected: Option<Revision>,
) -> Result<(), StoreError> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: current.key.clone(),
            expected,
            current: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.inner.data.lock().items.get(key).cloned())
    }

    async fn list(&self, prefix: &str, at: Option<Revision>) -> Result<ListResult, StoreError> {
        let data = self.inner.data.lock();
        let current: BTreeMap<String, KeyValue> = data
            .items
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, kv)| (key.clone(), kv.clone()))
            .collect();
        let Some(at) = at else {
            return Ok(ListResult {
                items: current.into_values().collect(),
                revision: data.revision,
            });
        };
        let items = self.inner.hub.rewind_to(current, prefix, at, data.revision)?;
        Ok(ListResult { items, revision: at })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StoreError> {
        self.write(|data, revision| {
            if data.items.contains_key(key) {
                return Err(StoreError::AlreadyExists { key: key.to_string() });
            }
            let kv = KeyValue {
                key: key.to_string(),
                value,
                create_revision: revision,
                mod_revision: revision,
            };
            data.items.insert(key.to_string(), kv.clone());
            Ok((Event::Put { kv: kv.clone(), prev: None }, kv))
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        self.write(|data, revision| {
            let Some(current) = data.items.get_mut(key) else {
                return Err(StoreError::NotFound { key: key.to_string() });
            };
            check_expected(current, expected)?;
            let prev = current.clone();
            current.value = value;
            current.mod_revision = revision;
            let kv = current.clone();
            Ok((Event::Put { kv: kv.clone(), prev: Some(prev) }, kv))
        })
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        self.write(|data, revision| {
            let Some(current) = data.items.get(key) else {
                return Err(StoreError::NotFound { key: key.to_string() });
            };
            check_expected(current, expected)?;
            let prev = data.items.remove(key).expect("the key was found under the same lock");
            Ok((Event::Delete { prev: prev.clone(), revision }, (prev, revision)))
        })
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        self.inner.hub.watch(prefix, after)
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.data.lock().revision)
    }

    async fn oldest_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.inner.hub.oldest())
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn create_update_delete_roundtrip() {
        let store = MemoryStore::new(100);
        let created = store.create("/registry/pods/default/a", b"1".to_vec()).await.unwrap();
        assert_eq!((created.create_revision, created.mod_revision), (1, 1));

        let updated =
            store.update("/registry/pods/default/a", b"2".to_vec(), Some(1)).await.unwrap();
        assert_eq!((updated.create_revision, updated.mod_revision), (1, 2));

        let (deleted, revision) = store.delete("/registry/pods/default/a", Some(2)).await.unwrap();
        assert_eq!(deleted.value, b"2");
        assert_eq!(revision, 3);
        assert_eq!(store.get("/registry/pods/default/a").await.unwrap(), None);
    }

    #[tokio::test]
    async fn stale_update_conflicts() {
        let store = MemoryStore::new(100);
        store.create("/k", b"1".to_vec()).await.unwrap();
        store.update("/k", b"2".to_vec(), None).await.unwrap();

        let error = store.update("/k", b"3".to_vec(), Some(1)).await.unwrap_err();
        assert_eq!(error, StoreError::Conflict { key: "/k".into(), expected: 1, current: 2 });
        assert_eq!(store.current_revision().await.unwrap(), 2, "a failed write takes no revision");
    }

    #[tokio::test]
    async fn watch_sees_delete_with_previous_value() {
        let store = MemoryStore::new(100);
        store.create("/k", b"1".to_vec()).await.unwrap();
        let mut watch = store.watch("/", 1).await.unwrap();
        store.delete("/k", None).await.unwrap();

        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.revision(), 2);
        assert!(matches!(event, Event::Delete { prev, .. } if prev.value == b"1"));
    }
}
