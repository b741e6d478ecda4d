//! Columns and cells of every kind except Pod, and the choice of printer per kind.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{AGE, Column, NAME, age, column, integer, list, or_none, pod, text, wide};

/// A function that computes the cells of one row.
type CellsFn = fn(&Value, Timestamp) -> Vec<Value>;

/// The columns and the row function of one kind.
pub(super) struct Printer {
    pub columns: &'static [Column],
    pub cells: CellsFn,
}

const CONTAINERS: Column = wide("Containers", "Names of the containers in the pod template.");
const IMAGES: Column = wide("Images", "Images of the containers in the pod template.");
const SELECTOR: Column = wide("Selector", "Label selector of the pods.");

const DEPLOYMENT: &[Column] = &[
    NAME,
    column("Ready", "string", "Ready replicas out of desired replicas."),
    column("Up-to-date", "integer", "Replicas updated to the current pod template."),
    column("Available", "integer", "Replicas available to serve."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const REPLICA_SET: &[Column] = &[
    NAME,
    column("Desired", "integer", "Desired replicas."),
    column("Current", "integer", "Existing replicas."),
    column("Ready", "integer", "Ready replicas."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const JOB: &[Column] = &[
    NAME,
    column("Status", "string", "Job state: Running, Complete, Failed, Suspended, Terminating or an interim condition."),
    column("Completions", "string", "Succeeded pods out of the desired completions."),
    column("Duration", "string", "Time from the job's start to its completion, or to now while it runs."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];
const SERVICE: &[Column] = &[
    NAME,
    column("Type", "string", "Type of the service."),
    column("Cluster-IP", "string", "Virtual IP address of the service inside the cluster."),
    column("External-IP", "string", "External addresses of the service."),
    column("Port(s)", "string", "Ports the service exposes."),
    AGE,
    wide("Selector", "Label selector of the service's pods."),
];
const NODE: &[Column] = &[
    NAME,
    column("Status", "string", "Readiness of the node, and whether scheduling is disabled."),
    column("Roles", "string", "Roles from the node-role.kubernetes.io labels."),
    AGE,
    column("Version", "string", "Version of the node agent."),
    wide("Internal-IP", "Internal IP address of the node."),
    wide("External-IP", "External IP address of the node."),
    wide("OS-Image", "Operating system image of the node."),
    wide("Kernel-Version", "Kernel version of the node."),
    wide("Container-Runtime", "Container runtime of the node."),
];
const NAMESPACE: &[Column] = &[NAME, column("Status", "string", "Phase of the namespace."), AGE];
const EVENT: &[Column] = &[
    column("Last Seen", "string", "Time since the event was last seen."),
    column("Type", "string", "Type of the event: Normal or Warning."),
    column("Reason", "string", "Short reason for the event."),
    column("Object", "string", "Object the event is about."),
    wide("Subobject", "Part of the object the event is about."),
    wide("Source", "Component that reported the event."),
    column("Message", "string", "Description of the event."),
    wide("First Seen", "Time since the event was first seen."),
    Column { name: "Count", kind: "integer", format: "", priority: 1, description: "Times the event occurred." },
    Column { name: "Name", kind: "string", format: "name", priority: 1, description: "Name of the event." },
];
const CONFIG_MAP: &[Column] = &[NAME, column("Data", "integer", "Number of data entries."), AGE];
const SECRET: &[Column] = &[
    NAME,
    column("Type", "string", "Type of the secret."),
    column("Data", "integer", "Number of data entries."),
    AGE,
];
const ENDPOINTS: &[Column] = &[NAME, column("Endpoints", "string", "Endpoint addresses, up to three."), AGE];
const SERVICE_ACCOUNT: &[Column] = &[NAME, column("Secrets", "integer", "Number of secrets."), AGE];
const LEASE: &[Column] = &[NAME, column("Holder", "string", "Identity of the lease holder."), AGE];
const DEFAULT: &[Column] = &[
    NAME,
    Column { name: "Created At", kind: "date", format: "", priority: 0, description: "Time the object was created." },
];

/// Picks the printer for a kind. Kinds without their own columns get Name and Created At.
pub(super) fn printer(group: &str, kind: &str) -> Printer {
    let (columns, cells): (&'static [Column], CellsFn) = match (group, kind) {
        ("", "Pod") => (pod::COLUMNS, pod::cells),
        ("apps", "Deployment") => (DEPLOYMENT, deployment),
        ("apps", "ReplicaSet") => (REPLICA_SET, replica_set),
        ("batch", "Job") => (JOB, super::job::cells),
        ("", "Service") => (SERVICE, service),
        ("", "Node") => (NODE, node),
        ("", "Namespace") => (NAMESPACE, namespace),
        ("", "Event") => (EVENT, event),
        ("", "ConfigMap") => (CONFIG_MAP, config_map),
        ("", "Secret") => (SECRET, secret),
        ("", "Endpoints") => (ENDPOINTS, endpoints),
        ("", "ServiceAccount") => (SERVICE_ACCOUNT, service_account),
        ("coordination.k8s.io", "Lease") => (LEASE, lease),
        ("discovery.k8s.io", "EndpointSlice") => (super::discovery::COLUMNS, super::discovery::cells),
        _ => (DEFAULT, default),
    };
    Printer { columns, cells }
}

pub(super) fn name(object: &Value) -> Value {
    json!(text(object, "/metadata/name"))
}

pub(super) fn created(object: &Value, now: Timestamp) -> Value {
    json!(age(object, "/metadata/creationTimestamp", now))
}

/// Container names, images and the selector string of a workload's pod template.
pub(super) fn template_cells(object: &Value) -> [Value; 3] {
    let containers = list(object, "/spec/template/spec/containers");
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    let selector = object.pointer("/spec/selector").map(label_selector).unwrap_or_default();
    [json!(names.join(",")), json!(images.join(",")), json!(selector)]
}

/// Formats a LabelSelector as a selector string (`app=web,tier in (a,b)`).
pub(crate) fn label_selector(selector: &Value) -> String {
    let mut parts: Vec<String> = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|labels| labels.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    for expression in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = text(expression, "/key");
        let values: Vec<&str> = list(expression, "/values").iter().filter_map(Value::as_str).collect();
        let part = match text(expression, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        };
        parts.push(part);
    }
    parts.sort();
    parts.join(",")
}

fn deployment(object: &Value, now: Timestamp) -> Vec<Value> {
    let desired = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let ready = integer(object, "/status/readyReplicas");
    let mut cells = vec![
        name(object),
        json!(format!("{ready}/{desired}")),
        json!(integer(object, "/status/updatedReplicas")),
        json!(integer(object, "/status/availableReplicas")),
        created(object, now),
    ];
    cells.extend(template_cells(object));
    cells
}

fn replica_set(object: &Value, now: Timestamp) -> Vec<Value> {
    let desired = object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let mut cells = vec![
        name(object),
        json!(desired),
        json!(integer(object, "/status/replicas")),
        json!(integer(object, "/status/readyReplicas")),
        created(object, now),
    ];
    cells.extend(template_cells(object));
    cells
}

fn service(object: &Value, now: Timestamp) -> Vec<Value> {
    let kind = text(object, "/spec/type");
    let kind = if kind.is_empty() { "ClusterIP" } else { kind };
    let external_ips: Vec<&str> = list(object, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    let external = match kind {
        "LoadBalancer" => {
            let mut addresses: Vec<&str> = list(object, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| if text(i, "/ip").is_empty() { text(i, "/hostname") } else { text(i, "/ip") })
                .collect();
            addresses.extend(&external_ips);
            if addresses.is_empty() { "<pending>".to_string() } else { addresses.join(",") }
        }
        "ExternalName" => text(object, "/spec/externalName").to_string(),
        _ => or_none(&external_ips.join(",")),
    };
    let ports: Vec<String> = list(object, "/spec/ports")
        .iter()
        .map(|p| {
            let protocol = if text(p, "/protocol").is_empty() { "TCP" } else { text(p, "/protocol") };
            match integer(p, "/nodePort") {
                0 => format!("{}/{protocol}", integer(p, "/port")),
                node_port => format!("{}:{node_port}/{protocol}", integer(p, "/port")),
            }
        })
        .collect();
    vec![
        name(object),
        json!(kind),
        json!(or_none(text(object, "/spec/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        created(object, now),
        json!(or_none(&label_map(object.pointer("/spec/selector")))),
    ]
}

/// Formats a label map as `a=b,c=d`, sorted by key.
fn label_map(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    pairs.sort();
    pairs.join(",")
}

fn node(object: &Value, now: Timestamp) -> Vec<Value> {
    let ready = list(object, "/status/conditions").iter().find(|c| text(c, "/type") == "Ready");
    let mut status = vec![match ready.map(|c| text(c, "/status")) {
        Some("True") => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if object.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let mut roles: Vec<String> = Vec::new();
    for (key, value) in object.pointer("/metadata/labels").and_then(Value::as_object).into_iter().flatten() {
        if let Some(role) = key.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
            roles.push(role.to_string());
        } else if key == "kubernetes.io/role" && value.as_str().is_some_and(|v| !v.is_empty()) {
            roles.push(value.as_str().unwrap_or_default().to_string());
        }
    }
    roles.sort();
    let address = |kind: &str| {
        let found = list(object, "/status/addresses").iter().find(|a| text(a, "/type") == kind);
        or_none(found.map(|a| text(a, "/address")).unwrap_or_default())
    };
    let info = |field: &str| {
        let value = text(object, &format!("/status/nodeInfo/{field}"));
        if value.is_empty() { "<unknown>".to_string() } else { value.to_string() }
    };
    vec![
        name(object),
        json!(status.join(",")),
        json!(or_none(&roles.join(","))),
        created(object, now),
        json!(text(object, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn namespace(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(object), json!(text(object, "/status/phase")), created(object, now)]
}

fn event(object: &Value, now: Timestamp) -> Vec<Value> {
    let first = match object.pointer("/firstTimestamp").and_then(Value::as_str) {
        Some(_) => age(object, "/firstTimestamp", now),
        None => age(object, "/eventTime", now),
    };
    let mut last = match object.pointer("/lastTimestamp").and_then(Value::as_str) {
        Some(_) => age(object, "/lastTimestamp", now),
        None => first.clone(),
    };
    let mut count = integer(object, "/count");
    if object.pointer("/series").is_some_and(|s| !s.is_null()) {
        last = age(object, "/series/lastObservedTime", now);
        count = integer(object, "/series/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = text(object, "/involvedObject/kind").to_lowercase();
    let target = match text(object, "/involvedObject/name") {
        "" => kind,
        involved => format!("{kind}/{involved}"),
    };
    let mut source = text(object, "/source/component").to_string();
    if source.is_empty() {
        source = text(object, "/reportingComponent").to_string();
    }
    let host = text(object, "/source/host");
    if !host.is_empty() {
        source = format!("{source}, {host}");
    }
    vec![
        json!(last),
        json!(text(object, "/type")),
        json!(text(object, "/reason")),
        json!(target),
        json!(text(object, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(object, "/message").trim()),
        json!(first),
        json!(count),
        name(object),
    ]
}

fn entry_count(object: &Value, fields: &[&str]) -> i64 {
    let count: usize = fields
        .iter()
        .map(|f| object.get(*f).and_then(Value::as_object).map_or(0, |m| m.len()))
        .sum();
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn config_map(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(object), json!(entry_count(object, &["data", "binaryData"])), created(object, now)]
}

fn secret(object: &Value, now: Timestamp) -> Vec<Value> {
    let kind = text(object, "/type");
    let kind = if kind.is_empty() { "Opaque" } else { kind };
    vec![name(object), json!(kind), json!(entry_count(object, &["data", "stringData"])), created(object, now)]
}

/// Up to three `ip:port` endpoints, then ` + N more...`, as the reference printer shows.
fn endpoints(object: &Value, now: Timestamp) -> Vec<Value> {
    const LISTED: usize = 3;
    let subsets = list(object, "/subsets");
    let mut listed = Vec::new();
    let mut count = 0;
    for subset in subsets {
        let addresses: Vec<&str> = list(subset, "/addresses").iter().map(|a| text(a, "/ip")).collect();
        let ports = list(subset, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            listed.extend(addresses.iter().map(|ip| ip.to_string()));
            continue;
        }
        for port in ports {
            count += addresses.len();
            for ip in &addresses {
                let number = integer(port, "/port");
                listed.push(if ip.contains(':') { format!("[{ip}]:{number}") } else { format!("{ip}:{number}") });
            }
        }
    }
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else if count > LISTED {
        format!("{} + {} more...", listed[..LISTED].join(","), count - LISTED)
    } else {
        listed.join(",")
    };
    vec![name(object), json!(cell), created(object, now)]
}

fn service_account(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(object), json!(list(object, "/secrets").len()), created(object, now)]
}

fn lease(object: &Value, now: Timestamp) -> Vec<Value> {
    vec![name(object), json!(text(object, "/spec/holderIdentity")), created(object, now)]
}

fn default(object: &Value, _now: Timestamp) -> Vec<Value> {
    vec![name(object), json!(text(object, "/metadata/creationTimestamp"))]
}
