//! Unit checks of the generated documents, and end-to-end runs of the real kubectl against
//! a plain-HTTP server that serves discovery, OpenAPI and an in-memory Deployment store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use capstan_api::patch::{PatchType, apply_patch};
use capstan_api::resources::lookup_kind;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;

async fn fetch(path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Body::empty()).unwrap();
    let response = routes().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn index_lists_group_versions_with_hash() {
    let (status, index) = fetch("/openapi/v3").await;
    assert_eq!(status, StatusCode::OK);
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let (path, hash) = url.split_once("?hash=").unwrap();
    assert_eq!(path, "/openapi/v3/apis/apps/v1");
    assert_eq!(hash.len(), 64);
    let document = documents().iter().find(|d| d.path == "apis/apps/v1").unwrap();
    assert_eq!(hex::encode(Sha256::digest(&document.bytes)), hash);
    for key in ["api/v1", "apis/autoscaling/v1", "apis/policy/v1", "apis/coordination.k8s.io/v1"] {
        assert!(index["paths"].get(key).is_some(), "{key} missing from the index");
    }
}

#[tokio::test]
async fn v2_and_unknown_documents_are_404() {
    assert_eq!(fetch("/openapi/v2").await.0, StatusCode::NOT_FOUND);
    let (status, body) = fetch("/openapi/v3/apis/example.com/v1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["reason"], "NotFound");
}

#[tokio::test]
async fn patch_operation_declares_what_kubectl_checks() {
    let (_, document) = fetch("/openapi/v3/apis/apps/v1?hash=ignored").await;
    assert_eq!(document["openapi"], "3.0.0");
    let patch = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"], json!({"group": "apps", "version": "v1", "kind": "Deployment"}));
    let parameters: Vec<&str> = patch["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for name in ["fieldValidation", "fieldManager", "dryRun", "force"] {
        assert!(parameters.contains(&name), "{name} missing from {parameters:?}");
    }
    let content = patch["requestBody"]["content"].as_object().unwrap();
    for media_type in [
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    ] {
        assert!(content.contains_key(media_type), "{media_type} missing");
    }
    let scale = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
    assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
    assert!(document["components"]["schemas"].get("io.k8s.api.autoscaling.v1.Scale").is_some());
}

#[test]
fn every_ref_resolves() {
    for (group, version) in discovery::served_group_versions() {
        let document = group_version_document(group, version);
        let schemas = document["components"]["schemas"].as_object().unwrap();
        let text = document.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = piece.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{group}/{version}: dangling $ref {name}");
        }
    }
}

#[test]
fn operations_follow_verbs() {
    let document = group_version_document("", "v1");
    let namespaces = &document["paths"]["/api/v1/namespaces"];
    assert!(namespaces.get("get").is_some(), "namespaces can be listed");
    assert!(namespaces.get("post").is_some(), "namespaces can be created");
    assert!(namespaces.get("delete").is_none(), "namespaces have no deletecollection verb");
    let pods = &document["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"];
    assert_eq!(pods["patch"]["operationId"], "patchCoreV1NamespacedPod");
    assert!(document["paths"].get("/api/v1/pods").is_some(), "list across namespaces");
    assert!(document["paths"].get("/api/v1/namespaces/{namespace}/pods/{name}/eviction").is_some());
}

// === end-to-end with the real kubectl ===

const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// One request as the fake server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    content_type: String,
    body: String,
}

#[derive(Clone, Default)]
struct Fake {
    deployments: Arc<Mutex<HashMap<String, Value>>>,
    log: Arc<Mutex<Vec<Seen>>>,
}

