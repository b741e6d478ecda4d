//! The real kubectl against the API server: finalizers, namespaces, dry run, chunked lists,
//! field validation warnings, server-side apply and Table output.

mod common;

use common::TestServer;
use serde_json::Value;

async fn create(server: &TestServer, name: &str, manifest: &str) {
    let path = server.write_file(name, manifest);
    server.kubectl_ok(&["create", "-f", path.to_str().expect("path")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_holds_object_until_removed() {
    let server = TestServer::start().await;
    create(&server, "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n").await;

    let deleted = server.kubectl_ok(&["delete", "configmap", "held", "--wait=false"]).await;
    assert!(deleted.contains("deleted"), "{deleted}");
    let object: Value = serde_json::from_str(&server.kubectl_ok(&["get", "configmap", "held", "-o", "json"]).await).expect("JSON");
    assert!(object["metadata"]["deletionTimestamp"].is_string(), "{object}");

    server.kubectl_ok(&["patch", "configmap", "held", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]).await;
    let gone = server.kubectl(&["get", "configmap", "held"]).await;
    assert!(!gone.status.success(), "the object outlived its last finalizer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_namespace_rejects_content() {
    let server = TestServer::start().await;
    create(&server, "ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n").await;
    let phase = server.kubectl_ok(&["get", "namespace", "team", "-o", "jsonpath={.status.phase}"]).await;
    assert_eq!(phase, "Active");

    server.kubectl_ok(&["delete", "namespace", "team", "--wait=false"]).await;
    let phase = server.kubectl_ok(&["get", "namespace", "team", "-o", "jsonpath={.status.phase}"]).await;
    assert_eq!(phase, "Terminating");

    let path = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: team\n");
    let output = server.kubectl(&["create", "-f", path.to_str().expect("path")]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(Forbidden)"), "{stderr}");
    assert!(stderr.contains("being terminated"), "{stderr}");

    // the namespace controller's part: clearing the `kubernetes` finalizer removes it
    server.kubectl_ok(&["patch", "namespace", "team", "--type=merge", "-p", r#"{"spec":{"finalizers":null}}"#]).await;
    let gone = server.kubectl(&["get", "namespace", "team"]).await;
    assert!(!gone.status.success(), "the namespace outlived its finalizers");

    let path = server.write_file("cm2.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lost\n  namespace: nowhere\n");
    let output = server.kubectl(&["create", "-f", path.to_str().expect("path")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("namespaces \"nowhere\" not found"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_dry_run_stores_nothing() {
    let server = TestServer::start().await;
    let path = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dry\n");
    let output = server.kubectl_ok(&["create", "--dry-run=server", "-f", path.to_str().expect("path")]).await;
    assert!(output.contains("created (server dry run)"), "{output}");
    let listed = server.kubectl_ok(&["get", "configmaps", "-o", "name"]).await;
    assert_eq!(listed.trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_list_returns_everything() {
    let server = TestServer::start().await;
    let mut manifest = String::new();
    for index in 0..7 {
        manifest.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{index}\n"));
    }
    create(&server, "many.yaml", &manifest).await;
    let listed = server.kubectl_ok(&["get", "configmaps", "--chunk-size=2", "-o", "name"]).await;
    assert_eq!(listed.lines().count(), 7, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_validation_drops_unknown_field() {
    let server = TestServer::start().await;
    let path = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: w\ndata:\n  a: b\nextra: 1\n");
    let output = server.kubectl(&["create", "--validate=warn", "-f", path.to_str().expect("path")]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown field \"extra\""), "{stderr}");
    let object: Value = serde_json::from_str(&server.kubectl_ok(&["get", "configmap", "w", "-o", "json"]).await).expect("JSON");
    assert!(object.get("extra").is_none(), "unknown field was stored: {object}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_creates_then_updates() {
    let server = TestServer::start().await;
    let path = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n");
    let first = server.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().expect("path")]).await;
    assert!(first.contains("serverside-applied"), "{first}");
    server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"2\"\n");
    server.kubectl_ok(&["apply", "--server-side", "-f", path.to_str().expect("path")]).await;
    let value = server.kubectl_ok(&["get", "configmap", "ssa", "-o", "jsonpath={.data.a}"]).await;
    assert_eq!(value, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_table_columns() {
    let server = TestServer::start().await;
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    \
                      matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      \
                      containers:\n      - name: web\n        image: host\n";
    create(&server, "web.yaml", deployment).await;
    let table = server.kubectl_ok(&["get", "deployments"]).await;
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{table}");
    let all = server.kubectl_ok(&["get", "namespaces", "--show-labels"]).await;
    assert!(all.contains("kube-system"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_evicts_bound_pods() {
    let server = TestServer::start().await;
    create(&server, "node.yaml", "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n").await;
    create(
        &server,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: host\n",
    )
    .await;

    let output = server.kubectl(&["drain", "n1", "--force", "--grace-period=0", "--timeout=30s"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("pod/bound evicted"), "{stdout}");
    let unschedulable = server.kubectl_ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]).await;
    assert_eq!(unschedulable, "true");
    let pods = server.kubectl_ok(&["get", "pods", "-o", "name"]).await;
    assert_eq!(pods.trim(), "");
}
