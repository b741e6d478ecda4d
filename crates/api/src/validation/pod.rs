//! PodSpec rules, shared by Pods and the pod templates of Deployments and ReplicaSets.

use std::collections::HashSet;

use serde_json::Value;

use super::container::validate_container;
use super::{FieldError, Path, array_field, check_enum, check_min, field, str_field};
use crate::meta;

pub(super) const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];

/// Validates a PodSpec at `path` (`spec`, or `spec.template.spec` in a workload).
pub(super) fn validate_pod_spec(spec: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let volumes = validate_volumes(spec, path, errors);

    // Containers: at least one, names unique across init and regular containers.
    let mut names = HashSet::new();
    let init_path = path.child("initContainers");
    for (index, container) in array_field(spec, "initContainers").iter().enumerate() {
        validate_container(container, &init_path.index(index), &volumes, &mut names, false, errors);
    }
    let containers = array_field(spec, "containers");
    let containers_path = path.child("containers");
    if containers.is_empty() {
        errors.push(FieldError::required(containers_path.clone(), ""));
    }
    for (index, container) in containers.iter().enumerate() {
        validate_container(container, &containers_path.index(index), &volumes, &mut names, true, errors);
    }

    // Pod-level policies and periods.
    match field(spec, "restartPolicy") {
        None => errors.push(FieldError::required(path.child("restartPolicy"), "")),
        Some(_) => check_enum(spec, "restartPolicy", RESTART_POLICIES, path, errors),
    }
    check_enum(spec, "dnsPolicy", DNS_POLICIES, path, errors);
    check_min(spec, "terminationGracePeriodSeconds", 0, path, errors);
    if let Some(deadline) = field(spec, "activeDeadlineSeconds") {
        if !deadline.as_i64().is_some_and(|d| (1..=i64::from(i32::MAX)).contains(&d)) {
            let detail = "must be between 1 and 2147483647, inclusive";
            errors.push(FieldError::invalid(path.child("activeDeadlineSeconds"), deadline.clone(), detail));
        }
    }
    if let Some(node_name) = str_field(spec, "nodeName").filter(|n| !n.is_empty()) {
        for problem in meta::dns1123_subdomain(node_name) {
            errors.push(FieldError::invalid(path.child("nodeName"), Value::from(node_name), problem));
        }
    }
    if let Some(class) = str_field(spec, "runtimeClassName") {
        for problem in meta::dns1123_subdomain(class) {
            errors.push(FieldError::invalid(path.child("runtimeClassName"), Value::from(class), problem));
        }
    }
    validate_node_selector(spec, path, errors);
}

/// Validates `volumes` and returns their names, which volume mounts must refer to.
fn validate_volumes(spec: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    let volumes_path = path.child("volumes");
    for (index, volume) in array_field(spec, "volumes").iter().enumerate() {
        let volume_path = volumes_path.index(index);
        match volume.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(volume_path.child("name"), "")),
            Some(name) => {
                for problem in meta::dns1123_label(name) {
                    errors.push(FieldError::invalid(volume_path.child("name"), Value::from(name), problem));
                }
                if !names.insert(name.to_string()) {
                    errors.push(FieldError::duplicate(volume_path.child("name"), Value::from(name)));
                }
            }
        }

        // Every Volume field other than `name` is a volume source, and exactly one is allowed.
        let sources: Vec<&String> = volume
            .as_object()
            .map(|o| o.iter().filter(|(k, v)| *k != "name" && !v.is_null()).map(|(k, _)| k).collect())
            .unwrap_or_default();
        match sources.as_slice() {
            [] => errors.push(FieldError::required(volume_path.clone(), "must specify a volume type")),
            [_] => {}
            [_, extra, ..] => {
                let detail = "may not specify more than 1 volume type";
                errors.push(FieldError::forbidden(volume_path.child(extra), detail));
            }
        }
    }
    names
}

fn validate_node_selector(spec: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let Some(selector) = field(spec, "nodeSelector").and_then(Value::as_object) else { return };
    let selector_path = path.child("nodeSelector");
    for (key, value) in selector {
        for problem in meta::qualified_name(key) {
            errors.push(FieldError::invalid(selector_path.clone(), Value::from(key.as_str()), problem));
        }
        for problem in meta::label_value(value.as_str().unwrap_or_default()) {
            errors.push(FieldError::invalid(selector_path.clone(), value.clone(), problem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(spec: Value) -> Vec<String> {
        let mut errors = Vec::new();
        validate_pod_spec(Some(&spec), &Path::root().child("spec"), &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    fn container(name: &str) -> Value {
        json!({"name": name, "image": "host", "imagePullPolicy": "IfNotPresent",
               "terminationMessagePolicy": "File"})
    }

    #[test]
    fn pod_spec_rules() {
        let valid = json!({"containers": [container("web")], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"});
        let with = |patch: Value| {
            let mut spec = valid.clone();
            for (key, value) in patch.as_object().unwrap() {
                spec[key] = value.clone();
            }
            spec
        };
        let cases: Vec<(Value, Vec<&str>)> = vec![
            (valid.clone(), vec![]),
            (with(json!({"containers": []})), vec!["spec.containers: Required value"]),
            (
                with(json!({"containers": [container("web"), container("web")]})),
                vec!["spec.containers[1].name: Duplicate value: \"web\""],
            ),
            (
                with(json!({"initContainers": [container("web")]})),
                vec!["spec.containers[0].name: Duplicate value: \"web\""],
            ),
            (
                with(json!({"restartPolicy": "Sometimes"})),
                vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
            ),
            (
                with(json!({"dnsPolicy": "Everywhere"})),
                vec!["spec.dnsPolicy: Unsupported value: \"Everywhere\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\""],
            ),
            (
                with(json!({"terminationGracePeriodSeconds": -1})),
                vec!["spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0"],
            ),
            (
                with(json!({"activeDeadlineSeconds": 0})),
                vec!["spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive"],
            ),
            (
                with(json!({"volumes": [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}]})),
                vec!["spec.volumes[1].name: Duplicate value: \"data\""],
            ),
            (
                with(json!({"volumes": [{"name": "data"}]})),
                vec!["spec.volumes[0]: Required value: must specify a volume type"],
            ),
            (
                with(json!({"volumes": [{"name": "data", "emptyDir": {}, "hostPath": {"path": "/"}}]})),
                vec!["spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type"],
            ),
        ];
        for (spec, expected) in cases {
            assert_eq!(messages(spec.clone()), expected, "spec {spec}");
        }
    }
}
