//! Server-side defaulting, matching the reference server's `SetDefaults_*` functions for
//! the kinds capstan serves.
//!
//! The Deployment template and the ReplicaSet template run through the same function,
//! because `kubectl rollout undo` compares the two byte for byte (less the
//! `pod-template-hash` label).

use serde_json::{Map, Value, json};

use crate::resources::ResourceInfo;

pub mod job;

/// Fills in the fields Kubernetes defaults when a client leaves them out. Fields already
/// set are never changed, and a malformed object is left as it is for validation to report.
pub fn apply_defaults(resource: &ResourceInfo, object: &mut Value) {
    match (resource.group, resource.kind) {
        ("", "Pod") => default_pod(object),
        ("apps", "Deployment") => default_deployment(object),
        ("apps", "ReplicaSet") => default_replica_set(object),
        ("batch", "Job") => job::default_job(object),
        ("", "Service") => default_service(object),
        ("", "Secret") => set_default(object, "type", json!("Opaque")),
        ("", "Namespace") => default_namespace(object),
        ("", "Endpoints") => {
            for subset in array_mut(object, "subsets") {
                for port in array_mut(subset, "ports") {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        _ => {}
    }
}

/// Sets `object[name]` to `value` when the field is missing or null.
pub(crate) fn set_default(object: &mut Value, name: &str, value: Value) {
    if let Some(map) = object.as_object_mut() {
        let slot = map.entry(name.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The object at `object[name]`, created empty when missing; `None` if either is not an
/// object.
pub(crate) fn object_mut<'a>(object: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    set_default(object, name, Value::Object(Map::new()));
    object.get_mut(name).filter(|v| v.is_object())
}

/// The elements of the array `object[name]`, empty when missing or not an array.
fn array_mut<'a>(object: &'a mut Value, name: &str) -> std::slice::IterMut<'a, Value> {
    match object.get_mut(name).and_then(Value::as_array_mut) {
        Some(items) => items.iter_mut(),
        None => [].iter_mut(),
    }
}

fn default_pod(pod: &mut Value) {
    let Some(spec) = object_mut(pod, "spec") else { return };
    default_pod_spec(spec);
    set_default(spec, "enableServiceLinks", json!(true));

    // Requests default to limits, for Pods only (not for templates).
    for list in ["initContainers", "containers"] {
        for container in array_mut(spec, list) {
            let Some(limits) = container.pointer("/resources/limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let Some(requests) = container.get_mut("resources").and_then(|r| object_mut(r, "requests")) else {
                continue;
            };
            for (name, quantity) in limits {
                set_default(requests, &name, quantity);
            }
        }
    }
}

fn default_deployment(deployment: &mut Value) {
    let Some(spec) = object_mut(deployment, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    if let Some(strategy) = object_mut(spec, "strategy") {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            if let Some(rolling) = object_mut(strategy, "rollingUpdate") {
                set_default(rolling, "maxUnavailable", json!("25%"));
                set_default(rolling, "maxSurge", json!("25%"));
            }
        }
    }
    default_template(spec);
}

fn default_replica_set(replica_set: &mut Value) {
    let Some(spec) = object_mut(replica_set, "spec") else { return };
    set_default(spec, "replicas", json!(1));
    default_template(spec);
}

/// Defaults `spec.template.spec` of a workload; a missing template stays missing.
pub(crate) fn default_template(spec: &mut Value) {
    let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) else { return };
    if let Some(pod_spec) = object_mut(template, "spec") {
        default_pod_spec(pod_spec);
    }
}

/// Defaults shared by Pods and pod templates.
fn default_pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        for container in array_mut(spec, list) {
            default_container(container);
        }
    }
    for volume in array_mut(spec, "volumes") {
        default_volume(volume);
    }
}

fn default_container(container: &mut Value) {
    if !container.is_object() {
        return;
    }
    set_default(container, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(container, "terminationMessagePolicy", json!("File"));
    // Kubernetes always serializes `resources` (a struct, not a pointer), so templates
    // that kubectl sends back, as in `rollout undo`, carry `resources: {}`. Defaulting it
    // here keeps such a template equal to the stored one.
    set_default(container, "resources", json!({}));
    let policy = image_pull_policy(container.get("image").and_then(Value::as_str).unwrap_or(""));
    set_default(container, "imagePullPolicy", json!(policy));
    for port in array_mut(container, "ports") {
        set_default(port, "protocol", json!("TCP"));
    }
    for variable in array_mut(container, "env") {
        if let Some(field_ref) = variable.pointer_mut("/valueFrom/fieldRef") {
            set_default(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(probe).filter(|p| p.is_object()) {
            default_probe(probe);
        }
    }
}

/// `Always` for `:latest` and untagged images, `IfNotPresent` for other tags and digests.
fn image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_probe(probe: &mut Value) {
    // Zero means unset for these int32 fields, as in the reference server.
    for (name, value) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)] {
        if probe.get(name).and_then(Value::as_i64) == Some(0) {
            probe[name] = json!(value);
        }
        set_default(probe, name, json!(value));
    }
    if let Some(http) = probe.get_mut("httpGet").filter(|h| h.is_object()) {
        if http.get("path").and_then(Value::as_str) == Some("") {
            http["path"] = json!("/");
        }
        set_default(http, "path", json!("/"));
        set_default(http, "scheme", json!("HTTP"));
    }
}

fn default_volume(volume: &mut Value) {
    let Some(map) = volume.as_object_mut() else { return };
    let has_source = map.iter().any(|(key, value)| key != "name" && !value.is_null());
    if !has_source {
        map.insert("emptyDir".to_string(), json!({}));
    }
    for source in ["secret", "configMap", "projected", "downwardAPI"] {
        if let Some(source) = volume.get_mut(source).filter(|s| s.is_object()) {
            set_default(source, "defaultMode", json!(420));
        }
    }
}

fn default_service(service: &mut Value) {
    let Some(spec) = object_mut(service, "spec") else { return };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    let service_type = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if service_type != "ExternalName" {
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "NodePort" || service_type == "LoadBalancer" {
        set_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if service_type == "LoadBalancer" {
        set_default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    // Three hours, the Kubernetes default for ClientIP affinity.
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && let Some(config) = object_mut(spec, "sessionAffinityConfig")
        && let Some(client_ip) = object_mut(config, "clientIP")
    {
        set_default(client_ip, "timeoutSeconds", json!(10_800));
    }
    for port in array_mut(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::String(name)) => name.is_empty(),
            Some(number) => number.as_i64() == Some(0),
        };
        if let (true, Some(number)) = (unset, port.get("port").cloned()) {
            port["targetPort"] = number;
        }
    }
}

fn default_namespace(namespace: &mut Value) {
    if let Some(spec) = object_mut(namespace, "spec") {
        set_default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = object_mut(namespace, "status") {
        set_default(status, "phase", json!("Active"));
    }
}

#[cfg(test)]
#[path = "defaults_tests.rs"]
mod tests;
