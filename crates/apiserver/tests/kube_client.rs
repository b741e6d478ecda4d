//! kube's client and watcher against the API server, as the controllers use them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

fn config_map(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "watch"}},
        "data": {"value": value},
    }))
    .expect("config map")
}

/// Waits for the next watcher event that concerns `name`, skipping the others.
async fn next_for(
    events: &mut (impl futures::Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin),
    name: &str,
) -> watcher::Event<ConfigMap> {
    let wait = async {
        loop {
            let event = events.try_next().await.expect("watch error").expect("watch ended");
            let concerns = match &event {
                watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
                    o.metadata.name.as_deref() == Some(name)
                }
                _ => false,
            };
            if concerns {
                return event;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait).await.expect("no watch event within 20 s")
}

async fn exercise_watcher(server: &TestServer) {
    let client = server.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let config = watcher::Config::default().labels("app=watch");
    let mut events = watcher(api.clone(), config).boxed();

    // the initial list completes before anything exists
    let initial = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.expect("init");
    assert!(matches!(initial, Ok(Some(watcher::Event::Init))));

    api.create(&PostParams::default(), &config_map("w", "1")).await.expect("create");
    let added = next_for(&mut events, "w").await;
    assert!(matches!(added, watcher::Event::Apply(_) | watcher::Event::InitApply(_)), "{added:?}");

    let patch = Patch::Merge(json!({"data": {"value": "2"}}));
    api.patch("w", &PatchParams::default(), &patch).await.expect("patch");
    let modified = next_for(&mut events, "w").await;
    let watcher::Event::Apply(object) = modified else { panic!("expected Apply, got {modified:?}") };
    assert_eq!(object.data.as_ref().and_then(|d| d.get("value")).map(String::as_str), Some("2"));

    api.delete("w", &DeleteParams::default()).await.expect("delete");
    let deleted = next_for(&mut events, "w").await;
    assert!(matches!(deleted, watcher::Event::Delete(_)), "{deleted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_sees_add_modify_delete() {
    let server = TestServer::start().await;
    exercise_watcher(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_serves_watcher() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = capstan_store::EmbeddedOptions::default();
    let store = capstan_store::EmbeddedStore::open(&dir.path().join("store.redb"), options).expect("open store");
    let server = TestServer::start_with_store(Arc::new(store)).await;
    exercise_watcher(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_namespaces_exist() {
    let server = TestServer::start().await;
    let namespaces: Api<Namespace> = Api::all(server.client().await);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for expected in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pod_deletes_gracefully() {
    let server = TestServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client().await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "host", "command": ["sleep", "60"]}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create pod");

    // bind it the way the scheduler does
    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
                         "target": {"kind": "Node", "name": "n1"}});
    let request = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).expect("encode"))
        .expect("request");
    let client = server.client().await;
    let _: serde_json::Value = client.request(request).await.expect("bind");
    let bound = pods.get("p").await.expect("get pod");
    assert_eq!(bound.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));

    // a second binding conflicts
    let again = http::Request::post("/api/v1/namespaces/default/pods/p/binding")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&binding).expect("encode"))
        .expect("request");
    let error = client.request::<serde_json::Value>(again).await.expect_err("second bind");
    assert!(error.to_string().contains("already assigned to node n1"), "{error}");

    // deletion of a bound pod only marks it until the node agent confirms
    pods.delete("p", &DeleteParams::default()).await.expect("delete");
    let marked = pods.get("p").await.expect("pod still present");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("p", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
        .await
        .expect("delete now");
    assert!(pods.get_opt("p").await.expect("get").is_none());
}
