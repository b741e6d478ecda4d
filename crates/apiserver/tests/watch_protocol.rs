//! The watch wire protocol: expiry, timeouts, watch-list bookmarks and selector transitions.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestServer;
use futures::StreamExt;
use serde_json::{Value, json};

/// Reads newline-separated JSON events from a streaming response until `done` returns
/// true or the stream ends.
async fn read_events(response: reqwest::Response, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    let mut buffer = Vec::new();
    let mut body = response.bytes_stream();
    let read = async {
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk.expect("body chunk"));
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                events.push(serde_json::from_slice(&line).expect("event JSON"));
                if done(&events) {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), read).await;
    events
}

async fn post(server: &TestServer, path: &str, body: Value) -> Value {
    let response = server.https_client().post(format!("{}{path}", server.url())).json(&body).send().await.expect("POST");
    assert!(response.status().is_success(), "POST {path}: {}", response.status());
    response.json().await.expect("JSON")
}

fn config_map(name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_revision_is_expired() {
    let server = TestServer::start_with_store(Arc::new(capstan_store::MemoryStore::new(4))).await;
    for index in 0..10 {
        post(&server, "/api/v1/namespaces/default/configmaps", config_map(&format!("c{index}"), "x")).await;
    }
    let url = format!("{}/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1", server.url());
    let response = server.https_client().get(url).send().await.expect("watch");
    assert_eq!(response.status().as_u16(), 410);
    let status: Value = response.json().await.expect("Status");
    assert_eq!(status["reason"], "Expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_ends_after_timeout_seconds() {
    let server = TestServer::start().await;
    let url = format!("{}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1", server.url());
    let started = std::time::Instant::now();
    let response = server.https_client().get(url).send().await.expect("watch");
    assert_eq!(response.status().as_u16(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), response.bytes()).await.expect("stream ended");
    assert!(body.expect("body").is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_list_ends_initial_events_with_bookmark() {
    let server = TestServer::start().await;
    post(&server, "/api/v1/namespaces/default/configmaps", config_map("a", "x")).await;
    post(&server, "/api/v1/namespaces/default/configmaps", config_map("b", "x")).await;
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
        server.url()
    );
    let response = server.https_client().get(url).send().await.expect("watch");
    let events = read_events(response, |events| events.iter().any(|e| e["type"] == "BOOKMARK")).await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types, ["ADDED", "ADDED", "BOOKMARK"]);
    let bookmark = &events[2]["object"];
    assert_eq!(bookmark["kind"], "ConfigMap");
    assert_eq!(bookmark["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");

    let rejected = server
        .https_client()
        .get(format!("{}/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true", server.url()))
        .send()
        .await
        .expect("watch");
    assert_eq!(rejected.status().as_u16(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_leaving_selector_is_deleted() {
    let server = TestServer::start().await;
    let created = post(&server, "/api/v1/namespaces/default/configmaps", config_map("moving", "a")).await;
    let revision = created["metadata"]["resourceVersion"].as_str().expect("revision").to_string();
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?watch=1&labelSelector=app%3Da&resourceVersion={revision}",
        server.url()
    );
    let response = server.https_client().get(url).send().await.expect("watch");

    // relabel the object so that it no longer matches
    let patch = server
        .https_client()
        .patch(format!("{}/api/v1/namespaces/default/configmaps/moving", server.url()))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"metadata":{"labels":{"app":"b"}}}"#)
        .send()
        .await
        .expect("patch");
    assert!(patch.status().is_success());
    let events = read_events(response, |events| !events.is_empty()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "DELETED");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["app"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_isolates_status() {
    let server = TestServer::start().await;
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "host"}]}}},
        "status": {"replicas": 9},
    });
    let created = post(&server, "/apis/apps/v1/namespaces/default/deployments", deployment).await;
    assert!(created.get("status").is_none_or(|s| s.get("replicas").is_none()), "create kept status: {created}");

    let client = server.https_client();
    let base = format!("{}/apis/apps/v1/namespaces/default/deployments/web", server.url());
    let patch = |url: String, body: &'static str| {
        client.patch(url).header("content-type", "application/merge-patch+json").body(body).send()
    };
    let updated: Value = patch(format!("{base}/status"), r#"{"status":{"replicas":1},"spec":{"replicas":7}}"#)
        .await
        .expect("status patch")
        .json()
        .await
        .expect("JSON");
    assert_eq!(updated["status"]["replicas"], 1);
    assert_eq!(updated["spec"]["replicas"], 1);
    assert_eq!(updated["metadata"]["generation"], 1);

    let main: Value = patch(base.clone(), r#"{"status":{"replicas":5},"spec":{"replicas":2}}"#)
        .await
        .expect("main patch")
        .json()
        .await
        .expect("JSON");
    assert_eq!(main["status"]["replicas"], 1);
    assert_eq!(main["spec"]["replicas"], 2);
    assert_eq!(main["metadata"]["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_collection_honours_selector() {
    let server = TestServer::start().await;
    for (name, app) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        post(&server, "/api/v1/namespaces/default/configmaps", config_map(name, app)).await;
    }
    let response = server
        .https_client()
        .delete(format!("{}/api/v1/namespaces/default/configmaps?labelSelector=app%3Da", server.url()))
        .send()
        .await
        .expect("delete collection");
    assert!(response.status().is_success());
    let left = server.kubectl_ok(&["get", "configmaps", "-o", "name"]).await;
    assert_eq!(left.trim(), "configmap/b1");
}
