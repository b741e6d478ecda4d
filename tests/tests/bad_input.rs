//! Invalid manifests: each gets the right HTTP status, a Kubernetes Status body that names
//! the bad field, and leaves nothing behind in the store.

use capstan_e2e::{Cluster, ClusterOptions};
use serde_json::Value;

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const SERVICES: &str = "/api/v1/namespaces/default/services";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const NAMESPACES: &str = "/api/v1/namespaces";
const STRICT: &str = "?fieldValidation=Strict";

/// One invalid request and what the server must answer.
struct Case {
    name: &'static str,
    collection: &'static str,
    body: String,
    code: u16,
    reason: &'static str,
    /// A field path that must appear in `details.causes[].field` (422) or in the message (400).
    field: &'static str,
}

fn pod(name: &str, spec: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}"}},"spec":{spec}}}"#)
}

fn container(extra: &str) -> String {
    format!(r#"{{"containers":[{{"name":"main","image":"host","command":["sleep","100"]{extra}}}]}}"#)
}

fn deployment(name: &str, spec: &str) -> String {
    format!(r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{name}"}},"spec":{spec}}}"#)
}

fn deployment_spec(extra: &str, template_labels: &str, pod_spec: &str) -> String {
    format!(
        r#"{{"selector":{{"matchLabels":{{"app":"x"}}}},"template":{{"metadata":{{"labels":{template_labels}}},"spec":{pod_spec}}}{extra}}}"#
    )
}

fn service(name: &str, ports: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{{"selector":{{"app":"x"}},"ports":{ports}}}}}"#)
}

