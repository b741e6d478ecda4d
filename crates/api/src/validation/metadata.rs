//! ObjectMeta rules that apply to every kind: name, namespace, labels and annotations.

use serde_json::Value;

use super::{FieldError, Path};
use crate::meta;
use crate::resources::ResourceInfo;

/// Maximum total size of all annotation keys and values, in bytes.
pub const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// Validates `metadata` of a top-level object of kind `resource`.
pub(super) fn validate_object_meta(resource: &ResourceInfo, object: &Value, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("metadata");
    let metadata = object.get("metadata");

    // The name: required, and checked by the rule the kind uses for its names.
    match metadata.and_then(|m| m.get("name")).and_then(Value::as_str) {
        None | Some("") => {
            errors.push(FieldError::required(path.child("name"), "name or generateName is required"));
        }
        Some(name) => {
            let name_rule: fn(&str) -> Vec<String> = match (resource.group, resource.kind) {
                ("", "Namespace") => meta::dns1123_label,
                ("", "Service") => meta::dns1035_label,
                _ => meta::dns1123_subdomain,
            };
            for problem in name_rule(name) {
                errors.push(FieldError::invalid(path.child("name"), Value::from(name), problem));
            }
        }
    }

    validate_namespace_field(resource, metadata, &path, errors);
    validate_labels(metadata.and_then(|m| m.get("labels")), &path.child("labels"), errors);
    validate_annotations(metadata.and_then(|m| m.get("annotations")), &path.child("annotations"), errors);
}

fn validate_namespace_field(
    resource: &ResourceInfo,
    metadata: Option<&Value>,
    path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let namespace = metadata.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("");
    if resource.namespaced {
        if namespace.is_empty() {
            errors.push(FieldError::required(path.child("namespace"), ""));
        }
        for problem in meta::dns1123_label(namespace).into_iter().filter(|_| !namespace.is_empty()) {
            errors.push(FieldError::invalid(path.child("namespace"), Value::from(namespace), problem));
        }
    } else if !namespace.is_empty() {
        errors.push(FieldError::forbidden(path.child("namespace"), "not allowed on this type"));
    }
}

/// Validates a label map. As in Kubernetes, errors name the map (`metadata.labels`), not
/// the entry, and carry the bad key or value.
pub(super) fn validate_labels(labels: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let Some(labels) = labels.filter(|l| !l.is_null()) else { return };
    let Some(map) = labels.as_object() else {
        errors.push(FieldError::invalid(path.clone(), labels.clone(), "must be a map of strings"));
        return;
    };
    for (key, value) in map {
        for problem in meta::qualified_name(key) {
            errors.push(FieldError::invalid(path.clone(), Value::from(key.as_str()), problem));
        }
        let Some(text) = value.as_str() else {
            errors.push(FieldError::invalid(path.clone(), value.clone(), "label values must be strings"));
            continue;
        };
        for problem in meta::label_value(text) {
            errors.push(FieldError::invalid(path.clone(), Value::from(text), problem));
        }
    }
}

fn validate_annotations(annotations: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let Some(annotations) = annotations.filter(|a| !a.is_null()) else { return };
    let Some(map) = annotations.as_object() else {
        errors.push(FieldError::invalid(path.clone(), annotations.clone(), "must be a map of strings"));
        return;
    };
    let mut total = 0;
    for (key, value) in map {
        for problem in meta::qualified_name(&key.to_lowercase()) {
            errors.push(FieldError::invalid(path.clone(), Value::from(key.as_str()), problem));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError::too_long(path.clone(), ANNOTATIONS_MAX_BYTES));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup_kind;
    use serde_json::json;

    fn messages(kind: &str, object: Value) -> Vec<String> {
        let group = if kind == "Deployment" { "apps" } else { "" };
        let resource = lookup_kind(group, kind).unwrap();
        let mut errors = Vec::new();
        validate_object_meta(resource, &object, &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn metadata_rules_per_kind() {
        let big = "x".repeat(ANNOTATIONS_MAX_BYTES);
        let cases: &[(&str, Value, &[&str])] = &[
            ("Pod", json!({"metadata": {"name": "web", "namespace": "default"}}), &[]),
            ("Pod", json!({"metadata": {"namespace": "default"}}), &["metadata.name: Required value: name or generateName is required"]),
            ("Pod", json!({"metadata": {"name": "web"}}), &["metadata.namespace: Required value"]),
            ("Pod", json!({"metadata": {"name": "web.v1", "namespace": "default"}}), &[]),
            ("Namespace", json!({"metadata": {"name": "web.v1"}}), &["metadata.name: Invalid value: \"web.v1\": a lowercase RFC 1123 label"]),
            ("Service", json!({"metadata": {"name": "1web", "namespace": "default"}}), &["metadata.name: Invalid value: \"1web\": a DNS-1035 label"]),
            ("Node", json!({"metadata": {"name": "n1", "namespace": "default"}}), &["metadata.namespace: Forbidden: not allowed on this type"]),
            (
                "Pod",
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "bad value"}}}),
                &["metadata.labels: Invalid value: \"bad value\": a valid label must be"],
            ),
            (
                "Pod",
                json!({"metadata": {"name": "web", "namespace": "default", "labels": {"-app": "x"}}}),
                &["metadata.labels: Invalid value: \"-app\": name part must consist of"],
            ),
            (
                "Pod",
                json!({"metadata": {"name": "web", "namespace": "default", "annotations": {"a": big}}}),
                &["metadata.annotations: Too long: may not be more than 262144 bytes"],
            ),
        ];
        for (kind, object, expected) in cases {
            let found = messages(kind, object.clone());
            assert_eq!(found.len(), expected.len(), "{kind} {object}: {found:?}");
            for (message, prefix) in found.iter().zip(expected.iter()) {
                assert!(message.starts_with(prefix), "{message:?} should start with {prefix:?}");
            }
        }
    }
}
