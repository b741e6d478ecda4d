//! Server-side validation of objects before they are stored, with the field errors and
//! messages the reference API server returns in a 422 `Invalid` status.
//!
//! Validation works on the JSON form of the object rather than on k8s-openapi types, so a
//! value of the wrong shape (a negative count, an unknown enum string) is reported with its
//! field path instead of failing deserialization. Call [`validate`] after defaulting and
//! after the server has generated a name for `generateName` requests.

mod config;
mod container;
mod endpoints;
mod errors;
mod job;
mod metadata;
mod pod;
mod pod_update;
mod probe;
mod service;
mod workload;

use serde_json::Value;

use crate::resources::ResourceInfo;

pub use errors::{FieldError, FieldErrorKind, Path, invalid_message};

/// Validates `object` as a `resource`. `old` is the stored object on updates, and enables
/// the immutability checks (the Deployment selector, most of a Pod's spec).
///
/// Returns every error found, in field order, or `Ok` when there are none. A kind this
/// module has no rules for is checked for its metadata only.
pub fn validate(resource: &ResourceInfo, object: &Value, old: Option<&Value>) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    metadata::validate_object_meta(resource, object, &mut errors);

    let root = Path::root();
    match (resource.group, resource.kind) {
        ("", "Pod") => {
            pod::validate_pod_spec(object.get("spec"), &root.child("spec"), &mut errors);
            if let Some(old) = old {
                pod_update::validate_pod_update(object, old, &mut errors);
            }
        }
        ("apps", "Deployment") => workload::validate_deployment(object, old, &mut errors),
        ("apps", "ReplicaSet") => workload::validate_replica_set(object, old, &mut errors),
        ("batch", "Job") => job::validate_job(object, old, &mut errors),
        ("", "Service") => {
            service::validate_service(object, &mut errors);
            if let Some(old) = old {
                service::validate_service_update(object, old, &mut errors);
            }
        }
        ("", "Endpoints") => endpoints::validate_endpoints(object, &mut errors),
        ("discovery.k8s.io", "EndpointSlice") => endpoints::validate_endpoint_slice(object, old, &mut errors),
        ("", "ConfigMap") => config::validate_config_map(object, &mut errors),
        ("", "Secret") => config::validate_secret(object, old, &mut errors),
        ("", "Namespace") => config::validate_namespace(object, &mut errors),
        _ => {}
    }

    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Reads a string field, treating a missing field and JSON null alike.
fn str_field<'a>(object: Option<&'a Value>, name: &str) -> Option<&'a str> {
    object.and_then(|o| o.get(name)).and_then(Value::as_str)
}

/// Reads an array field as a slice, empty when missing or not an array.
fn array_field<'a>(object: Option<&'a Value>, name: &str) -> &'a [Value] {
    object
        .and_then(|o| o.get(name))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Reads a field that must be a non-null value.
fn field<'a>(object: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    object.and_then(|o| o.get(name)).filter(|v| !v.is_null())
}

/// Checks an optional integer field against a lower bound, with the Kubernetes wording
/// for that bound.
fn check_min(object: Option<&Value>, name: &str, min: i64, path: &Path, errors: &mut Vec<FieldError>) {
    let Some(value) = field(object, name) else { return };
    match value.as_i64() {
        Some(number) if number >= min => {}
        Some(_) => {
            let detail = if min == 0 {
                "must be greater than or equal to 0".to_string()
            } else {
                format!("must be greater than or equal to {min}")
            };
            errors.push(FieldError::invalid(path.child(name), value.clone(), detail));
        }
        None => errors.push(FieldError::invalid(path.child(name), value.clone(), "must be an integer")),
    }
}

/// Checks that an optional string field contains one of `allowed`.
fn check_enum(
    object: Option<&Value>,
    name: &str,
    allowed: &[&str],
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let Some(value) = field(object, name) else { return };
    if !value.as_str().is_some_and(|text| allowed.contains(&text)) {
        errors.push(FieldError::not_supported(path.child(name), value.clone(), allowed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resources::lookup_kind;
    use serde_json::json;

    #[test]
    fn defaulted_manifests_validate() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "host", "command": ["sleep", "1000"],
                                             "livenessProbe": {"exec": {"command": ["true"]}}}]},
                },
            },
        });
        let service = json!({"metadata": {"name": "web", "namespace": "default"},
                             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}});
        let namespace = json!({"metadata": {"name": "team-a"}});
        for (group, kind, mut object) in [("apps", "Deployment", deployment), ("", "Service", service), ("", "Namespace", namespace)] {
            let resource = lookup_kind(group, kind).unwrap();
            apply_defaults(resource, &mut object);
            assert_eq!(validate(resource, &object, None), Ok(()), "{kind}");
        }
    }

    #[test]
    fn validate_collects_metadata_and_spec_errors() {
        let pods = lookup_kind("", "Pod").unwrap();
        let pod = json!({"metadata": {"name": "Bad_Name", "namespace": "default"}, "spec": {"restartPolicy": "Always"}});
        let errors = validate(pods, &pod, None).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "spec.containers"]);
        let message = invalid_message(pods, "Bad_Name", &errors);
        assert!(message.starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": "), "{message}");
    }

    #[test]
    fn pod_update_checks_run_with_old_object() {
        let pods = lookup_kind("", "Pod").unwrap();
        let mut old = json!({"metadata": {"name": "p", "namespace": "default"},
                             "spec": {"containers": [{"name": "a", "image": "host"}]}});
        apply_defaults(pods, &mut old);
        let mut new = old.clone();
        new["spec"]["restartPolicy"] = json!("Never");
        let errors = validate(pods, &new, Some(&old)).unwrap_err();
        assert_eq!(errors[0].field, "spec");
        assert_eq!(errors[0].reason(), "FieldValueForbidden");
    }
}
