//! Container rules: name, image, ports, environment, resources, volume mounts and probes.

use std::collections::HashSet;

use serde_json::Value;

use super::probe::{ProbeKind, validate_probe};
use super::{FieldError, Path, array_field, check_enum, field, str_field};
use crate::{meta, quantity};

pub(super) const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];

/// Validates one container. `names` collects container names across the pod, and
/// `volumes` holds the pod's volume names. Probes are checked on regular containers only.
pub(super) fn validate_container(
    container: &Value,
    path: &Path,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    regular: bool,
    errors: &mut Vec<FieldError>,
) {
    let container = Some(container);
    match str_field(container, "name").filter(|n| !n.is_empty()) {
        None => errors.push(FieldError::required(path.child("name"), "")),
        Some(name) => {
            for problem in meta::dns1123_label(name) {
                errors.push(FieldError::invalid(path.child("name"), Value::from(name), problem));
            }
            if !names.insert(name.to_string()) {
                errors.push(FieldError::duplicate(path.child("name"), Value::from(name)));
            }
        }
    }
    match str_field(container, "image") {
        Some(image) if image.trim().is_empty() => errors.push(FieldError::required(path.child("image"), "")),
        None => errors.push(FieldError::required(path.child("image"), "")),
        Some(image) if image.trim() != image => errors.push(FieldError::invalid(
            path.child("image"),
            Value::from(image),
            "must not have leading or trailing whitespace",
        )),
        Some(_) => {}
    }
    check_enum(container, "imagePullPolicy", PULL_POLICIES, path, errors);
    check_enum(container, "terminationMessagePolicy", TERMINATION_MESSAGE_POLICIES, path, errors);

    validate_ports(container, &path.child("ports"), errors);
    validate_env(container, &path.child("env"), errors);
    validate_resources(field(container, "resources"), &path.child("resources"), errors);
    validate_volume_mounts(container, &path.child("volumeMounts"), volumes, errors);

    if regular {
        for (name, kind) in [
            ("livenessProbe", ProbeKind::Liveness),
            ("readinessProbe", ProbeKind::Readiness),
            ("startupProbe", ProbeKind::Startup),
        ] {
            if let Some(probe) = field(container, name) {
                validate_probe(probe, kind, &path.child(name), errors);
            }
        }
    }
}

/// Validates a port number: an integer from 1 to 65535.
pub(super) fn check_port_number(value: &Value, path: Path, errors: &mut Vec<FieldError>) {
    if !value.as_i64().is_some_and(|p| (1..=65535).contains(&p)) {
        errors.push(FieldError::invalid(path, value.clone(), "must be between 1 and 65535, inclusive"));
    }
}

fn validate_ports(container: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let mut names = HashSet::new();
    let mut ports = HashSet::new();
    for (index, port) in array_field(container, "ports").iter().enumerate() {
        let port_path = path.index(index);
        let port = Some(port);
        if let Some(name) = str_field(port, "name").filter(|n| !n.is_empty()) {
            for problem in meta::port_name(name) {
                errors.push(FieldError::invalid(port_path.child("name"), Value::from(name), problem));
            }
            if !names.insert(name) {
                errors.push(FieldError::duplicate(port_path.child("name"), Value::from(name)));
            }
        }
        match field(port, "containerPort") {
            None => errors.push(FieldError::required(port_path.child("containerPort"), "")),
            Some(number) => check_port_number(number, port_path.child("containerPort"), errors),
        }
        if let Some(host_port) = field(port, "hostPort").filter(|p| p.as_i64() != Some(0)) {
            check_port_number(host_port, port_path.child("hostPort"), errors);
        }
        match field(port, "protocol") {
            None => errors.push(FieldError::required(port_path.child("protocol"), "")),
            Some(_) => check_enum(port, "protocol", PROTOCOLS, &port_path, errors),
        }

        // A port number may appear once per protocol within one container.
        let number = field(port, "containerPort").and_then(Value::as_i64);
        let protocol = str_field(port, "protocol").unwrap_or("TCP");
        if let Some(number) = number {
            if !ports.insert((number, protocol)) {
                errors.push(FieldError::duplicate(port_path.clone(), Value::from(format!("{number}/{protocol}"))));
            }
        }
    }
}

fn validate_env(container: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    for (index, variable) in array_field(container, "env").iter().enumerate() {
        let variable_path = path.index(index);
        let variable = Some(variable);
        match str_field(variable, "name").filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(variable_path.child("name"), "")),
            Some(name) => {
                for problem in meta::env_var_name(name) {
                    errors.push(FieldError::invalid(variable_path.child("name"), Value::from(name), problem));
                }
            }
        }
        let Some(value_from) = field(variable, "valueFrom") else { continue };
        let from_path = variable_path.child("valueFrom");
        let sources = ["fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef"];
        let count = sources.iter().filter(|s| field(Some(value_from), s).is_some()).count();
        if count == 0 {
            let detail = "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`";
            errors.push(FieldError::invalid(from_path.clone(), Value::from(""), detail));
        } else if count > 1 {
            let detail = "may not have more than one field specified at a time";
            errors.push(FieldError::invalid(from_path.clone(), Value::from(""), detail));
        }
        if str_field(variable, "value").is_some_and(|v| !v.is_empty()) {
            let detail = "may not be specified when `value` is not empty";
            errors.push(FieldError::invalid(from_path, Value::from(""), detail));
        }
    }
}

