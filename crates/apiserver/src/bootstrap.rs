//! Objects every cluster has from the start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use capstan_api::resources;
use serde_json::{Value, json};

use crate::routes::Shared;
use crate::status::ApiError;
use crate::update::{Proposal, UpdateTarget, update_with};
use crate::{ServerError, create};

/// Namespaces the reference server creates at start-up.
const NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces and the `process` RuntimeClass unless they exist.
pub async fn create_builtin_objects(state: &Shared) -> Result<(), ServerError> {
    for name in NAMESPACES {
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        create_if_absent(state, "", "namespaces", namespace).await?;
    }
    let runtime_class = json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "process"},
        "handler": "process",
        "scheduling": {"nodeSelector": {"runtime.capstan.io/process": "true"}},
    });
    create_if_absent(state, "node.k8s.io", "runtimeclasses", runtime_class).await
}

async fn create_if_absent(state: &Shared, group: &str, plural: &str, object: Value) -> Result<(), ServerError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let failed = |message: String| ServerError::Bootstrap { name: format!("{plural}/{name}"), message };
    let resource = resources::lookup(group, "v1", plural).ok_or_else(|| failed("resource not served".into()))?;
    match create::insert(state, resource, None, object, false).await {
        Ok(_) => {
            tracing::info!(resource = plural, name, "created built-in object");
            Ok(())
        }
        Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(failed(error.to_string())),
    }
}

/// Creates the `kubernetes` Service in `default` at the first address of the service range,
/// and points its Endpoints and EndpointSlice at this server. The Service is created only
/// when absent; the Endpoints are rewritten when the server's address or port changed.
pub async fn create_kubernetes_service(state: &Shared, listen: SocketAddr) -> Result<(), ServerError> {
    let address = advertised(state, listen);
    let port = listen.port();
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": state.services.cluster_ip_range.first().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
        },
    });
    create_namespaced_if_absent(state, "", "services", service).await?;

    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": address.to_string()}],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    put_namespaced(state, "", "endpoints", endpoints).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put_namespaced(state, "discovery.k8s.io", "endpointslices", slice).await
}

/// The address other components reach this server at.
fn advertised(state: &Shared, listen: SocketAddr) -> IpAddr {
    match state.services.advertise_address {
        Some(address) => address,
        None if listen.ip().is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        None => listen.ip(),
    }
}

async fn create_namespaced_if_absent(state: &Shared, group: &str, plural: &str, object: Value) -> Result<(), ServerError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let failed = |message: String| ServerError::Bootstrap { name: format!("{plural}/{name}"), message };
    let resource = resources::lookup(group, "v1", plural).ok_or_else(|| failed("resource not served".into()))?;
    // look first: a Service's create claims its addresses before it finds the name taken
    let stored = state.store.get(&resource.key(Some("default"), &name)).await;
    if stored.map_err(|error| failed(error.to_string()))?.is_some() {
        return Ok(());
    }
    match create::insert(state, resource, Some("default"), object, false).await {
        Ok(_) => {
            tracing::info!(resource = plural, name, "created built-in object");
            Ok(())
        }
        Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(error) => Err(failed(error.to_string())),
    }
}

/// Creates the object in `default`, or replaces the stored version's content with it.
async fn put_namespaced(state: &Shared, group: &str, plural: &str, object: Value) -> Result<(), ServerError> {
    let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let failed = |message: String| ServerError::Bootstrap { name: format!("{plural}/{name}"), message };
    let resource = resources::lookup(group, "v1", plural).ok_or_else(|| failed("resource not served".into()))?;
    match create::insert(state, resource, Some("default"), object.clone(), false).await {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(error) => return Err(failed(error.to_string())),
    }
    let target = UpdateTarget {
        resource,
        namespace: Some("default"),
        name: &name,
        subresource: None,
        dry_run: false,
        server_write: true,
    };
    update_with(state, &target, |current| {
        let mut proposed = object.clone();
        proposed["metadata"] = current["metadata"].clone();
        Ok(Proposal { object: proposed, precondition: None })
    })
    .await
    .map(|_| ())
    .map_err(|error| failed(error.to_string()))
}
