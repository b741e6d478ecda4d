//! batch/v1 Job rules: counts, deadlines, the selector (generated or manual), the pod
//! template and the fields that may not change after create.

use serde_json::Value;

use super::workload::validate_selector_and_template;
use super::{FieldError, Path, check_enum, check_min, field};
use crate::defaults::job::{CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL};

const JOB_RESTART_POLICIES: &[&str] = &["OnFailure", "Never"];
/// NOTE: capstan's Job controller counts completions without indexes, so `Indexed` is
/// rejected until the controller assigns completion indexes to pods.
const COMPLETION_MODES: &[&str] = &["NonIndexed"];
const POD_REPLACEMENT_POLICIES: &[&str] = &["TerminatingOrFailed", "Failed"];
/// Job fields that the Kubernetes API accepts but capstan's controller does not act on.
const UNSUPPORTED_FIELDS: &[&str] = &["podFailurePolicy", "successPolicy", "backoffLimitPerIndex", "maxFailedIndexes", "managedBy"];
/// Spec fields the reference server does not let an update change.
const IMMUTABLE_FIELDS: &[&str] = &["selector", "template", "completions", "completionMode"];

pub(super) fn validate_job(object: &Value, old: Option<&Value>, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("spec");
    let spec = object.get("spec");
    for name in ["parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"] {
        check_min(spec, name, 0, &path, errors);
    }
    if let Some(deadline) = field(spec, "activeDeadlineSeconds")
        && deadline.as_i64().is_none_or(|seconds| seconds <= 0)
    {
        errors.push(FieldError::invalid(path.child("activeDeadlineSeconds"), deadline.clone(), "must be greater than zero"));
    }
    check_enum(spec, "completionMode", COMPLETION_MODES, &path, errors);
    check_enum(spec, "podReplacementPolicy", POD_REPLACEMENT_POLICIES, &path, errors);
    for name in UNSUPPORTED_FIELDS {
        if field(spec, name).is_some() {
            errors.push(FieldError::forbidden(path.child(name), "capstan's Job controller does not support this field"));
        }
    }

    validate_selector_and_template(spec, &path, true, JOB_RESTART_POLICIES, errors);
    if field(spec, "manualSelector").and_then(Value::as_bool) != Some(true) {
        validate_generated_selector(object, &path, errors);
    }

    if let Some(old) = old {
        for name in IMMUTABLE_FIELDS {
            let new_value = object.get("spec").and_then(|s| s.get(*name));
            if new_value != old.get("spec").and_then(|s| s.get(*name)) {
                let shown = new_value.cloned().unwrap_or(Value::Null);
                errors.push(FieldError::invalid(path.child(name), shown, "field is immutable"));
            }
        }
    }
}

/// Without `manualSelector`, the template must carry the uid and name labels with this
/// Job's values and the selector must be exactly the generated one, so that no other
/// controller's pods can match.
fn validate_generated_selector(object: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
    if uid.is_empty() {
        errors.push(FieldError::required(Path::root().child("metadata").child("uid"), ""));
        return;
    }
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let labels_path = path.child("template").child("metadata").child("labels");
    let labels = object.pointer("/spec/template/metadata/labels");
    let expected = [
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (JOB_NAME_LABEL, name),
    ];
    for (key, value) in expected {
        match labels.and_then(|l| l.get(key)) {
            None => errors.push(FieldError::required(labels_path.key(key), "")),
            Some(actual) if actual.as_str() != Some(value) => {
                errors.push(FieldError::invalid(labels_path.key(key), actual.clone(), format!("must be '{value}'")));
            }
            Some(_) => {}
        }
    }

    let generated = serde_json::json!({"matchLabels": {CONTROLLER_UID_LABEL: uid}});
    if let Some(selector) = object.pointer("/spec/selector")
        && selector != &generated
    {
        errors.push(FieldError::invalid(path.child("selector"), selector.clone(), "`selector` not auto-generated"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults::apply_defaults;
    use crate::resources::lookup_kind;
    use serde_json::json;

    fn defaulted(spec: Value) -> Value {
        let mut object = json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": spec});
        apply_defaults(lookup_kind("batch", "Job").unwrap(), &mut object);
        object
    }

    fn template(policy: &str) -> Value {
        json!({"spec": {"containers": [{"name": "pi", "image": "busybox", "command": ["sh", "-c", "echo done"]}],
                        "restartPolicy": policy}})
    }

    fn messages(object: &Value, old: Option<&Value>) -> Vec<String> {
        let mut errors = Vec::new();
        validate_job(object, old, &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn defaulted_job_is_valid() {
        for policy in ["Never", "OnFailure"] {
            let object = defaulted(json!({"template": template(policy)}));
            assert_eq!(messages(&object, None), Vec::<String>::new(), "{policy}");
        }
    }

    #[test]
    fn restart_policy_always_rejected() {
        let object = defaulted(json!({"template": template("Always")}));
        assert_eq!(
            messages(&object, None),
            ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
    }

    #[test]
    fn negative_counts_rejected() {
        let object = defaulted(json!({"completions": -1, "parallelism": -2, "backoffLimit": -3,
                                      "activeDeadlineSeconds": 0, "template": template("Never")}));
        assert_eq!(
            messages(&object, None),
            [
                "spec.parallelism: Invalid value: -2: must be greater than or equal to 0",
                "spec.completions: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -3: must be greater than or equal to 0",
                "spec.activeDeadlineSeconds: Invalid value: 0: must be greater than zero",
            ]
        );
    }

    #[test]
    fn selector_without_manual_flag_rejected() {
        let mut object = defaulted(json!({"template": template("Never")}));
        object["spec"]["selector"] = json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1", "app": "pi"}});
        object["spec"]["template"]["metadata"]["labels"]["app"] = json!("pi");
        let found = messages(&object, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("spec.selector: Invalid value: "), "{found:?}");
        assert!(found[0].ends_with("`selector` not auto-generated"), "{found:?}");
    }

    #[test]
    fn manual_selector_must_match_labels() {
        let mut spec = json!({"manualSelector": true, "selector": {"matchLabels": {"app": "pi"}}, "template": template("Never")});
        spec["template"]["metadata"] = json!({"labels": {"app": "other"}});
        let object = defaulted(spec);
        assert_eq!(
            messages(&object, None),
            ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn indexed_mode_and_unsupported_fields_rejected() {
        let object = defaulted(json!({"completionMode": "Indexed", "podFailurePolicy": {"rules": []},
                                      "template": template("Never")}));
        let found = messages(&object, None);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("spec.completionMode: Unsupported value: \"Indexed\""), "{found:?}");
        assert!(found[1].starts_with("spec.podFailurePolicy: Forbidden: "), "{found:?}");
    }

    #[test]
    fn completions_immutable() {
        let old = defaulted(json!({"completions": 3, "template": template("Never")}));
        let mut new = old.clone();
        new["spec"]["completions"] = json!(4);
        new["spec"]["parallelism"] = json!(2);
        assert_eq!(messages(&new, Some(&old)), ["spec.completions: Invalid value: 4: field is immutable"]);
    }
}
