use jiff::Timestamp;
use serde_json::{Value, json};

use super::*;
use crate::resources::lookup_kind;

const NOW: &str = "2025-01-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn table(group: &str, kind: &str, object: Value) -> Value {
    let resource = lookup_kind(group, kind).unwrap();
    to_table_at(resource, &[object], IncludeObject::Metadata, true, "42", now())
}

fn cells(group: &str, kind: &str, object: Value) -> Vec<Value> {
    table(group, kind, object)["rows"][0]["cells"].as_array().unwrap().clone()
}

fn column_names(group: &str, kind: &str) -> Vec<String> {
    let table = table(group, kind, json!({"metadata": {"name": "x"}}));
    table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

fn pod(status: Value) -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "default", "creationTimestamp": "2025-01-01T11:57:00Z"},
        "spec": {"nodeName": "n1", "containers": [{"name": "web", "image": "host"}]},
        "status": status,
    })
}

#[test]
fn human_duration_matches_kubectl() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (5, "5s"),
        (119, "119s"),
        (182, "3m2s"),
        (240, "4m"),
        (900, "15m"),
        (3 * 3600 + 180, "3h3m"),
        (20 * 3600, "20h"),
        (2 * 86400, "2d"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (40 * 86400, "40d"),
        (3 * 365 * 86400 + 5 * 86400, "3y5d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (seconds, want) in cases {
        assert_eq!(human_duration(seconds), want, "{seconds}s");
    }
}

#[test]
fn pod_status_reasons() {
    let running = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "state": {"running": {}}}]});
    let creating = json!({"phase": "Pending",
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
                               "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    let crash = json!({"phase": "Running",
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 4,
                               "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                               "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-01-01T11:59:30Z"}}}]});
    let completed = json!({"phase": "Succeeded",
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]});
    let error = json!({"phase": "Failed",
        "containerStatuses": [{"name": "web", "ready": false, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 2, "reason": "Error"}}}]});
    let no_reason = json!({"phase": "Failed",
        "containerStatuses": [{"name": "web", "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}]});
    let pending = json!({"phase": "Pending"});
    let cases = [
        (running, "1/1", "Running", "0"),
        (creating, "0/1", "ContainerCreating", "0"),
        (crash, "0/1", "CrashLoopBackOff", "4 (30s ago)"),
        (completed, "0/1", "Completed", "0"),
        (error, "0/1", "Error", "0"),
        (no_reason, "0/1", "ExitCode:3", "0"),
        (pending, "0/1", "Pending", "0"),
    ];
    for (status, ready, reason, restarts) in cases {
        let row = cells("", "Pod", pod(status));
        assert_eq!(row[1], ready, "ready for {reason}");
        assert_eq!(row[2], reason);
        assert_eq!(row[3], restarts, "restarts for {reason}");
        assert_eq!(row[4], "3m", "age for {reason}");
    }
}

#[test]
fn pod_init_states() {
    let mut object = pod(json!({"phase": "Pending",
        "initContainerStatuses": [
            {"name": "a", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
            {"name": "b", "restartCount": 0, "state": {"running": {}}},
        ]}));
    object["spec"]["initContainers"] = json!([{"name": "a"}, {"name": "b"}]);
    assert_eq!(cells("", "Pod", object.clone())[2], "Init:1/2");

    object["status"]["initContainerStatuses"][1]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff"}});
    assert_eq!(cells("", "Pod", object.clone())[2], "Init:CrashLoopBackOff");

    object["status"]["initContainerStatuses"][1]["state"] = json!({"terminated": {"exitCode": 7}});
    assert_eq!(cells("", "Pod", object)[2], "Init:ExitCode:7");
}

#[test]
fn pod_terminating_and_wide_cells() {
    let mut object = pod(json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}));
    object["metadata"]["deletionTimestamp"] = json!("2025-01-01T11:59:00Z");
    object["spec"]["readinessGates"] = json!([{"conditionType": "example.com/gate"}]);
    let row = cells("", "Pod", object);
    assert_eq!(row[2], "Terminating");
    assert_eq!(row[5], "10.0.0.5");
    assert_eq!(row[6], "n1");
    assert_eq!(row[7], "<none>");
    assert_eq!(row[8], "0/1");
}

#[test]
fn columns_per_kind() {
    let cases: [(&str, &str, &[&str]); 6] = [
        ("", "Pod", &["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]),
        ("apps", "Deployment", &["Name", "Ready", "Up-to-date", "Available", "Age", "Containers", "Images", "Selector"]),
        ("apps", "ReplicaSet", &["Name", "Desired", "Current", "Ready", "Age", "Containers", "Images", "Selector"]),
        ("", "Service", &["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]),
        ("", "Namespace", &["Name", "Status", "Age"]),
        ("node.k8s.io", "RuntimeClass", &["Name", "Created At"]),
    ];
    for (group, kind, want) in cases {
        assert_eq!(column_names(group, kind), want, "{kind}");
    }
}

#[test]
fn every_row_matches_its_columns() {
    for resource in crate::resources::RESOURCES {
        let table = to_table_at(resource, &[json!({})], IncludeObject::None, true, "1", now());
        let columns = table["columnDefinitions"].as_array().unwrap().len();
        let cells = table["rows"][0]["cells"].as_array().unwrap().len();
        assert_eq!(columns, cells, "{}", resource.kind);
    }
}

#[test]
fn deployment_cells() {
    let deployment = json!({
        "metadata": {"name": "web", "creationTimestamp": "2025-01-01T11:59:55Z"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"spec": {"containers": [{"name": "web", "image": "host"}, {"name": "log", "image": "busybox"}]}}},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    });
    let row = cells("apps", "Deployment", deployment);
    let want = json!(["web", "2/3", 3, 2, "5s", "web,log", "host,busybox", "app=web"]);
    assert_eq!(Value::Array(row), want);
}

#[test]
fn service_cells() {
    let service = json!({
        "metadata": {"name": "web", "creationTimestamp": "2025-01-01T10:00:00Z"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "selector": {"app": "web"},
                 "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]},
    });
    let row = cells("", "Service", service);
    assert_eq!(Value::Array(row), json!(["web", "NodePort", "10.96.0.10", "<none>", "80:30080/TCP,53/UDP", "120m", "app=web"]));
}

#[test]
fn node_cells() {
    let node = json!({
        "metadata": {"name": "n1", "creationTimestamp": "2024-12-30T12:00:00Z",
                     "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "spec": {"unschedulable": true},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                   "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "Debian", "kernelVersion": "6.1",
                                "containerRuntimeVersion": "process://0.1"}},
    });
    let row = cells("", "Node", node);
    let want = json!(["n1", "Ready,SchedulingDisabled", "control-plane", "2d", "v1.33.0", "10.0.0.1", "<none>",
                      "Debian", "6.1", "process://0.1"]);
    assert_eq!(Value::Array(row), want);
}

#[test]
fn small_kinds_cells() {
    let event = json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Scheduled",
        "message": "assigned default/web to n1 ", "involvedObject": {"kind": "Pod", "name": "web"},
        "source": {"component": "scheduler"}, "firstTimestamp": "2025-01-01T11:50:00Z",
        "lastTimestamp": "2025-01-01T11:59:00Z", "count": 2});
    let row = cells("", "Event", event);
    assert_eq!(Value::Array(row), json!(["60s", "Normal", "Scheduled", "pod/web", "", "scheduler",
        "assigned default/web to n1", "10m", 2, "web.1"]));

    let config_map = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}});
    assert_eq!(cells("", "ConfigMap", config_map)[1], 3);
    let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    assert_eq!(cells("", "Secret", secret)[1..3], [json!("kubernetes.io/tls"), json!(2)]);
    let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "server-1"}});
    assert_eq!(cells("coordination.k8s.io", "Lease", lease)[1], "server-1");
    let account = json!({"metadata": {"name": "default"}, "secrets": [{"name": "t"}]});
    assert_eq!(cells("", "ServiceAccount", account)[1], 1);
}