/// Parses every quantity of `requests` or `limits`, reporting invalid and negative ones.
/// Returns the valid ones in millis, keyed by resource name.
fn parse_quantities(map: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) -> Vec<(String, i64, Value)> {
    let mut parsed = Vec::new();
    let Some(map) = map.and_then(Value::as_object) else { return parsed };
    for (resource, value) in map {
        let entry_path = path.key(resource);
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            other => {
                errors.push(FieldError::invalid(entry_path, other.clone(), quantity::QuantityError.to_string()));
                continue;
            }
        };
        match quantity::parse_millis(&text) {
            Err(error) => errors.push(FieldError::invalid(entry_path, Value::from(text), error.to_string())),
            Ok(millis) if millis < 0 => {
                errors.push(FieldError::invalid(entry_path, Value::from(text), "must be greater than or equal to 0"));
            }
            Ok(millis) => parsed.push((resource.clone(), millis, Value::from(text))),
        }
    }
    parsed
}

fn validate_resources(resources: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    let limits = parse_quantities(field(resources, "limits"), &path.child("limits"), errors);
    let requests = parse_quantities(field(resources, "requests"), &path.child("requests"), errors);
    for (resource, requested, text) in requests {
        let Some((_, limit, limit_text)) = limits.iter().find(|(name, _, _)| *name == resource) else { continue };
        if requested > *limit {
            let limit_text = limit_text.as_str().unwrap_or_default();
            let detail = format!("must be less than or equal to {resource} limit of {limit_text}");
            errors.push(FieldError::invalid(path.child("requests").key(&resource), text, detail));
        }
    }
}

fn validate_volume_mounts(container: Option<&Value>, path: &Path, volumes: &HashSet<String>, errors: &mut Vec<FieldError>) {
    let mut mount_paths = HashSet::new();
    for (index, mount) in array_field(container, "volumeMounts").iter().enumerate() {
        let mount_path = path.index(index);
        let mount = Some(mount);
        match str_field(mount, "name").filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(mount_path.child("name"), "")),
            Some(name) if !volumes.contains(name) => {
                errors.push(FieldError::not_found(mount_path.child("name"), Value::from(name)));
            }
            Some(_) => {}
        }
        match str_field(mount, "mountPath").filter(|p| !p.is_empty()) {
            None => errors.push(FieldError::required(mount_path.child("mountPath"), "")),
            Some(target) => {
                if !mount_paths.insert(target) {
                    let detail = "must be unique";
                    errors.push(FieldError::invalid(mount_path.child("mountPath"), Value::from(target), detail));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(container: Value) -> Vec<String> {
        let mut errors = Vec::new();
        let volumes = HashSet::from(["data".to_string()]);
        let path = Path::root().child("spec").child("containers").index(0);
        validate_container(&container, &path, &volumes, &mut HashSet::new(), true, &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn container_rules() {
        let valid = json!({"name": "web", "image": "host"});
        let with = |patch: Value| {
            let mut container = valid.clone();
            for (key, value) in patch.as_object().unwrap() {
                container[key] = value.clone();
            }
            container
        };
        let prefix = "spec.containers[0]";
        let cases: Vec<(Value, Vec<String>)> = vec![
            (valid.clone(), vec![]),
            (with(json!({"image": ""})), vec![format!("{prefix}.image: Required value")]),
            (
                with(json!({"image": "busybox:local "})),
                vec![format!("{prefix}.image: Invalid value: \"busybox:local \": must not have leading or trailing whitespace")],
            ),
            (
                with(json!({"name": "Web"})),
                vec![format!("{prefix}.name: Invalid value: \"Web\": {}", meta::dns1123_label("Web")[0])],
            ),
            (
                with(json!({"ports": [{"containerPort": 0, "protocol": "TCP"}]})),
                vec![format!("{prefix}.ports[0].containerPort: Invalid value: 0: must be between 1 and 65535, inclusive")],
            ),
            (
                with(json!({"ports": [{"containerPort": 80, "protocol": "HTTP"}]})),
                vec![format!("{prefix}.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"")],
            ),
            (
                with(json!({"ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80, "protocol": "TCP"}]})),
                vec![format!("{prefix}.ports[1]: Duplicate value: \"80/TCP\"")],
            ),
            (
                with(json!({"ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 80, "protocol": "UDP"}]})),
                vec![],
            ),
            (
                with(json!({"ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}, {"name": "http", "containerPort": 81, "protocol": "TCP"}]})),
                vec![format!("{prefix}.ports[1].name: Duplicate value: \"http\"")],
            ),
            (
                with(json!({"env": [{"name": "A=B", "value": "x"}]})),
                vec![format!("{prefix}.env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='")],
            ),
            (
                with(json!({"env": [{"name": "A", "valueFrom": {}}]})),
                vec![format!("{prefix}.env[0].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`")],
            ),
            (
                with(json!({"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}})),
                vec![format!("{prefix}.resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 500m")],
            ),
            (
                with(json!({"resources": {"limits": {"memory": "-1Gi"}}})),
                vec![format!("{prefix}.resources.limits[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0")],
            ),
            (
                with(json!({"resources": {"limits": {"memory": "lots"}}})),
                vec![format!("{prefix}.resources.limits[memory]: Invalid value: \"lots\": {}", quantity::QuantityError)],
            ),
            (
                with(json!({"volumeMounts": [{"name": "logs", "mountPath": "/logs"}]})),
                vec![format!("{prefix}.volumeMounts[0].name: Not found: \"logs\"")],
            ),
            (
                with(json!({"volumeMounts": [{"name": "data"}]})),
                vec![format!("{prefix}.volumeMounts[0].mountPath: Required value")],
            ),
        ];
        for (container, expected) in cases {
            assert_eq!(messages(container.clone()), expected, "container {container}");
        }
    }
}
