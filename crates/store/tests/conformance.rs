//! Runs the conformance suite against both backends, plus the embedded store's reopen.

use std::sync::Arc;

use capstan_store::{EmbeddedOptions, EmbeddedStore, MemoryStore, Store};

async fn open_memory(history: usize) -> (Arc<dyn Store>, ()) {
    (Arc::new(MemoryStore::new(history)), ())
}

async fn open_embedded(history: usize) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let options = EmbeddedOptions { history, ..EmbeddedOptions::default() };
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), options).expect("open store");
    (Arc::new(store), dir)
}

mod memory {
    capstan_store::store_conformance_tests!(super::open_memory);
}

mod embedded {
    use super::*;

    capstan_store::store_conformance_tests!(super::open_embedded);

    #[tokio::test]
    async fn reopen_keeps_data_and_revision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
            store.create("/p/a", b"a1".to_vec()).await.unwrap();
            store.create("/p/b", b"b1".to_vec()).await.unwrap();
            store.update("/p/a", b"a2".to_vec(), None).await.unwrap();
            store.delete("/p/b", None).await.unwrap();
        }

        let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
        assert_eq!(
            store.current_revision().await.unwrap(),
            4,
            "a trailing delete keeps its revision"
        );
        assert_eq!(store.oldest_revision().await.unwrap(), 4, "the history starts empty");
        let a = store.get("/p/a").await.unwrap().expect("/p/a survives the reopen");
        assert_eq!(
            (a.value.as_slice(), a.create_revision, a.mod_revision),
            (b"a2".as_slice(), 1, 3)
        );
        assert_eq!(store.get("/p/b").await.unwrap(), None);

        let created = store.create("/p/c", b"c1".to_vec()).await.unwrap();
        assert_eq!(created.mod_revision, 5, "revisions continue after the persisted one");
        let error = store.list("/p/", Some(3)).await.unwrap_err();
        assert_eq!(error, capstan_store::StoreError::Expired { requested: 3, oldest: 4 });
    }

    #[tokio::test]
    async fn open_same_file_twice_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let _first = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();

        let second = EmbeddedStore::open(&path, EmbeddedOptions::default());
        assert!(
            matches!(second, Err(capstan_store::StoreError::Internal(_))),
            "a second open must fail"
        );
    }
}
