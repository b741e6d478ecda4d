//! The `scale` subresource of deployments and replica sets (`autoscaling/v1` `Scale`).

use capstan_api::resources::ResourceInfo;
use serde_json::{Value, json};

use crate::auth::Verb;
use crate::decode;
use crate::meta;
use crate::routes::{ApiRequest, Reply, Shared};
use capstan_api::patch::PatchType;

use crate::rules;
use crate::status::{ApiError, Cause};
use crate::update::{self, Proposal, UpdateTarget};

pub async fn handle(state: &Shared, verb: Verb, request: &ApiRequest) -> Result<Reply, ApiError> {
    let resource = request.target.resource;
    let name = request.target.name.as_deref().ok_or(ApiError::MethodNotAllowed)?;
    let target = UpdateTarget {
        resource,
        namespace: request.target.namespace.as_deref(),
        name,
        subresource: None,
        dry_run: request.dry_run(),
        server_write: false,
    };
    let object = match verb {
        Verb::Get => {
            let key = resource.key(target.namespace, name);
            let kv = state.store.get(&key).await?.ok_or_else(|| ApiError::not_found(resource, name))?;
            meta::decode_stored(resource, &kv)?
        }
        Verb::Update => {
            let scale = decode::parse_body(request.content_type(), &request.body)?;
            decode::check_type(&scale, "autoscaling/v1", "Scale")?;
            let replicas = replicas_of(resource, name, &scale)?;
            let precondition = meta::resource_version(&scale).map(|rv| meta::parse_revision(&rv)).transpose()?;
            update::update_with(state, &target, |current| {
                Ok(Proposal { object: with_replicas(current, replicas), precondition })
            })
            .await?
        }
        Verb::Patch => {
            let patch_type = rules::patch_type(request.content_type(), request.param("fieldManager"), request.flag("force"))?;
            if matches!(patch_type, PatchType::Apply { .. }) {
                return Err(ApiError::UnsupportedMediaType {
                    message: "server-side apply is not supported on the scale subresource".into(),
                });
            }
            update::update_with(state, &target, |current| {
                let scale = to_scale(current);
                let patched = rules::apply_patch(resource, &patch_type, Some(&scale), &request.body)?;
                let replicas = replicas_of(resource, name, &patched)?;
                let precondition = match meta::resource_version(&patched) {
                    Some(rv) if meta::resource_version(&scale).as_ref() != Some(&rv) => Some(meta::parse_revision(&rv)?),
                    _ => None,
                };
                Ok(Proposal { object: with_replicas(current, replicas), precondition })
            })
            .await?
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(Reply::ok(to_scale(&object)))
}

fn with_replicas(current: &Value, replicas: i64) -> Value {
    let mut object = current.clone();
    object["spec"]["replicas"] = json!(replicas);
    object
}

fn replicas_of(resource: &ResourceInfo, name: &str, scale: &Value) -> Result<i64, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        let message = format!("Invalid value: {replicas}: must be greater than or equal to 0");
        return Err(ApiError::Invalid {
            group: "autoscaling".into(),
            kind: resource.plural.into(),
            name: name.into(),
            message: format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: {message}"),
            causes: vec![Cause { reason: "FieldValueInvalid".into(), message, field: "spec.replicas".into() }],
        });
    }
    Ok(replicas)
}

/// Builds the `Scale` view of a deployment or replica set.
pub fn to_scale(object: &Value) -> Value {
    let metadata = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": object["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector_string(&object["spec"]["selector"]),
        },
    })
}

/// Renders a `LabelSelector` in the string form of the `labelSelector` parameter.
pub fn selector_string(selector: &Value) -> String {
    let mut terms: Vec<String> = selector["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    for expression in selector["matchExpressions"].as_array().into_iter().flatten() {
        let key = expression["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expression["values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        match expression["operator"].as_str().unwrap_or_default() {
            "In" => terms.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => terms.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => terms.push(key.to_string()),
            "DoesNotExist" => terms.push(format!("!{key}")),
            _ => {}
        }
    }
    terms.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_view_of_deployment() {
        let deployment = json!({
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "5"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                     "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}},
            "status": {"replicas": 2},
        });
        let scale = to_scale(&deployment);
        assert_eq!(scale["spec"]["replicas"], 3);
        assert_eq!(scale["status"]["replicas"], 2);
        assert_eq!(scale["status"]["selector"], "app=web,tier in (a,b)");
        assert_eq!(scale["metadata"]["resourceVersion"], "5");
    }

    #[test]
    fn negative_replicas_are_invalid() {
        let deployments = capstan_api::resources::lookup("apps", "v1", "deployments").expect("deployments");
        let error = replicas_of(deployments, "web", &json!({"spec": {"replicas": -1}})).expect_err("negative");
        assert_eq!(error.code_and_reason(), (422, "Invalid"));
    }
}
