//! API discovery: `/api`, `/apis`, `/api/v1` and `/apis/{group}/{version}`.
//!
//! Every document is derived from [`capstan_api::resources::RESOURCES`], so a resource added
//! there appears here without further changes. kubectl sends one Accept header that lists the
//! aggregated formats before plain JSON, and it decides which format it got by the response
//! Content-Type alone. `/api` and `/apis` therefore return the aggregated document
//! (apidiscovery.k8s.io v2 or v2beta1) when the Accept header names it, and otherwise with
//! the legacy `APIVersions` and `APIGroupList` objects as `application/json`.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use capstan_api::resources::{RESOURCES, ResourceInfo, group_versions};
use serde_json::{Value, json};

/// Group-versions served only for their kinds used by subresources (`Scale` and `Eviction`),
/// listed in `/apis` even though no resource of their own is stored yet.
const SUBRESOURCE_ONLY_GROUPS: &[(&str, &str)] = &[("autoscaling", "v1"), ("policy", "v1")];

/// The aggregated discovery versions capstan can return, in the order it prefers them.
const AGGREGATED_VERSIONS: &[&str] = &["v2", "v2beta1"];

/// Builds the discovery router.
pub fn routes() -> Router {
    Router::new()
        .route("/api", get(get_core))
        .route("/apis", get(get_groups))
        .route("/api/v1", get(get_core_v1))
        .route("/apis/{group}/{version}", get(get_group_version))
        .route("/apis/{group}", get(get_group))
}

async fn get_core(headers: HeaderMap) -> Response {
    if let Some(version) = aggregated_version(&headers) {
        return aggregated_response(version, aggregated_list(version, &[("", "v1")]));
    }
    let mut versions = json!({"kind": "APIVersions", "versions": ["v1"]});
    // kubectl ignores the address list, but the reference server sends it.
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        versions["serverAddressByClientCIDRs"] =
            json!([{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]);
    }
    json_response(StatusCode::OK, &versions)
}

async fn get_groups(headers: HeaderMap) -> Response {
    let groups = served_groups();
    if let Some(version) = aggregated_version(&headers) {
        return aggregated_response(version, aggregated_list(version, &groups));
    }
    let groups: Vec<Value> = groups.iter().map(|(group, version)| group_entry(group, version)).collect();
    json_response(StatusCode::OK, &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
}

async fn get_group(Path(group): Path<String>) -> Response {
    match served_groups().into_iter().find(|(g, _)| *g == group) {
        Some((group, version)) => {
            let mut entry = group_entry(group, version);
            entry["kind"] = json!("APIGroup");
            entry["apiVersion"] = json!("v1");
            json_response(StatusCode::OK, &entry)
        }
        None => not_found(),
    }
}

async fn get_core_v1() -> Response {
    json_response(StatusCode::OK, &resource_list("", "v1"))
}

async fn get_group_version(Path((group, version)): Path<(String, String)>) -> Response {
    let served = served_groups().into_iter().any(|(g, v)| g == group && v == version);
    if !served {
        return not_found();
    }
    json_response(StatusCode::OK, &resource_list(&group, &version))
}

/// Lists every served group-version except the core group, in table order.
fn served_groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&'static str, &'static str)> =
        group_versions().into_iter().filter(|(group, _)| !group.is_empty()).collect();
    for pair in SUBRESOURCE_ONLY_GROUPS {
        if !groups.contains(pair) {
            groups.push(*pair);
        }
    }
    groups
}

/// Lists every served group-version, core (`""`) first. The OpenAPI index lists the same set.
pub fn served_group_versions() -> Vec<(&'static str, &'static str)> {
    let mut all = vec![("", "v1")];
    all.extend(served_groups());
    all
}

fn resources_of<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

fn group_entry(group: &str, version: &str) -> Value {
    let group_version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [group_version.clone()], "preferredVersion": group_version})
}

/// Builds the legacy `APIResourceList` of one group-version, subresources included.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut entries = Vec::new();
    for resource in resources_of(group, version) {
        entries.push(json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs,
            "shortNames": resource.short_names,
            "categories": resource.categories,
        }));
        for sub in resource.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", resource.plural, sub.name),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            // The reference server names group and version only where they differ from the
            // parent, as for `deployments/scale` (autoscaling/v1) and `pods/eviction` (policy/v1).
            if sub.group != resource.group || sub.version != resource.version {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            entries.push(entry);
        }
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries})
}

