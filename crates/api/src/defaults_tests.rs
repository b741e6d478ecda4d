use super::*;
use crate::resources::lookup_kind;

fn defaulted(group: &str, kind: &str, mut object: Value) -> Value {
    apply_defaults(lookup_kind(group, kind).unwrap(), &mut object);
    object
}

fn template() -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}],
            "readinessProbe": {"httpGet": {"port": 80}},
        }]},
    })
}

#[test]
fn pod_defaults_match_kubernetes() {
    let pod = defaulted("", "Pod", json!({"spec": template()["spec"].clone()}));
    let spec = &pod["spec"];
    let expected = [
        ("/restartPolicy", json!("Always")),
        ("/dnsPolicy", json!("ClusterFirst")),
        ("/schedulerName", json!("default-scheduler")),
        ("/terminationGracePeriodSeconds", json!(30)),
        ("/securityContext", json!({})),
        ("/enableServiceLinks", json!(true)),
        ("/containers/0/terminationMessagePath", json!("/dev/termination-log")),
        ("/containers/0/terminationMessagePolicy", json!("File")),
        ("/containers/0/imagePullPolicy", json!("IfNotPresent")),
        ("/containers/0/ports/0/protocol", json!("TCP")),
        ("/containers/0/readinessProbe/timeoutSeconds", json!(1)),
        ("/containers/0/readinessProbe/periodSeconds", json!(10)),
        ("/containers/0/readinessProbe/successThreshold", json!(1)),
        ("/containers/0/readinessProbe/failureThreshold", json!(3)),
        ("/containers/0/readinessProbe/httpGet/scheme", json!("HTTP")),
        ("/containers/0/readinessProbe/httpGet/path", json!("/")),
    ];
    for (pointer, value) in expected {
        assert_eq!(spec.pointer(pointer), Some(&value), "{pointer}");
    }
}

#[test]
fn image_pull_policy_follows_tag() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("localhost:5000/nginx", "Always"),
        ("localhost:5000/nginx:1.0", "IfNotPresent"),
        ("nginx@sha256:abcd", "IfNotPresent"),
        ("host", "Always"),
    ];
    for (image, policy) in cases {
        assert_eq!(image_pull_policy(image), policy, "{image}");
    }
}

#[test]
fn set_fields_are_kept() {
    let pod = defaulted("", "Pod", json!({"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Never",
                        "resources": {"limits": {"cpu": "1"}, "requests": {"memory": "1Mi"}}}],
    }}));
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
    assert_eq!(pod["spec"]["containers"][0]["resources"]["requests"], json!({"memory": "1Mi", "cpu": "1"}));
}

#[test]
fn deployment_and_replica_set_templates_match() {
    let deployment = defaulted("apps", "Deployment", json!({"spec": {"template": template()}}));
    let replica_set = defaulted("apps", "ReplicaSet", json!({"spec": {"template": template()}}));
    assert_eq!(deployment["spec"]["template"], replica_set["spec"]["template"]);
    assert!(deployment["spec"]["template"]["spec"].get("enableServiceLinks").is_none());
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(replica_set["spec"]["replicas"], 1);
}

#[test]
fn recreate_strategy_gets_no_rolling_update() {
    let deployment = defaulted("apps", "Deployment", json!({"spec": {"strategy": {"type": "Recreate"}}}));
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn defaulting_twice_changes_nothing() {
    let once = defaulted("apps", "Deployment", json!({"spec": {"template": template()}}));
    let twice = defaulted("apps", "Deployment", once.clone());
    assert_eq!(once, twice);
}

#[test]
fn service_secret_namespace_defaults() {
    let service = defaulted("", "Service", json!({"spec": {"ports": [{"port": 80}, {"port": 81, "targetPort": "http"}]}}));
    let spec = &service["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
    assert_eq!(spec["ports"][1]["targetPort"], "http");
    assert!(spec.get("sessionAffinityConfig").is_none(), "no affinity config without ClientIP");

    let sticky = defaulted("", "Service", json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}));
    assert_eq!(sticky["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"], 10_800);

    let secret = defaulted("", "Secret", json!({"metadata": {"name": "s"}}));
    assert_eq!(secret["type"], "Opaque");

    let namespace = defaulted("", "Namespace", json!({"metadata": {"name": "n"}}));
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(namespace["status"]["phase"], "Active");
}

#[test]
fn malformed_objects_are_left_alone() {
    let mut odd = json!({"spec": "not an object"});
    apply_defaults(lookup_kind("apps", "Deployment").unwrap(), &mut odd);
    assert_eq!(odd, json!({"spec": "not an object"}));
}