async fn record(State(fake): State<Fake>, request: Request<Body>, next: axum::middleware::Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    fake.log.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        content_type: content_type.to_string(),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

async fn version() -> Response {
    let info = json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"});
    axum::Json(info).into_response()
}

async fn get_deployment(State(fake): State<Fake>, Path((_, name)): Path<(String, String)>) -> Response {
    match fake.deployments.lock().unwrap().get(&name) {
        Some(object) => axum::Json(object.clone()).into_response(),
        None => discovery::not_found(),
    }
}

async fn create_deployment(State(fake): State<Fake>, body: Bytes) -> Response {
    let mut object: Value = serde_json::from_slice(&body).unwrap();
    object["metadata"]["resourceVersion"] = json!("1");
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    fake.deployments.lock().unwrap().insert(name, object.clone());
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

async fn patch_deployment(
    State(fake): State<Fake>,
    Path((_, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = query.unwrap_or_default();
    let param = |key: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string));
    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap();
    let force = param("force").as_deref() == Some("true");
    let resource = lookup_kind("apps", "Deployment").unwrap();
    let result = PatchType::from_content_type(content_type, param("fieldManager").as_deref(), force).and_then(|patch_type| {
        let current = fake.deployments.lock().unwrap().get(&name).cloned();
        apply_patch(resource, &patch_type, current.as_ref(), &body)
    });
    match result {
        Ok(object) => {
            fake.deployments.lock().unwrap().insert(name, object.clone());
            axum::Json(object).into_response()
        }
        Err(e) => {
            let status = StatusCode::from_u16(e.status_code()).unwrap();
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": e.to_string(),
                              "reason": e.reason(), "code": e.status_code()});
            (status, axum::Json(body)).into_response()
        }
    }
}

async fn start_fake() -> (String, Fake) {
    let fake = Fake::default();
    let deployments = "/apis/apps/v1/namespaces/{namespace}/deployments";
    let app = axum::Router::new()
        .route("/version", get(version))
        .route(deployments, post(create_deployment))
        .route(&format!("{deployments}/{{name}}"), get(get_deployment).patch(patch_deployment))
        .with_state(fake.clone())
        .merge(discovery::routes())
        .merge(routes())
        .layer(axum::middleware::from_fn_with_state(fake.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), fake)
}

/// A scratch directory for kubectl's cache and manifests, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("capstan-present-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `kubectl.<version>` and returns (success, stdout, stderr), or None when that client
/// is not installed.
async fn kubectl(version: &str, server: &str, scratch: &Scratch, args: &[&str]) -> Option<(bool, String, String)> {
    let binary = PathBuf::from(KUBECTL_DIR).join(format!("kubectl.{version}"));
    if !binary.exists() {
        eprintln!("skipping: {} is not installed", binary.display());
        return None;
    }
    let output = tokio::process::Command::new(binary)
        .args(["--server", server, "--cache-dir"])
        .arg(scratch.0.join(format!("cache-{version}")))
        .args(args)
        .env("KUBECONFIG", scratch.0.join("no-kubeconfig"))
        .output()
        .await
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    Some((output.status.success(), text(output.stdout), text(output.stderr)))
}

