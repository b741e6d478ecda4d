use super::*;
use serde_json::json;

fn deployment(spec_patch: Value) -> Value {
    let mut spec = json!({
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "host"}], "restartPolicy": "Always"},
        },
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "revisionHistoryLimit": 10,
        "progressDeadlineSeconds": 600,
    });
    for (key, value) in spec_patch.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({"spec": spec})
}

fn messages(object: Value, old: Option<Value>) -> Vec<String> {
    let mut errors = Vec::new();
    validate_deployment(&object, old.as_ref(), &mut errors);
    errors.iter().map(FieldError::message).collect()
}

#[test]
fn deployment_rules() {
    let template = |labels: Value, policy: &str| {
        json!({"metadata": {"labels": labels},
               "spec": {"containers": [{"name": "web", "image": "host"}], "restartPolicy": policy}})
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec![]),
        (json!({"replicas": -1}), vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
        (json!({"selector": null}), vec!["spec.selector: Required value"]),
        (
            json!({"selector": {}}),
            vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"],
        ),
        (
            json!({"template": template(json!({"app": "db"}), "Always")}),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"],
        ),
        (
            json!({"template": template(json!({"app": "web"}), "Never")}),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""],
        ),
        (
            json!({"strategy": {"type": "Blue"}}),
            vec!["spec.strategy.type: Unsupported value: \"Blue\": supported values: \"Recreate\", \"RollingUpdate\""],
        ),
        (
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"],
        ),
        (
            json!({"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "120%"}}}),
            vec![
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x%\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%",
            ],
        ),
        (
            json!({"strategy": {"type": "Recreate", "rollingUpdate": {}}}),
            vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
        ),
        (
            json!({"revisionHistoryLimit": -2}),
            vec!["spec.revisionHistoryLimit: Invalid value: -2: must be greater than or equal to 0"],
        ),
        (
            json!({"minReadySeconds": 700}),
            vec!["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"],
        ),
        (
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
            vec!["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"],
        ),
    ];
    for (patch, expected) in cases {
        assert_eq!(messages(deployment(patch.clone()), None), expected, "patch {patch}");
    }
}

#[test]
fn selector_is_immutable_on_update() {
    let old = deployment(json!({}));
    let changed = deployment(json!({
        "selector": {"matchLabels": {"app": "web", "tier": "front"}},
        "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                     "spec": {"containers": [{"name": "web", "image": "host"}], "restartPolicy": "Always"}},
    }));
    let found = messages(changed, Some(old.clone()));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("spec.selector: Invalid value: "), "{found:?}");
    assert!(found[0].ends_with(": field is immutable"), "{found:?}");
    assert_eq!(messages(deployment(json!({"replicas": 5})), Some(old)), Vec::<String>::new());
}

#[test]
fn replica_set_shares_template_rules() {
    let object = deployment(json!({"replicas": -1}));
    let mut errors = Vec::new();
    validate_replica_set(&object, None, &mut errors);
    let found: Vec<String> = errors.iter().map(FieldError::message).collect();
    assert_eq!(found, ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]);
}
