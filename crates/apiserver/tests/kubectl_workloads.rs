//! The real kubectl against the API server: deployments, apply, scale, selectors, watch,
//! conflicts and validation errors.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::TestServer;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

fn deployment(replicas: i64) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: {replicas}\n  selector:\n    \
         matchLabels:\n      app: web\n  template:\n    metadata:\n      labels:\n        app: web\n    spec:\n      \
         containers:\n      - name: web\n        image: host\n        command: [\"sleep\", \"3600\"]\n"
    )
}

async fn get_json(server: &TestServer, args: &[&str]) -> Value {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    serde_json::from_str(&server.kubectl_ok(&full).await).expect("kubectl JSON output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_then_scale() {
    let server = TestServer::start().await;
    let manifest = server.write_file("web.yaml", &deployment(2));
    let path = manifest.to_str().expect("path");
    let first = server.kubectl_ok(&["apply", "-f", path]).await;
    assert!(first.contains("deployment.apps/web created"), "{first}");

    // the second apply is a strategic merge patch
    server.write_file("web.yaml", &deployment(3));
    let second = server.kubectl_ok(&["apply", "-f", path]).await;
    assert!(second.contains("deployment.apps/web configured"), "{second}");
    let object = get_json(&server, &["get", "deployment", "web"]).await;
    assert_eq!(object["spec"]["replicas"], 3);
    assert_eq!(object["metadata"]["generation"], 2);
    let annotations = &object["metadata"]["annotations"];
    assert!(annotations["kubectl.kubernetes.io/last-applied-configuration"].is_string());

    let unchanged = server.kubectl_ok(&["apply", "-f", path]).await;
    assert!(unchanged.contains("unchanged"), "{unchanged}");

    let scaled = server.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]).await;
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    let object = get_json(&server, &["get", "deployment", "web"]).await;
    assert_eq!(object["spec"]["replicas"], 5);
    assert_eq!(object["metadata"]["generation"], 3);

    let deleted = server.kubectl_ok(&["delete", "deployment", "web"]).await;
    assert!(deleted.contains("deployment.apps \"web\" deleted"), "{deleted}");
    let listed = server.kubectl_ok(&["get", "deployments", "-o", "name"]).await;
    assert_eq!(listed.trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_selector_filters_list() {
    let server = TestServer::start().await;
    for (name, app) in [("one", "a"), ("two", "b"), ("three", "a")] {
        let manifest = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\n");
        let path = server.write_file(&format!("{name}.yaml"), &manifest);
        server.kubectl_ok(&["create", "-f", path.to_str().expect("path")]).await;
    }
    let selected = server.kubectl_ok(&["get", "configmaps", "-l", "app=a", "-o", "name"]).await;
    let names: Vec<&str> = selected.lines().collect();
    assert_eq!(names, ["configmap/one", "configmap/three"]);
    let excluded = server.kubectl_ok(&["get", "configmaps", "-l", "app!=a", "-o", "name"]).await;
    assert_eq!(excluded.trim(), "configmap/two");
    let by_name = server.kubectl_ok(&["get", "configmaps", "--field-selector", "metadata.name=two", "-o", "name"]).await;
    assert_eq!(by_name.trim(), "configmap/two");
    let bad = server.kubectl(&["get", "configmaps", "--field-selector", "spec.nodeName=x"]).await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("field label not supported"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_replace_conflicts() {
    let server = TestServer::start().await;
    let manifest = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: \"1\"\n");
    server.kubectl_ok(&["create", "-f", manifest.to_str().expect("path")]).await;
    let stale = server.kubectl_ok(&["get", "configmap", "cfg", "-o", "json"]).await;
    let stale_path = server.write_file("stale.json", &stale);
    server.kubectl_ok(&["label", "configmap", "cfg", "changed=yes"]).await;

    let replaced = server.kubectl(&["replace", "-f", stale_path.to_str().expect("path")]).await;
    assert!(!replaced.status.success());
    let stderr = String::from_utf8_lossy(&replaced.stderr);
    assert!(stderr.contains("(Conflict)"), "{stderr}");
    assert!(stderr.contains("the object has been modified"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_deployment_is_rejected() {
    let server = TestServer::start().await;
    let manifest = server.write_file("bad.yaml", &deployment(-1));
    let output = server.kubectl(&["create", "-f", manifest.to_str().expect("path")]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("(Invalid)") || stderr.contains("is invalid"), "{stderr}");
    assert!(stderr.contains("spec.replicas"), "{stderr}");

    let unknown = server.write_file(
        "unknown.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: u\nbogus: 1\n",
    );
    let output = server.kubectl(&["create", "--validate=strict", "-f", unknown.to_str().expect("path")]).await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field \"bogus\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_streams_new_object() {
    let server = TestServer::start().await;
    let mut watcher = server
        .kubectl_command(&["get", "configmaps", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl get -w");
    let mut lines = BufReader::new(watcher.stdout.take().expect("stdout")).lines();

    // give the watch time to start, then create an object
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let manifest = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched\n");
    server.kubectl_ok(&["create", "-f", manifest.to_str().expect("path")]).await;

    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read kubectl output") {
            if line.contains("configmap/watched") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = watcher.kill().await;
    assert!(seen, "kubectl get -w did not print the new configmap");
}
