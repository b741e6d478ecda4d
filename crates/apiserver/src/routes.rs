//! Routing of resource paths to the handlers.
//!
//! Resource paths are parsed here rather than with one axum route per resource, so every
//! kind in `capstan_api::resources::RESOURCES` goes through the same generic handlers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use capstan_api::resources::{self, ResourceInfo};
use capstan_pki::ClientIdentity;
use serde_json::Value;

use crate::auth::{self, Verb};
use crate::status::ApiError;
use crate::{create, delete, list, subresources, update, watch};

/// Shared state of the request handlers.
pub struct AppState {
    pub store: Arc<dyn capstan_store::Store>,
    /// HTTPS client for calls to node agents (pod logs), with the kubelet client
    /// certificate and the cluster CA as the only root.
    pub kubelet_http: reqwest::Client,
    /// TLS settings for the same calls made without reqwest: the proxied upgrades of
    /// `exec`, `attach` and `portforward`.
    pub kubelet_tls: Arc<rustls::ClientConfig>,
    pub services: crate::services::ServiceNetwork,
}

pub type Shared = Arc<AppState>;

/// The resource, namespace, name and subresource a path names.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// One parsed API request.
pub struct ApiRequest {
    pub target: Target,
    pub method: Method,
    pub query: HashMap<String, String>,
    /// The query string as sent, which keeps repeated keys such as exec's `command`.
    pub raw_query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub user: Option<ClientIdentity>,
    /// The connection's upgrade, for requests that switch protocols (`exec`, `attach`,
    /// `portforward`).
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

impl ApiRequest {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    pub fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    /// Checks whether the client requested `meta.k8s.io` Table output in its Accept header.
    pub fn wants_table(&self) -> bool {
        self.headers
            .get_all(axum::http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|media| {
                let params: Vec<&str> = media.split(';').map(str::trim).collect();
                params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io")
            })
    }

    pub fn content_type(&self) -> &str {
        self.headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
    }
}

/// A successful reply: an HTTP code, a JSON body and `Warning` headers.
pub struct Reply {
    pub code: StatusCode,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Reply { code: StatusCode::OK, body, warnings: Vec::new() }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut response = (self.code, axum::Json(self.body)).into_response();
        for warning in self.warnings {
            let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
            if let Ok(value) = format!("299 - \"{escaped}\"").parse() {
                response.headers_mut().append(axum::http::header::WARNING, value);
            }
        }
        response
    }
}

/// Parses `/api/v1/...` and `/apis/{group}/{version}/...` into a target.
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.iter().any(|s| s.is_empty()) {
        return None;
    }

    // `namespaces/{ns}/{plural}` is a namespaced collection only when `plural` names a
    // namespaced resource, otherwise it is a subresource of the Namespace `{ns}`
    let is_namespaced = |plural: &str| resources::lookup(group, version, plural).is_some_and(|r| r.namespaced);
    let (namespace, plural, name, sub) = match rest {
        ["namespaces", ns, plural] if is_namespaced(plural) => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return None,
    };

    let resource = resources::lookup(group, version, plural)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    // a cluster-scoped path names a namespaced resource only as a collection
    // (`/api/v1/pods` lists every namespace)
    if namespace.is_none() && resource.namespaced && name.is_some() {
        return None;
    }
    if sub.is_some_and(|sub| resource.subresource(sub).is_none()) {
        return None;
    }
    Some(Target {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource: sub.map(str::to_string),
    })
}

/// The fallback handler: every path that no fixed route matched.
pub async fn dispatch(State(state): State<Shared>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(target) = parse_path(parts.uri.path()) else {
        return ApiError::PathNotFound.into_response();
    };
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return ApiError::bad_request(format!("failed to read the request body: {error}"))
                .into_response();
        }
    };
    let request = ApiRequest {
        target,
        method: parts.method.clone(),
        query: parse_query(&parts.uri),
        raw_query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
        user: parts.extensions.get::<Option<ClientIdentity>>().cloned().flatten(),
        upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
    };
    let span = tracing::debug_span!(
        "request",
        method = %parts.method,
        resource = request.target.resource.plural,
        namespace = request.target.namespace.as_deref().unwrap_or(""),
        name = request.target.name.as_deref().unwrap_or(""),
    );
    let _entered = span.enter();
    let response = match route(&state, &parts.method, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    tracing::debug!(status = response.status().as_u16(), "request finished");
    response
}

