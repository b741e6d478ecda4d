//! The conformance suite every [`Store`] backend must pass.
//!
//! Each check is a `pub async fn` that takes a fresh, empty store. A backend's test file
//! runs them all with [`store_conformance_tests!`](crate::store_conformance_tests), given
//! an async function `open(history: usize) -> (Arc<dyn Store>, Guard)` where `history`
//! is the number of events to keep and `Guard` is anything that must outlive the store,
//! such as its temporary directory.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::{Event, KeyValue, Revision, Store, StoreError, WatchStream};

/// History size for checks that do not test expiry.
pub const LARGE_HISTORY: usize = 10_000;
/// History size for the expiry checks.
pub const SMALL_HISTORY: usize = 4;

/// Generates one `#[tokio::test]` per conformance check for the backend that `$open`
/// opens.
#[macro_export]
macro_rules! store_conformance_tests {
    ($open:path) => {
        $crate::store_conformance_tests!(@tests $open;
            revisions_increase_by_one = $crate::conformance::LARGE_HISTORY,
            create_conflicts_with_existing_key = $crate::conformance::LARGE_HISTORY,
            update_and_delete_compare_revisions = $crate::conformance::LARGE_HISTORY,
            list_isolates_prefixes = $crate::conformance::LARGE_HISTORY,
            list_at_older_revision = $crate::conformance::LARGE_HISTORY,
            watch_replays_then_follows = $crate::conformance::LARGE_HISTORY,
            watch_concurrent_writers_exactly_once = $crate::conformance::LARGE_HISTORY,
            delete_event_carries_previous_value = $crate::conformance::LARGE_HISTORY,
            old_revisions_expire = $crate::conformance::SMALL_HISTORY,
            slow_watcher_expires = $crate::conformance::SMALL_HISTORY,
        );
    };
    (@tests $open:path; $($name:ident = $history:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, _guard) = $open($history).await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

/// Returns the next watch item, failing the test after five seconds without one.
pub async fn next_item(stream: &mut WatchStream) -> Option<Result<Event, StoreError>> {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("no watch event within 5 s")
}

/// Returns the next watch event, failing the test on an error or the end of the stream.
pub async fn next_event(stream: &mut WatchStream) -> Event {
    match next_item(stream).await {
        Some(Ok(event)) => event,
        Some(Err(error)) => panic!("watch failed: {error}"),
        None => panic!("watch ended early"),
    }
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

pub async fn revisions_increase_by_one(store: Arc<dyn Store>) {
    assert_eq!(store.current_revision().await.unwrap(), 0, "an empty store is at revision 0");

    let a = store.create("/r/a", b"1".to_vec()).await.unwrap();
    let b = store.create("/r/b", b"1".to_vec()).await.unwrap();
    let a2 = store.update("/r/a", b"2".to_vec(), None).await.unwrap();
    let (_, deleted_at) = store.delete("/r/b", None).await.unwrap();

    assert_eq!((a.create_revision, a.mod_revision), (1, 1));
    assert_eq!((b.create_revision, b.mod_revision), (2, 2));
    assert_eq!((a2.create_revision, a2.mod_revision), (1, 3));
    assert_eq!(deleted_at, 4);
    assert_eq!(store.current_revision().await.unwrap(), 4);
    assert_eq!(store.get("/r/a").await.unwrap(), Some(a2));
}

pub async fn create_conflicts_with_existing_key(store: Arc<dyn Store>) {
    store.create("/c/a", b"first".to_vec()).await.unwrap();

    let error = store.create("/c/a", b"second".to_vec()).await.unwrap_err();
    assert_eq!(error, StoreError::AlreadyExists { key: "/c/a".into() });
    assert_eq!(store.get("/c/a").await.unwrap().unwrap().value, b"first");
    assert_eq!(store.current_revision().await.unwrap(), 1, "a failed create takes no revision");

    // After a delete the key can be created again, with a new create revision.
    store.delete("/c/a", None).await.unwrap();
    let again = store.create("/c/a", b"third".to_vec()).await.unwrap();
    assert_eq!(again.create_revision, 3);
}

pub async fn update_and_delete_compare_revisions(store: Arc<dyn Store>) {
    let created = store.create("/cas/a", b"1".to_vec()).await.unwrap();
    let updated = store.update("/cas/a", b"2".to_vec(), Some(created.mod_revision)).await.unwrap();
    assert_eq!(updated.value, b"2");

    let stale = store.update("/cas/a", b"3".to_vec(), Some(created.mod_revision)).await;
    assert_eq!(stale, Err(StoreError::Conflict { key: "/cas/a".into(), expected: 1, current: 2 }));
    let stale_delete = store.delete("/cas/a", Some(created.mod_revision)).await;
    assert_eq!(
        stale_delete,
        Err(StoreError::Conflict { key: "/cas/a".into(), expected: 1, current: 2 })
    );
    assert_eq!(store.get("/cas/a").await.unwrap().unwrap().value, b"2");
    assert_eq!(store.current_revision().await.unwrap(), 2, "failed writes take no revision");

    let (deleted, revision) = store.delete("/cas/a", Some(updated.mod_revision)).await.unwrap();
    assert_eq!((deleted.value.as_slice(), revision), (b"2".as_slice(), 3));

    let missing = store.update("/cas/a", b"4".to_vec(), None).await;
    assert_eq!(missing, Err(StoreError::NotFound { key: "/cas/a".into() }));
    let missing_delete = store.delete("/cas/a", None).await;
    assert_eq!(missing_delete, Err(StoreError::NotFound { key: "/cas/a".into() }));
}

pub async fn list_isolates_prefixes(store: Arc<dyn Store>) {
    for key in ["/a/bc/x", "/a/b/2", "/a/b/1", "/a/a", "/b/b/1"] {
        store.create(key, key.as_bytes().to_vec()).await.unwrap();
    }

    let listed = store.list("/a/b/", None).await.unwrap();
    assert_eq!(keys(&listed.items), vec!["/a/b/1", "/a/b/2"], "sorted, without /a/bc/");
    assert_eq!(listed.revision, 5);
    let wider = store.list("/a/b", None).await.unwrap();
    assert_eq!(keys(&wider.items), vec!["/a/b/1", "/a/b/2", "/a/bc/x"]);
    let none = store.list("/c/", None).await.unwrap();
    assert!(none.items.is_empty());
    assert_eq!(none.revision, 5, "an empty list still reports the current revision");
}

pub async fn list_at_older_revision(store: Arc<dyn Store>) {
    store.create("/l/a", b"a1".to_vec()).await.unwrap(); // 1
    store.create("/l/b", b"b1".to_vec()).await.unwrap(); // 2
    store.update("/l/a", b"a2".to_vec(), None).await.unwrap(); // 3
    store.delete("/l/b", None).await.unwrap(); // 4
    store.create("/l/c", b"c1".to_vec()).await.unwrap(); // 5
    store.create("/m/x", b"x1".to_vec()).await.unwrap(); // 6

    let at2 = store.list("/l/", Some(2)).await.unwrap();
    assert_eq!(at2.revision, 2);
    let values: Vec<&[u8]> = at2.items.iter().map(|kv| kv.value.as_slice()).collect();
    assert_eq!(values, vec![b"a1".as_slice(), b"b1".as_slice()]);
    assert_eq!(at2.items[0].mod_revision, 1);

    let at4 = store.list("/l/", Some(4)).await.unwrap();
    assert_eq!(keys(&at4.items), vec!["/l/a"]);
    assert_eq!(at4.items[0].value, b"a2");

    let at0 = store.list("/l/", Some(0)).await.unwrap();
    assert!(at0.items.is_empty());
    let now = store.list("/l/", Some(6)).await.unwrap();
    assert_eq!(now.items, store.list("/l/", None).await.unwrap().items);

    let future = store.list("/l/", Some(7)).await.unwrap_err();
    assert_eq!(future, StoreError::FutureRevision { requested: 7, current: 6 });
}

pub async fn watch_replays_then_follows(store: Arc<dyn Store>) {
    store.create("/w/a", b"1".to_vec()).await.unwrap(); // 1
    store.create("/x/a", b"1".to_vec()).await.unwrap(); // 2
    store.update("/w/a", b"2".to_vec(), None).await.unwrap(); // 3

    let mut watch = store.watch("/w/", 0).await.unwrap();
    store.create("/w/b", b"1".to_vec()).await.unwrap(); // 4

    let revisions = [
        next_event(&mut watch).await.revision(),
        next_event(&mut watch).await.revision(),
        next_event(&mut watch).await.revision(),
    ];
    assert_eq!(revisions, [1, 3, 4], "replay of 1 and 3, then the live 4; /x/ is filtered");

    let mut from_current = store.watch("/w/", 4).await.unwrap();
    store.delete("/w/a", None).await.unwrap(); // 5
    assert_eq!(next_event(&mut from_current).await.revision(), 5);
}

pub async fn watch_concurrent_writers_exactly_once(store: Arc<dyn Store>) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 40;
    let total = (WRITERS * PER_WRITER) as Revision;
    let mut from_start = store.watch("/cw/", 0).await.unwrap();

    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                store.create(&format!("/cw/{writer}/{i}"), vec![0; 16]).await.unwrap();
            }
        }));
    }

    // A second watch that starts mid-burst must also see every later event once.
    tokio::task::yield_now().await;
    let midway = store.current_revision().await.unwrap();
    let mut from_midway = store.watch("/cw/", midway).await.unwrap();
    for task in tasks {
        task.await.unwrap();
    }

    let mut seen_keys = HashSet::new();
    for expected in 1..=total {
        let event = next_event(&mut from_start).await;
        assert_eq!(event.revision(), expected, "events arrive in revision order without gaps");
        assert!(seen_keys.insert(event.key().to_string()), "duplicate event for {}", event.key());
    }
    for expected in midway + 1..=total {
        assert_eq!(next_event(&mut from_midway).await.revision(), expected);
    }
    assert_eq!(store.current_revision().await.unwrap(), total);
}