fn cases() -> Vec<Case> {
    let ok_pod = container("");
    let labels = r#"{"app":"x"}"#;
    let invalid = |name, collection, body, field| Case { name, collection, body, code: 422, reason: "Invalid", field };
    let bad_request = |name, collection, body, field| Case { name, collection, body, code: 400, reason: "BadRequest", field };
    vec![
        invalid("neg-replicas", DEPLOYMENTS, deployment("neg-replicas", &deployment_spec(r#","replicas":-1"#, labels, &ok_pod)), "spec.replicas"),
        invalid("bad-label-value", PODS, format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"bad-label-value","labels":{{"app":"-bad-"}}}},"spec":{ok_pod}}}"#), "metadata.labels"),
        invalid("bad-label-key", PODS, format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"bad-label-key","labels":{{"bad key":"x"}}}},"spec":{ok_pod}}}"#), "metadata.labels"),
        invalid("dup-containers", PODS, pod("dup-containers", r#"{"containers":[{"name":"a","image":"host"},{"name":"a","image":"host"}]}"#), "spec.containers[1].name"),
        invalid("dup-ports", PODS, pod("dup-ports", &container(r#","ports":[{"containerPort":80},{"containerPort":80}]"#)), "spec.containers[0].ports[1]"),
        invalid("no-containers", PODS, pod("no-containers", r#"{"containers":[]}"#), "spec.containers"),
        invalid("selector-mismatch", DEPLOYMENTS, deployment("selector-mismatch", &deployment_spec("", r#"{"app":"y"}"#, &ok_pod)), "spec.template.metadata.labels"),
        invalid("bad-container-name", PODS, pod("bad-container-name", r#"{"containers":[{"name":"Web_1","image":"host"}]}"#), "spec.containers[0].name"),
        invalid("port-too-big", PODS, pod("port-too-big", &container(r#","ports":[{"containerPort":70000}]"#)), "spec.containers[0].ports[0].containerPort"),
        invalid("port-zero", PODS, pod("port-zero", &container(r#","ports":[{"containerPort":0}]"#)), "spec.containers[0].ports[0].containerPort"),
        invalid("no-image", PODS, pod("no-image", r#"{"containers":[{"name":"main"}]}"#), "spec.containers[0].image"),
        invalid("bad-restart-policy", PODS, pod("bad-restart-policy", &format!(r#"{{"restartPolicy":"Sometimes",{}"#, &ok_pod[1..])), "spec.restartPolicy"),
        invalid("bad-quantity", PODS, pod("bad-quantity", &container(r#","resources":{"requests":{"cpu":"lots"}}"#)), "spec.containers[0].resources.requests[cpu]"),
        invalid("request-over-limit", PODS, pod("request-over-limit", &container(r#","resources":{"requests":{"memory":"2Gi"},"limits":{"memory":"1Gi"}}"#)), "spec.containers[0].resources.requests"),
        invalid("two-handlers", PODS, pod("two-handlers", &container(r#","livenessProbe":{"exec":{"command":["true"]},"tcpSocket":{"port":80}}"#)), "spec.containers[0].livenessProbe"),
        invalid("no-handler", PODS, pod("no-handler", &container(r#","readinessProbe":{"periodSeconds":5}"#)), "spec.containers[0].readinessProbe"),
        invalid("negative-period", PODS, pod("negative-period", &container(r#","readinessProbe":{"exec":{"command":["true"]},"periodSeconds":-1}"#)), "spec.containers[0].readinessProbe.periodSeconds"),
        invalid("liveness-success", PODS, pod("liveness-success", &container(r#","livenessProbe":{"exec":{"command":["true"]},"successThreshold":2}"#)), "spec.containers[0].livenessProbe.successThreshold"),
        invalid("bad-env-name", PODS, pod("bad-env-name", &container(r#","env":[{"name":"BAD=NAME","value":"x"}]"#)), "spec.containers[0].env[0].name"),
        invalid("missing-volume", PODS, pod("missing-volume", &container(r#","volumeMounts":[{"name":"data","mountPath":"/data"}]"#)), "spec.containers[0].volumeMounts[0].name"),
        invalid("Bad.Pod", PODS, pod("Bad.Pod", &ok_pod), "metadata.name"),
        invalid("bad-cm", CONFIGMAPS, r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bad-cm"},"data":{"bad key":"x"}}"#.to_string(), "data[bad key]"),
        invalid("Bad_NS", NAMESPACES, r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"Bad_NS"}}"#.to_string(), "metadata.name"),
        invalid("1web", SERVICES, service("1web", r#"[{"port":80}]"#), "metadata.name"),
        invalid("dup-svc-ports", SERVICES, service("dup-svc-ports", r#"[{"name":"a","port":80},{"name":"b","port":80}]"#), "spec.ports[1]"),
        invalid("svc-port-zero", SERVICES, service("svc-port-zero", r#"[{"port":0}]"#), "spec.ports[0].port"),
        invalid("no-selector", DEPLOYMENTS, deployment("no-selector", &format!(r#"{{"template":{{"metadata":{{"labels":{labels}}},"spec":{ok_pod}}}}}"#)), "spec.selector"),
        invalid("never-restart", DEPLOYMENTS, deployment("never-restart", &deployment_spec("", labels, &format!(r#"{{"restartPolicy":"Never",{}"#, &ok_pod[1..]))), "spec.template.spec.restartPolicy"),
        invalid("zero-surge", DEPLOYMENTS, deployment("zero-surge", &deployment_spec(r#","strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":0,"maxUnavailable":0}}"#, labels, &ok_pod)), "spec.strategy.rollingUpdate.maxUnavailable"),
        invalid("blue-strategy", DEPLOYMENTS, deployment("blue-strategy", &deployment_spec(r#","strategy":{"type":"BlueGreen"}"#, labels, &ok_pod)), "spec.strategy.type"),
        bad_request("unknown-field", DEPLOYMENTS, deployment("unknown-field", &deployment_spec(r#","bogus":1"#, labels, &ok_pod)), "spec.bogus"),
        bad_request("nested-unknown", PODS, pod("nested-unknown", &container(r#","imagePullPolcy":"Always""#)), "spec.containers[0].imagePullPolcy"),
        bad_request("duplicate-field", DEPLOYMENTS, r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"duplicate-field"},"spec":{"replicas":1,"replicas":2}}"#.to_string(), "replicas"),
        bad_request("malformed-json", DEPLOYMENTS, r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"malformed-json""#.to_string(), ""),
        bad_request("wrong-version", DEPLOYMENTS, r#"{"apiVersion":"apps/v2","kind":"Deployment","metadata":{"name":"wrong-version"}}"#.to_string(), ""),
        bad_request("wrong-kind", DEPLOYMENTS, pod("wrong-kind", &ok_pod), ""),
        bad_request("other-namespace", PODS, format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"other-namespace","namespace":"kube-system"}},"spec":{ok_pod}}}"#), ""),
    ]
}

fn check(cluster: &Cluster, case: &Case, content_type: &str, body: &str) {
    let path = format!("{}{STRICT}", case.collection);
    let (code, text) = cluster.request("POST", &path, content_type, body);
    assert_eq!(code, case.code, "{}: expected HTTP {}, got {code}: {text}", case.name, case.code);
    let status: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: the error body is not JSON ({e}): {text}", case.name));
    assert_eq!(status["kind"], "Status", "{}: {text}", case.name);
    assert_eq!(status["reason"], case.reason, "{}: {text}", case.name);
    assert_eq!(status["code"], case.code, "{}: {text}", case.name);
    if case.code == 422 {
        let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
        assert!(
            causes.iter().any(|c| c["field"].as_str().is_some_and(|f| f.starts_with(case.field))),
            "{}: no cause names {}: {text}", case.name, case.field
        );
    } else {
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(case.field), "{}: message lacks {:?}: {message}", case.name, case.field);
    }
}

#[test]
fn invalid_manifests_are_rejected_and_leave_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    let cases = cases();
    assert!(cases.len() >= 30, "the table must keep at least 30 cases");
    for case in &cases {
        check(&cluster, case, "application/json", &case.body);
    }

    // Malformed YAML is a 400 too.
    let (code, text) = cluster.request("POST", PODS, "application/yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: [oops\n");
    assert_eq!(code, 400, "malformed YAML: {text}");

    // Nothing was stored: every name is absent, and the collections are empty.
    for (resource, collection) in [("pods", PODS), ("deployments", DEPLOYMENTS), ("services", SERVICES), ("configmaps", CONFIGMAPS)] {
        let listed = cluster.kubectl(&["get", resource, "-o", "name"]);
        let leftovers: Vec<&str> = listed.lines().filter(|l| !l.ends_with("/kubernetes") && !l.contains("kube-root-ca")).collect();
        assert!(leftovers.is_empty(), "{collection} kept {leftovers:?}");
    }
    let namespaces = cluster.kubectl(&["get", "namespaces", "-o", "name"]);
    assert!(!namespaces.contains("Bad_NS"), "namespaces: {namespaces}");
}

#[test]
fn kubectl_shows_field_errors() {
    let cluster = Cluster::start(ClusterOptions::default());
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken}\nspec:\n  replicas: -2\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec:\n      containers: [{name: main, image: host}]\n";
    let error = cluster.kubectl_stdin(&["apply", "-f", "-"], manifest).unwrap_err();
    assert!(error.contains(r#"The Deployment "broken" is invalid"#), "kubectl printed: {error}");
    assert!(error.contains("spec.replicas"), "kubectl printed: {error}");
    assert!(error.contains("spec.template.metadata.labels"), "kubectl printed: {error}");

    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: strict}\ndata: {a: b}\nbogus: true\n";
    let error = cluster.kubectl_stdin(&["apply", "-f", "-"], unknown).unwrap_err();
    assert!(error.contains(r#"unknown field "bogus""#), "kubectl printed: {error}");
    assert!(cluster.try_kubectl(&["get", "configmap", "strict"]).is_err(), "a rejected object was stored");

    // a JSON patch whose path does not exist names the path
    cluster.kubectl_stdin(&["apply", "-f", "-"], "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: patched}\ndata: {a: b}\n").unwrap();
    let patch = r#"[{"op":"replace","path":"/data/nope/x","value":"1"}]"#;
    let error = cluster.try_kubectl(&["patch", "configmap", "patched", "--type=json", "-p", patch]).unwrap_err();
    assert!(error.contains("/data/nope/x"), "kubectl printed: {error}");
}