fn manifest(sidecar_image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 2\n  \
         selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      \
         containers:\n      - name: web\n        image: host\n      - name: log\n        image: {sidecar_image}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_discovers_with_aggregated_documents() {
    let (server, fake) = start_fake().await;
    let scratch = Scratch::new("discovery");
    for version in ["1.27", "1.33"] {
        fake.log.lock().unwrap().clear();
        let Some((ok, stdout, stderr)) = kubectl(version, &server, &scratch, &["api-resources"]).await else { continue };
        assert!(ok, "kubectl {version} api-resources failed: {stderr}");
        let deployments = stdout.lines().find(|l| l.starts_with("deployments ")).unwrap_or_default();
        let columns: Vec<&str> = deployments.split_whitespace().collect();
        assert_eq!(columns, ["deployments", "deploy", "apps/v1", "true", "Deployment"], "kubectl {version}:\n{stdout}");
        let log = fake.log.lock().unwrap();
        assert!(log.iter().any(|s| s.uri.starts_with("/apis?")), "kubectl {version} did not ask for /apis");
        let per_group: Vec<&Seen> = log.iter().filter(|s| s.uri.starts_with("/apis/apps/v1")).collect();
        assert!(per_group.is_empty(), "kubectl {version} fell back to legacy discovery: {per_group:?}");
    }
}

/// Applies the manifest twice with `kubectl.<version>`, changing only the second container,
/// and checks the requests and the stored result.
async fn apply_twice(version: &str, validate: &str) {
    let (server, fake) = start_fake().await;
    let scratch = Scratch::new(&format!("apply-{version}"));
    let file = scratch.0.join("deploy.yaml");
    let path = file.to_str().unwrap();
    let strict = validate == "--validate=strict";
    std::fs::write(&file, manifest("host")).unwrap();
    let Some((ok, _, stderr)) = kubectl(version, &server, &scratch, &["apply", validate, "-f", path]).await else { return };
    assert!(ok, "kubectl {version} apply (create) failed: {stderr}");
    let created = fake.log.lock().unwrap().iter().find(|s| s.method == "POST").cloned().unwrap();
    if strict {
        assert!(created.uri.contains("fieldValidation=Strict"), "kubectl {version}: {}", created.uri);
    }

    // Change only the second container: the patch must merge by name.
    std::fs::write(&file, manifest("busybox")).unwrap();
    fake.log.lock().unwrap().clear();
    let (ok, _, stderr) = kubectl(version, &server, &scratch, &["apply", validate, "-f", path]).await.unwrap();
    assert!(ok, "kubectl {version} apply (patch) failed: {stderr}");
    assert!(!stderr.contains("openapi v3"), "kubectl {version} could not use the v3 schema: {stderr}");
    let log = fake.log.lock().unwrap().clone();
    if strict {
        let fetched = log.iter().any(|s| s.uri.starts_with("/openapi/v3/apis/apps/v1?hash="));
        assert!(fetched, "kubectl {version} did not read the v3 document: {log:?}");
    }
    let patch = log.iter().find(|s| s.method == "PATCH").unwrap();
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    if strict {
        assert!(patch.uri.contains("fieldValidation=Strict"), "{}", patch.uri);
    }
    let body: Value = serde_json::from_str(&patch.body).unwrap();
    let template = &body["spec"]["template"]["spec"];
    assert_eq!(template["$setElementOrder/containers"], json!([{"name": "web"}, {"name": "log"}]), "{body}");
    assert_eq!(template["containers"], json!([{"image": "busybox", "name": "log"}]), "{body}");

    let stored = fake.deployments.lock().unwrap()["web"].clone();
    let containers = &stored["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers[0]["image"], "host");
    assert_eq!(containers[1]["image"], "busybox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_strict_validation() {
    // kubectl 1.29 and later verify the fieldValidation parameter through OpenAPI v3.
    for version in ["1.29", "1.30", "1.31", "1.32", "1.33"] {
        apply_twice(version, "--validate=strict").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_older_clients() {
    // kubectl 1.27 and 1.28 verify fieldValidation only through OpenAPI v2 protobuf, which
    // capstan does not serve, so they need --validate=false. They then compute the patch from
    // their compiled-in types.
    for version in ["1.27", "1.28"] {
        apply_twice(version, "--validate=false").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_server_side_apply() {
    let (server, fake) = start_fake().await;
    let scratch = Scratch::new("ssa");
    let file = scratch.0.join("deploy.yaml");
    std::fs::write(&file, manifest("host")).unwrap();
    let path = file.to_str().unwrap();
    let Some((ok, stdout, stderr)) = kubectl("1.33", &server, &scratch, &["apply", "--server-side", "-f", path]).await else {
        return;
    };
    assert!(ok, "apply --server-side failed: {stderr}");
    assert!(stdout.contains("serverside-applied"), "{stdout}");
    std::fs::write(&file, manifest("busybox")).unwrap();
    let (ok, _, stderr) = kubectl("1.33", &server, &scratch, &["apply", "--server-side", "-f", path]).await.unwrap();
    assert!(ok, "second apply --server-side failed: {stderr}");
    let stored = fake.deployments.lock().unwrap()["web"].clone();
    assert_eq!(stored["spec"]["template"]["spec"]["containers"][1]["image"], "busybox");
    let entries = stored["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["manager"], "kubectl");
    assert_eq!(entries[0]["operation"], "Apply");
}