#[test]
fn endpoints_shows_three_then_more() {
    let addresses: Vec<Value> = (1..=5).map(|i| json!({"ip": format!("10.0.0.{i}")})).collect();
    let endpoints = json!({"metadata": {"name": "web"}, "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]});
    assert_eq!(cells("", "Endpoints", endpoints)[1], "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...");
    let empty = json!({"metadata": {"name": "web"}});
    assert_eq!(cells("", "Endpoints", empty)[1], "<none>");
}

#[test]
fn include_object_modes() {
    let resource = lookup_kind("", "ConfigMap").unwrap();
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}}, "data": {}});
    let metadata = to_table_at(resource, std::slice::from_ref(&object), IncludeObject::Metadata, true, "7", now());
    assert_eq!(metadata["kind"], "Table");
    assert_eq!(metadata["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(metadata["metadata"]["resourceVersion"], "7");
    let partial = &metadata["rows"][0]["object"];
    assert_eq!(partial["kind"], "PartialObjectMetadata");
    assert_eq!(partial["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(partial["metadata"]["labels"]["a"], "b");
    assert!(partial.get("data").is_none());

    let full = to_table_at(resource, std::slice::from_ref(&object), IncludeObject::Object, false, "7", now());
    assert_eq!(full["rows"][0]["object"], object);
    assert_eq!(full["columnDefinitions"], json!([]));

    let none = to_table_at(resource, &[object], IncludeObject::None, true, "7", now());
    assert!(none["rows"][0].get("object").is_none());
}
