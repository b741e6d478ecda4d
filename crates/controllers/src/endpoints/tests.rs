use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::slices::{self, CONTROLLER_NAME, MANAGED_BY_LABEL, MAX_ENDPOINTS_PER_SLICE, SERVICE_NAME_LABEL};
use super::{backends, legacy};

fn service(spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid", "labels": {"team": "a"}},
        "spec": spec,
    }))
    .expect("test Service is valid")
}

fn web_service() -> Service {
    service(json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10", "ipFamilies": ["IPv4"],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                             {"name": "metrics", "port": 9090, "protocol": "TCP", "targetPort": 9090}]}))
}

/// Builds a running pod `name` at `ip` with label app=web. `ready` sets its Ready
/// condition and `ports` its container ports as (name, number).
fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Arc<Pod> {
    let ports: Vec<Value> = ports.iter().map(|(n, p)| json!({"name": n, "containerPort": p, "protocol": "TCP"})).collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "main", "image": "host", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .expect("test Pod is valid"),
    )
}

fn addresses(content: &slices::SliceContent) -> Vec<&str> {
    content.endpoints.iter().map(|e| e.addresses[0].as_str()).collect()
}

fn port_numbers(content: &slices::SliceContent) -> Vec<(String, i32)> {
    content.ports.iter().map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or_default())).collect()
}

#[test]
fn ready_pods_share_one_slice() {
    let pods = vec![pod("b", "10.0.0.2", true, &[("http", 8080)]), pod("a", "10.0.0.1", true, &[("http", 8080)])];
    let desired = slices::desired(&web_service(), &pods);
    assert_eq!(desired.len(), 1);
    assert_eq!(desired[0].address_type, "IPv4");
    assert_eq!(addresses(&desired[0]), ["10.0.0.1", "10.0.0.2"], "sorted by address");
    assert_eq!(port_numbers(&desired[0]), [("http".to_string(), 8080), ("metrics".to_string(), 9090)]);
    let endpoint = &desired[0].endpoints[0];
    assert_eq!(endpoint.node_name.as_deref(), Some("node-1"));
    let target = endpoint.target_ref.as_ref().expect("targetRef");
    assert_eq!((target.kind.as_deref(), target.name.as_deref(), target.uid.as_deref()), (Some("Pod"), Some("a"), Some("uid-a")));
}

#[test]
fn not_ready_pod_is_listed_not_ready() {
    let pods = vec![pod("a", "10.0.0.1", false, &[("http", 8080)])];
    let desired = slices::desired(&web_service(), &pods);
    let conditions = desired[0].endpoints[0].conditions.clone().expect("conditions");
    assert_eq!(conditions.ready, Some(false));
    assert_eq!(conditions.serving, Some(false));
    assert_eq!(conditions.terminating, Some(false));
}

#[test]
fn terminating_pod_is_serving_but_not_ready() {
    let mut terminating = Pod::clone(&pod("a", "10.0.0.1", true, &[("http", 8080)]));
    terminating.metadata.deletion_timestamp = serde_json::from_value(json!("2026-01-01T00:00:00Z")).ok();
    let desired = slices::desired(&web_service(), &[Arc::new(terminating.clone())]);
    let conditions = desired[0].endpoints[0].conditions.clone().expect("conditions");
    assert_eq!((conditions.ready, conditions.serving, conditions.terminating), (Some(false), Some(true), Some(true)));

    let endpoints = legacy::desired(&web_service(), &[Arc::new(terminating)]);
    assert!(endpoints.subsets.is_empty(), "legacy Endpoints leave terminating pods out");
}

#[test]
fn pod_without_named_port_gets_own_slice() {
    let pods = vec![pod("a", "10.0.0.1", true, &[("http", 8080)]), pod("b", "10.0.0.2", true, &[])];
    let desired = slices::desired(&web_service(), &pods);
    assert_eq!(desired.len(), 2, "one slice per resolved port set");
    let with_http = desired.iter().find(|s| s.ports.len() == 2).expect("slice with both ports");
    let without = desired.iter().find(|s| s.ports.len() == 1).expect("slice without the named port");
    assert_eq!(addresses(with_http), ["10.0.0.1"]);
    assert_eq!(addresses(without), ["10.0.0.2"]);
    assert_eq!(port_numbers(without), [("metrics".to_string(), 9090)]);
}

#[test]
fn named_port_resolves_per_pod() {
    let pods = vec![pod("a", "10.0.0.1", true, &[("http", 8080)]), pod("b", "10.0.0.2", true, &[("http", 8081)])];
    let desired = slices::desired(&web_service(), &pods);
    let http_ports: Vec<i32> = desired.iter().map(|s| s.ports[0].port.unwrap_or_default()).collect();
    assert_eq!(desired.len(), 2);
    assert!(http_ports.contains(&8080), "{http_ports:?}");
    assert!(http_ports.contains(&8081), "{http_ports:?}");
}

