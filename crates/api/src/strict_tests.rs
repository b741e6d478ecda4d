use super::*;
use crate::resources::lookup_kind;
use serde_json::json;

#[test]
fn unknown_fields_are_listed_with_paths() {
    let deployments = lookup_kind("apps", "Deployment").unwrap();
    let object = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"any-key": "x"}, "annotations": {"a": "b"}, "bogusMeta": 1},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "host", "resources": {"limits": {"cpu": "1", "memory": 1024}}},
                    {"name": "b", "image": "host", "bogus": true, "ports": [{"containerPort": 80, "extra": 1}]},
                ]},
            },
        },
        "status": {"replicas": 1},
        "topLevel": {},
    });
    let unknown = unknown_fields(deployments, &object);
    assert_eq!(
        unknown,
        [
            "unknown field \"metadata.bogusMeta\"",
            "unknown field \"spec.template.spec.containers[1].bogus\"",
            "unknown field \"spec.template.spec.containers[1].ports[0].extra\"",
            "unknown field \"topLevel\"",
        ]
    );
}

#[test]
fn known_shapes_report_nothing() {
    let cases = [
        ("", "ConfigMap", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})),
        ("", "Secret", json!({"metadata": {"name": "s"}, "type": "Opaque", "stringData": {"k": "v"}})),
        ("", "Service", json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80, "targetPort": "http"}]}})),
        ("", "Pod", json!({"metadata": {"name": "p", "managedFields": [{"fieldsV1": {"f:spec": {}}}]}, "spec": {"containers": []}})),
        ("", "Event", json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod"}, "reason": "x", "source": {"component": "c"}})),
    ];
    for (group, kind, object) in cases {
        let resource = lookup_kind(group, kind).unwrap();
        assert_eq!(unknown_fields(resource, &object), Vec::<String>::new(), "{kind}");
    }
}

#[test]
fn unknown_spec_field_on_every_kind() {
    for resource in crate::resources::RESOURCES {
        let object = json!({"metadata": {"name": "x"}, "notAField": 1});
        assert_eq!(unknown_fields(resource, &object), ["unknown field \"notAField\""], "{}", resource.kind);
    }
}

#[test]
fn duplicate_fields_are_found_at_any_depth() {
    let raw = br#"{"spec": {"replicas": 1, "replicas": 2, "template": {"spec": {"containers": [{"name": "a", "name": "b"}]}}}, "spec2": 1}"#;
    assert_eq!(
        duplicate_fields(raw),
        ["duplicate field \"spec.replicas\"", "duplicate field \"spec.template.spec.containers[0].name\""]
    );
    assert!(duplicate_fields(br#"{"a": {"b": 1}, "c": {"b": 2}}"#).is_empty());
    assert!(duplicate_fields(b"not json").is_empty());
}