/// Builds the aggregated `APIGroupDiscoveryList` for the given group-versions (`""` is core).
pub fn aggregated_list(api_version: &str, groups: &[(&str, &str)]) -> Value {
    let items: Vec<Value> = groups
        .iter()
        .map(|(group, version)| {
            let resources: Vec<Value> = resources_of(group, version).map(aggregated_resource).collect();
            json!({
                "metadata": {"name": group},
                "versions": [{"version": version, "resources": resources, "freshness": "Current"}],
            })
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(resource: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = resource
        .subresources
        .iter()
        .map(|sub| {
            json!({
                "subresource": sub.name,
                "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                "verbs": sub.verbs,
            })
        })
        .collect();
    json!({
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": resource.singular,
        "verbs": resource.verbs,
        "shortNames": resource.short_names,
        "categories": resource.categories,
        "subresources": subresources,
    })
}

/// Returns the aggregated discovery version (`v2` or `v2beta1`) that the first matching
/// media range of the Accept header requests, or None when the client accepts only the
/// legacy format.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default();
        if !media_type.eq_ignore_ascii_case("application/json") {
            continue;
        }
        let (mut g, mut v, mut r#as) = (None, None, None);
        for param in parts {
            match param.split_once('=') {
                Some(("g", value)) => g = Some(value),
                Some(("v", value)) => v = Some(value),
                Some(("as", value)) => r#as = Some(value),
                _ => {}
            }
        }
        if g != Some("apidiscovery.k8s.io") || r#as != Some("APIGroupDiscoveryList") {
            continue;
        }
        if let Some(version) = AGGREGATED_VERSIONS.iter().find(|known| Some(**known) == v) {
            return Some(version);
        }
    }
    None
}

fn aggregated_response(version: &str, body: Value) -> Response {
    let content_type = format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList");
    let mut response = json_response(StatusCode::OK, &body);
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Builds the 404 `Status` that kubectl prints as "the server could not find the requested resource".
pub(crate) fn not_found() -> Response {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server could not find the requested resource",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    });
    json_response(StatusCode::NOT_FOUND, &status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    const KUBECTL_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";

    async fn get(path: &str, accept: Option<&str>) -> (StatusCode, String, Value) {
        let mut request = Request::get(path).header(header::HOST, "127.0.0.1:6443");
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let response = routes().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let content_type = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, content_type, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn legacy_api_versions() {
        let (status, content_type, body) = get("/api", Some("application/json")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type, "application/json");
        assert_eq!(body["kind"], "APIVersions");
        assert_eq!(body["versions"], json!(["v1"]));
        assert_eq!(body["serverAddressByClientCIDRs"][0]["serverAddress"], "127.0.0.1:6443");
    }

    #[tokio::test]
    async fn legacy_group_list() {
        let (_, _, body) = get("/apis", None).await;
        let names: Vec<&str> = body["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        for group in ["apps", "coordination.k8s.io", "autoscaling", "policy"] {
            assert!(names.contains(&group), "{group} missing from {names:?}");
        }
        assert!(!names.contains(&""), "the core group is served under /api");
        assert_eq!(body["groups"][0]["preferredVersion"]["groupVersion"], format!("{}/v1", names[0]));
    }

    #[tokio::test]
    async fn aggregated_v2_for_kubectl_accept() {
        let (_, content_type, body) = get("/apis", Some(KUBECTL_ACCEPT)).await;
        assert_eq!(content_type, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
        assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2");
        let apps = body["items"].as_array().unwrap().iter().find(|i| i["metadata"]["name"] == "apps").unwrap();
        let deployments = &apps["versions"][0]["resources"][0];
        assert_eq!(deployments["resource"], "deployments");
        assert_eq!(deployments["scope"], "Namespaced");
        let scale = deployments["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
        assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));

        let (_, content_type, core) = get("/api", Some(KUBECTL_ACCEPT)).await;
        assert!(content_type.contains("as=APIGroupDiscoveryList"));
        assert_eq!(core["items"][0]["metadata"]["name"], "");
    }

    #[tokio::test]
    async fn aggregated_v2beta1_for_older_clients() {
        let accept = "application/json;as=APIGroupDiscoveryList;v=v2beta1;g=apidiscovery.k8s.io,application/json";
        let (_, content_type, body) = get("/api", Some(accept)).await;
        assert_eq!(content_type, "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList");
        assert_eq!(body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    }

    #[tokio::test]
    async fn resource_list_has_subresources() {
        let (_, _, body) = get("/api/v1", None).await;
        assert_eq!(body["kind"], "APIResourceList");
        assert_eq!(body["groupVersion"], "v1");
        let resources = body["resources"].as_array().unwrap();
        let find = |name: &str| resources.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(find("pods")["shortNames"], json!(["po"]));
        assert_eq!(find("pods")["categories"], json!(["all"]));
        let eviction = find("pods/eviction");
        assert_eq!((&eviction["group"], &eviction["version"], &eviction["kind"]), (&json!("policy"), &json!("v1"), &json!("Eviction")));
        assert!(find("pods/status").get("group").is_none(), "same-group subresources omit group");

        let (_, _, apps) = get("/apis/apps/v1", None).await;
        let scale = apps["resources"].as_array().unwrap().iter().find(|r| r["name"] == "deployments/scale").unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
    }

    #[tokio::test]
    async fn unknown_group_is_not_found_status() {
        let (status, _, body) = get("/apis/example.com/v1", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["code"], 404);
    }
}
