//! The real kubectl against the API server: create, get, list, delete of configmaps.

mod common;

use common::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_create_get_delete() {
    let server = TestServer::start().await;
    // `kubectl create configmap` of 1.32+ sends protobuf, so the object goes through a file
    let manifest = server.write_file("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: \"1\"\n");
    let created = server.kubectl_ok(&["create", "-f", manifest.to_str().expect("path")]).await;
    assert!(created.contains("configmap/app created"), "{created}");

    let json = server.kubectl_ok(&["get", "configmap", "app", "-o", "json"]).await;
    let object: serde_json::Value = serde_json::from_str(&json).expect("JSON output");
    assert_eq!(object["data"]["a"], "1");
    assert!(object["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(object["metadata"]["resourceVersion"].as_str().is_some_and(|rv| rv.parse::<u64>().is_ok()));

    let listed = server.kubectl_ok(&["get", "configmaps"]).await;
    assert!(listed.contains("app"), "{listed}");

    let deleted = server.kubectl_ok(&["delete", "configmap", "app"]).await;
    assert!(deleted.contains("configmap \"app\" deleted"), "{deleted}");
    let missing = server.kubectl(&["get", "configmap", "app"]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("(NotFound)"), "{stderr}");
    assert!(stderr.contains("configmaps \"app\" not found"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_reports_server() {
    let server = TestServer::start().await;
    let output = server.kubectl_ok(&["version", "-o", "json"]).await;
    let version: serde_json::Value = serde_json::from_str(&output).expect("JSON output");
    assert_eq!(version["serverVersion"]["gitVersion"], "v1.33.0");
    assert_eq!(version["serverVersion"]["minor"], "33");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_table_prints_rows() {
    let server = TestServer::start().await;
    let mut watcher = server
        .kubectl_command(&["get", "namespaces", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kubectl get -w");
    let stdout = watcher.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    let read = async {
        while let Some(line) = lines.next_line().await.expect("read kubectl output") {
            seen.push(line);
            if seen.iter().any(|l| l.starts_with("kube-system")) {
                break;
            }
        }
    };
    let finished = tokio::time::timeout(std::time::Duration::from_secs(20), read).await;
    let _ = watcher.kill().await;
    assert!(finished.is_ok(), "kubectl get -w printed no kube-system row: {seen:?}");
    let header: Vec<&str> = seen[0].split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "AGE"], "{seen:?}");
    let row = seen.iter().find(|l| l.starts_with("kube-system")).expect("row");
    assert!(row.contains("Active"), "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_version_round_trips() {
    let server = TestServer::start().await;
    for minor in 27..=33 {
        let binary = format!("/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}");
        let name = format!("v{minor}");
        let manifest = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: \"1\"\n");
        let path = server.write_file(&format!("{name}.yaml"), &manifest);
        let path = path.to_str().expect("path");
        for args in [
            // kubectl 1.27 and 1.28 validate on the client with OpenAPI v2, which is not served
            vec!["apply", "--validate=false", "-f", path],
            vec!["get", "configmap", name.as_str()],
            vec!["delete", "configmap", name.as_str()],
        ] {
            let output = server.kubectl_binary_command(&binary, &args).output().await.expect("run kubectl");
            assert!(
                output.status.success(),
                "kubectl 1.{minor} {args:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}