pub async fn delete_event_carries_previous_value(store: Arc<dyn Store>) {
    store.create("/d/a", b"v1".to_vec()).await.unwrap();
    let updated = store.update("/d/a", b"v2".to_vec(), None).await.unwrap();
    let mut watch = store.watch("/d/", 0).await.unwrap();
    store.delete("/d/a", None).await.unwrap();

    let create = next_event(&mut watch).await;
    assert!(matches!(&create, Event::Put { prev: None, .. }), "a create has no prev: {create:?}");
    let update = next_event(&mut watch).await;
    match update {
        Event::Put { kv, prev: Some(prev) } => {
            assert_eq!(
                (kv.value.as_slice(), prev.value.as_slice()),
                (b"v2".as_slice(), b"v1".as_slice())
            );
        }
        other => panic!("expected an update with its previous value, got {other:?}"),
    }
    match next_event(&mut watch).await {
        Event::Delete { prev, revision } => {
            assert_eq!(prev, updated, "the deleted value is the last one written");
            assert_eq!(revision, 3);
        }
        other => panic!("expected a delete, got {other:?}"),
    }
}

/// Expects a store opened with [`SMALL_HISTORY`].
pub async fn old_revisions_expire(store: Arc<dyn Store>) {
    for i in 0..10 {
        store.create(&format!("/e/{i}"), b"v".to_vec()).await.unwrap();
    }
    let oldest = store.oldest_revision().await.unwrap();
    assert_eq!(oldest, 10 - SMALL_HISTORY as Revision);

    let error = store.watch("/e/", oldest - 1).await.err().expect("watch before the history");
    assert_eq!(error, StoreError::Expired { requested: oldest - 1, oldest });
    let error = store.list("/e/", Some(oldest - 1)).await.unwrap_err();
    assert_eq!(error, StoreError::Expired { requested: oldest - 1, oldest });

    let mut watch = store.watch("/e/", oldest).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), oldest + 1);
    let listed = store.list("/e/", Some(oldest)).await.unwrap();
    assert_eq!(listed.items.len(), oldest as usize);
}

/// Expects a store opened with [`SMALL_HISTORY`].
pub async fn slow_watcher_expires(store: Arc<dyn Store>) {
    let mut watch = store.watch("/s/", 0).await.unwrap();
    for i in 0..(SMALL_HISTORY * 4) {
        store.create(&format!("/s/{i}"), b"v".to_vec()).await.unwrap();
    }

    // The watcher read nothing while four times its history was written.
    let mut delivered = 0;
    loop {
        match next_item(&mut watch).await {
            Some(Ok(_)) => delivered += 1,
            Some(Err(StoreError::Expired { .. })) => break,
            other => panic!("expected Expired, got {other:?} after {delivered} events"),
        }
    }
    assert!(delivered < SMALL_HISTORY * 4, "a lagging watcher cannot see every event");
    assert!(next_item(&mut watch).await.is_none(), "the stream ends after Expired");
}
