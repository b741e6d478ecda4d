//! OpenAPI v3 documents generated from the resource table: `/openapi/v3` (the index) and one
//! document per served group-version. `/openapi/v2` returns 404, because kubectl requests v2
//! only as protobuf and uses it only when v3 is missing.
//!
//! kubectl's `apply`, `create` and `replace` read two things here. A PATCH operation whose
//! `x-kubernetes-group-version-kind` names the kind and that declares `fieldValidation` lets
//! kubectl skip client-side validation and send `fieldValidation=Strict`. A kind schema whose
//! `x-kubernetes-group-version-kind` array names the kind, with the patch-strategy extensions
//! on its lists, is what client-side apply computes its strategic merge patch from.
//!
//! NOTE: kubectl 1.27 and 1.28 check `fieldValidation` only through OpenAPI v2 protobuf, so
//! with these clients `apply -f` needs `--validate=false` until v2 is served.

mod paths;
mod schemas;

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use capstan_api::resources::RESOURCES;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::discovery;
use schemas::SchemaSet;

/// One generated document.
struct Document {
    /// Index key and URL path without the `/openapi/v3/` prefix (`apis/apps/v1`).
    path: String,
    bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`, so clients that cache by URL see every change.
    hash: String,
}

static DOCUMENTS: OnceLock<Vec<Document>> = OnceLock::new();

/// Builds the OpenAPI router.
pub fn routes() -> Router {
    Router::new()
        .route("/openapi/v3", get(get_index))
        .route("/openapi/v3/{*path}", get(get_document))
        .route("/openapi/v2", get(|| async { discovery::not_found() }))
}

fn documents() -> &'static [Document] {
    DOCUMENTS.get_or_init(|| {
        discovery::served_group_versions()
            .into_iter()
            .map(|(group, version)| {
                let path = if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") };
                let bytes = group_version_document(group, version).to_string().into_bytes();
                let hash = hex::encode(Sha256::digest(&bytes));
                Document { path, bytes, hash }
            })
            .collect()
    })
}

async fn get_index() -> Response {
    let mut paths = Map::new();
    for document in documents() {
        let url = format!("/openapi/v3/{}?hash={}", document.path, document.hash);
        paths.insert(document.path.clone(), json!({"serverRelativeURL": url}));
    }
    let body = json!({"paths": paths}).to_string();
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn get_document(Path(path): Path<String>) -> Response {
    match documents().iter().find(|d| d.path == path.trim_end_matches('/')) {
        Some(document) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json"), (header::ETAG, &format!("\"{}\"", document.hash))],
            document.bytes.clone(),
        )
            .into_response(),
        None => discovery::not_found(),
    }
}

/// Builds the OpenAPI 3.0 document of one group-version.
pub fn group_version_document(group: &str, version: &str) -> Value {
    let mut schemas = SchemaSet::new();
    let mut all_paths = Map::new();
    for resource in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        let typed = schemas.add_kind_with_list(resource.group, resource.version, resource.kind);
        let sub_typed: Vec<bool> =
            resource.subresources.iter().map(|sub| schemas.add_kind(sub.group, sub.version, sub.kind)).collect();
        all_paths.extend(paths::resource_paths(resource, typed, &sub_typed));
    }
    // Kinds of this group-version that only subresources of other groups serve (Scale in
    // autoscaling/v1, Eviction in policy/v1) still get their schema here.
    for resource in RESOURCES {
        for sub in resource.subresources.iter().filter(|s| s.group == group && s.version == version) {
            schemas.add_kind(sub.group, sub.version, sub.kind);
        }
    }
    let title = if group.is_empty() { "Kubernetes core API".to_string() } else { format!("Kubernetes {group} API") };
    json!({
        "openapi": "3.0.0",
        "info": {"title": title, "version": version},
        "paths": all_paths,
        "components": {"schemas": schemas.finish()},
    })
}

#[cfg(test)]
mod tests;