#[test]
fn unlistable_pods_are_skipped() {
    let mut no_ip = Pod::clone(&pod("a", "10.0.0.1", true, &[]));
    let status = no_ip.status.as_mut().expect("status");
    status.pod_ip = None;
    status.pod_ips = None;
    let mut finished = Pod::clone(&pod("b", "10.0.0.2", false, &[]));
    finished.status.as_mut().expect("status").phase = Some("Succeeded".into());
    let mut other_labels = Pod::clone(&pod("c", "10.0.0.3", true, &[]));
    other_labels.metadata.labels = None;
    let pods: Vec<Arc<Pod>> = [no_ip, finished, other_labels].into_iter().map(Arc::new).collect();
    let desired = slices::desired(&web_service(), &pods);
    assert_eq!(desired.len(), 1, "one placeholder slice");
    assert!(desired[0].endpoints.is_empty());
    assert!(desired[0].ports.is_empty());
}

#[test]
fn large_group_is_split() {
    let pods: Vec<Arc<Pod>> = (0..MAX_ENDPOINTS_PER_SLICE + 5)
        .map(|i| pod(&format!("p{i}"), &format!("10.0.{}.{}", i / 200, i % 200 + 1), true, &[("http", 8080)]))
        .collect();
    let desired = slices::desired(&web_service(), &pods);
    let sizes: Vec<usize> = desired.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, [MAX_ENDPOINTS_PER_SLICE, 5]);
}

#[test]
fn headless_service_without_ports() {
    let headless = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
    let pods = vec![pod("a", "10.0.0.1", true, &[])];
    let desired = slices::desired(&headless, &pods);
    assert_eq!(addresses(&desired[0]), ["10.0.0.1"]);
    assert!(desired[0].ports.is_empty());
    assert_eq!(slices::labels(&headless).get(slices::HEADLESS_LABEL).map(String::as_str), Some(""));

    let endpoints = legacy::desired(&headless, &pods);
    assert_eq!(endpoints.subsets.len(), 1);
    assert!(endpoints.subsets[0].ports.is_none());
}

#[test]
fn hostname_needs_matching_subdomain() {
    let mut named = Pod::clone(&pod("a", "10.0.0.1", true, &[]));
    let spec = named.spec.as_mut().expect("spec");
    spec.hostname = Some("db-0".into());
    spec.subdomain = Some("web".into());
    assert_eq!(backends::hostname(&web_service(), &named).as_deref(), Some("db-0"));
    named.spec.as_mut().expect("spec").subdomain = Some("other".into());
    assert_eq!(backends::hostname(&web_service(), &named), None);
}

#[test]
fn legacy_endpoints_split_ready() {
    let pods = vec![pod("a", "10.0.0.1", true, &[("http", 8080)]), pod("b", "10.0.0.2", false, &[("http", 8080)])];
    let endpoints = legacy::desired(&web_service(), &pods);
    assert_eq!(endpoints.subsets.len(), 1);
    let subset = &endpoints.subsets[0];
    let ready: Vec<&str> = subset.addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
    let not_ready: Vec<&str> = subset.not_ready_addresses.iter().flatten().map(|a| a.ip.as_str()).collect();
    assert_eq!(ready, ["10.0.0.1"]);
    assert_eq!(not_ready, ["10.0.0.2"]);
    let ports: Vec<i32> = subset.ports.iter().flatten().map(|p| p.port).collect();
    assert_eq!(ports, [8080, 9090]);
    assert!(!endpoints.truncated);
}

#[test]
fn legacy_endpoints_publish_not_ready() {
    let mut publishing = web_service();
    publishing.spec.as_mut().expect("spec").publish_not_ready_addresses = Some(true);
    let pods = vec![pod("b", "10.0.0.2", false, &[("http", 8080)])];
    let endpoints = legacy::desired(&publishing, &pods);
    assert_eq!(endpoints.subsets[0].addresses.as_ref().map(Vec::len), Some(1));
    assert!(endpoints.subsets[0].not_ready_addresses.is_none());
}