/// Largest accepted request body: the reference server's limit of 3 MiB plus headroom.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

fn parse_query(uri: &Uri) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

async fn route(state: &Shared, method: &Method, request: ApiRequest) -> Result<Response, ApiError> {
    let target = &request.target;
    let sub = target.subresource.as_deref();
    let watching = request.flag("watch");
    let verb = match (method.as_str(), target.name.is_some(), sub) {
        // connecting to a pod is `create` on the subresource whatever the method, so that
        // a WebSocket GET needs the same permission as a SPDY POST
        ("GET" | "POST", true, Some(sub)) if subresources::stream::is_connect(sub) => Verb::Create,
        ("GET", false, _) if watching => Verb::Watch,
        ("GET", false, _) => Verb::List,
        ("GET", true, _) => Verb::Get,
        ("POST", false, _) | ("POST", true, Some(_)) => Verb::Create,
        ("PUT", true, _) => Verb::Update,
        ("PATCH", true, _) => Verb::Patch,
        ("DELETE", true, None) => Verb::Delete,
        ("DELETE", false, _) => Verb::DeleteCollection,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    auth::authorize(request.user.as_ref(), verb, target)?;

    match (verb, sub) {
        (Verb::Watch, _) => watch::serve(state, request).await,
        (Verb::List, _) => Ok(list::list(state, &request).await?.into_response()),
        (Verb::Get, None | Some("status")) => Ok(list::get(state, &request).await?.into_response()),
        (Verb::Get, Some("log")) => subresources::log::serve(state, request).await,
        (Verb::Get | Verb::Update | Verb::Patch, Some("scale")) => {
            Ok(subresources::scale::handle(state, verb, &request).await?.into_response())
        }
        (Verb::Create, Some(sub)) if subresources::stream::is_connect(sub) => {
            subresources::stream::serve(state, request).await
        }
        (Verb::Create, None) => Ok(create::create(state, &request).await?.into_response()),
        (Verb::Create, Some("binding")) => {
            Ok(subresources::binding::bind(state, &request).await?.into_response())
        }
        (Verb::Create, Some("eviction")) => {
            Ok(subresources::eviction::evict(state, &request).await?.into_response())
        }
        (Verb::Update, None | Some("status")) => Ok(update::put(state, &request).await?.into_response()),
        (Verb::Patch, None | Some("status")) => Ok(update::patch(state, &request).await?.into_response()),
        (Verb::Delete, None) => Ok(delete::delete(state, &request).await?.into_response()),
        (Verb::DeleteCollection, _) => Ok(delete::delete_collection(state, &request).await?.into_response()),
        _ => Err(ApiError::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_object_path() {
        let target = parse_path("/apis/apps/v1/namespaces/default/deployments/web/scale").expect("target");
        assert_eq!(target.resource.kind, "Deployment");
        assert_eq!(target.namespace.as_deref(), Some("default"));
        assert_eq!(target.name.as_deref(), Some("web"));
        assert_eq!(target.subresource.as_deref(), Some("scale"));
    }

    #[test]
    fn namespace_itself_and_its_status() {
        let target = parse_path("/api/v1/namespaces/kube-system").expect("namespace");
        assert_eq!(target.resource.kind, "Namespace");
        assert_eq!(target.name.as_deref(), Some("kube-system"));
        let status = parse_path("/api/v1/namespaces/kube-system/status").expect("status");
        assert_eq!(status.subresource.as_deref(), Some("status"));
        let pods = parse_path("/api/v1/namespaces/kube-system/pods").expect("pods");
        assert_eq!(pods.resource.kind, "Pod");
        assert_eq!(pods.name, None);
    }

    #[test]
    fn all_namespaces_list_and_unknown_paths() {
        let pods = parse_path("/api/v1/pods").expect("pods");
        assert_eq!(pods.namespace, None);
        assert!(parse_path("/api/v1/pods/web").is_none());
        assert!(parse_path("/api/v1/bogus").is_none());
        assert!(parse_path("/apis/apps/v1/namespaces/default/deployments/web/bogus").is_none());
    }
}
