//! API writes of the endpoints controller. Updates replace whole objects with the
//! `resourceVersion` the cache saw, so a concurrent change makes the write fail with a
//! conflict and the reconcile runs again on fresh data.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::Client;

use super::legacy::{self, DesiredEndpoints, OVER_CAPACITY_ANNOTATION};
use super::slices::SlicePlan;
use super::Error;

/// The writes of [`apply_slices`]: the name and new `resourceVersion` of each created or
/// updated slice, and the name and uid of each deleted one.
#[derive(Debug, Default)]
pub struct Written {
    pub versions: Vec<(String, String)>,
    pub deleted: Vec<(String, String)>,
}

/// Writes a slice plan: creates first, then updates, then deletes, so that a Service's
/// endpoints never disappear while their replacements are written.
pub async fn apply_slices(client: &Client, namespace: &str, plan: SlicePlan) -> Result<Written, Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let mut written = Written::default();
    for slice in &plan.create {
        let prefix = slice.metadata.generate_name.as_deref();
        let created = api
            .create(&PostParams::default(), slice)
            .await
            .map_err(|source| write_failed("create", "endpointslice", namespace, prefix, source))?;
        written.versions.extend(version_of(&created.metadata));
    }
    for slice in &plan.update {
        let name = slice.metadata.name.as_deref().unwrap_or_default();
        let updated = api
            .replace(name, &PostParams::default(), slice)
            .await
            .map_err(|source| write_failed("update", "endpointslice", namespace, Some(name), source))?;
        written.versions.extend(version_of(&updated.metadata));
    }
    for slice in &plan.delete {
        delete(&api, &slice.metadata, "endpointslice", namespace).await?;
        let (name, uid) = (slice.metadata.name.clone(), slice.metadata.uid.clone());
        written.deleted.extend(name.zip(uid));
    }
    Ok(written)
}

fn version_of(metadata: &ObjectMeta) -> Option<(String, String)> {
    metadata.name.clone().zip(metadata.resource_version.clone())
}

/// Creates the Service's Endpoints or replaces the stored version's content.
pub async fn write_endpoints(
    client: &Client,
    service: &Service,
    stored: Option<Arc<Endpoints>>,
    desired: DesiredEndpoints,
    labels: BTreeMap<String, String>,
) -> Result<(), Error> {
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
    let mut endpoints = match &stored {
        Some(stored) => Endpoints::clone(stored),
        None => Endpoints {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(namespace.clone()), ..ObjectMeta::default() },
            ..Endpoints::default()
        },
    };
    endpoints.metadata.labels = Some(labels);
    let annotations = endpoints.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if desired.truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_string(), "truncated".to_string());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    endpoints.subsets = Some(desired.subsets);

    let result = if stored.is_some() {
        api.replace(&name, &PostParams::default(), &endpoints).await.map_err(|source| ("update", source))
    } else {
        api.create(&PostParams::default(), &endpoints).await.map_err(|source| ("create", source))
    };
    result.map(|_| ()).map_err(|(action, source)| write_failed(action, "endpoints", &namespace, Some(&name), source))
}

/// Deletes Endpoints this controller wrote, for a Service that is gone or has no
/// selector any more. Endpoints written by users are left alone.
pub async fn delete_endpoints(client: &Client, endpoints: &Endpoints) -> Result<(), Error> {
    if !legacy::is_managed(endpoints) {
        return Ok(());
    }
    let namespace = endpoints.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Endpoints> = Api::namespaced(client.clone(), &namespace);
    delete(&api, &endpoints.metadata, "endpoints", &namespace).await
}

/// Deletes the object only if it still has the cached uid; an object already gone counts
/// as deleted.
async fn delete<K>(api: &Api<K>, metadata: &ObjectMeta, kind: &'static str, namespace: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = metadata.name.as_deref().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(write_failed("delete", kind, namespace, Some(name), source)),
    }
}

fn write_failed(action: &'static str, kind: &'static str, namespace: &str, name: Option<&str>, source: kube::Error) -> Error {
    Error::WriteFailed {
        action,
        kind,
        namespace: namespace.to_string(),
        name: name.unwrap_or_default().to_string(),
        source,
    }
}