#[test]
fn legacy_endpoints_truncate_over_capacity() {
    let pods: Vec<Arc<Pod>> = (0..legacy::MAX_ADDRESSES + 10)
        .map(|i| pod(&format!("p{i}"), &format!("10.1.{}.{}", i / 200, i % 200 + 1), i % 2 == 0, &[("http", 8080)]))
        .collect();
    let endpoints = legacy::desired(&web_service(), &pods);
    let subset = &endpoints.subsets[0];
    let ready = subset.addresses.as_ref().map_or(0, Vec::len);
    let not_ready = subset.not_ready_addresses.as_ref().map_or(0, Vec::len);
    assert!(endpoints.truncated);
    assert_eq!(ready + not_ready, legacy::MAX_ADDRESSES);
    assert_eq!(ready, (legacy::MAX_ADDRESSES + 10) / 2, "every ready address is kept");
}

/// A stored slice as the server returns it for `content`.
fn stored(name: &str, service: &Service, content: &slices::SliceContent) -> Arc<EndpointSlice> {
    let mut plan = slices::plan(service, vec![content.clone()], &[]);
    let mut slice = plan.create.remove(0);
    slice.metadata.name = Some(name.to_string());
    slice.metadata.uid = Some(format!("uid-{name}"));
    slice.metadata.resource_version = Some("7".into());
    Arc::new(slice)
}

#[test]
fn plan_keeps_up_to_date_slice() {
    let service = web_service();
    let desired = slices::desired(&service, &[pod("a", "10.0.0.1", true, &[("http", 8080)])]);
    let existing = vec![stored("web-abc", &service, &desired[0])];
    let plan = slices::plan(&service, desired, &existing);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn plan_updates_changed_slice_in_place() {
    let service = web_service();
    let before = slices::desired(&service, &[pod("a", "10.0.0.1", true, &[("http", 8080)])]);
    let existing = vec![stored("web-abc", &service, &before[0])];
    let after = slices::desired(&service, &[pod("a", "10.0.0.1", false, &[("http", 8080)])]);
    let plan = slices::plan(&service, after, &existing);
    assert!(plan.create.is_empty());
    assert!(plan.delete.is_empty());
    assert_eq!(plan.update.len(), 1);
    let updated = &plan.update[0];
    assert_eq!(updated.metadata.name.as_deref(), Some("web-abc"));
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("7"), "update is conditional");
    assert_eq!(updated.endpoints[0].conditions.as_ref().and_then(|c| c.ready), Some(false));
}

#[test]
fn plan_creates_and_deletes_extra_slices() {
    let service = web_service();
    let one = slices::desired(&service, &[pod("a", "10.0.0.1", true, &[("http", 8080)])]);
    let existing = vec![stored("web-1", &service, &one[0]), stored("web-2", &service, &one[0])];
    let plan = slices::plan(&service, one, &existing);
    assert_eq!(plan.delete.len(), 1, "the duplicate goes");
    assert!(plan.create.is_empty());
    assert!(plan.update.is_empty());

    let two_port_sets = slices::desired(
        &service,
        &[pod("a", "10.0.0.1", true, &[("http", 8080)]), pod("b", "10.0.0.2", true, &[])],
    );
    let plan = slices::plan(&service, two_port_sets, &[]);
    assert_eq!(plan.create.len(), 2);
    let created = &plan.create[0];
    assert_eq!(created.metadata.generate_name.as_deref(), Some("web-"));
    let labels = created.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(SERVICE_NAME_LABEL).map(String::as_str), Some("web"));
    assert_eq!(labels.get(MANAGED_BY_LABEL).map(String::as_str), Some(CONTROLLER_NAME));
    assert_eq!(labels.get("team").map(String::as_str), Some("a"), "service labels are copied");
    let owner = &created.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Service", "svc-uid", Some(true)));
}

#[test]
fn plan_deletes_slices_of_earlier_service() {
    let service = web_service();
    let desired = slices::desired(&service, &[pod("a", "10.0.0.1", true, &[("http", 8080)])]);
    let mut old = EndpointSlice::clone(&stored("web-old", &service, &desired[0]));
    old.metadata.owner_references.as_mut().expect("owner")[0].uid = "earlier-uid".into();
    let plan = slices::plan(&service, desired, &[Arc::new(old)]);
    assert_eq!(plan.delete.len(), 1);
    assert_eq!(plan.create.len(), 1);
}

#[test]
fn stored_endpoints_compare_equal() {
    let service = web_service();
    let desired = legacy::desired(&service, &[pod("a", "10.0.0.1", true, &[("http", 8080)])]);
    let labels = legacy::labels(&service);
    let mut stored = k8s_openapi::api::core::v1::Endpoints {
        subsets: Some(desired.subsets.clone()),
        ..Default::default()
    };
    assert!(!legacy::is_up_to_date(&stored, &desired, &labels), "labels missing");
    stored.metadata.labels = Some(labels.clone());
    assert!(legacy::is_up_to_date(&stored, &desired, &labels));
    assert!(legacy::is_managed(&stored));
}
