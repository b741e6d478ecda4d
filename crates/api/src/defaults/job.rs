//! Job defaulting, including the selector and pod labels that the reference server
//! generates on create when `spec.manualSelector` is not true.

use serde_json::{Value, json};

use super::{default_template, object_mut, set_default};

/// Label that ties a Job's pods to the Job's uid. The generated selector matches on it.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The pre-1.27 spelling of [`CONTROLLER_UID_LABEL`], still added to pod templates.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// Label carrying the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The pre-1.27 spelling of [`JOB_NAME_LABEL`].
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Defaults a Job as Kubernetes 1.33 does (`SetDefaults_Job`), then generates its selector.
pub(super) fn default_job(job: &mut Value) {
    let Some(spec) = object_mut(job, "spec") else { return };

    // Both unset means one pod. Parallelism set alone means a work queue with no fixed count.
    let completions_unset = spec.get("completions").is_none_or(Value::is_null);
    let parallelism_unset = spec.get("parallelism").is_none_or(Value::is_null);
    if completions_unset && parallelism_unset {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    default_template(spec);

    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) != Some(true) {
        generate_selector(job);
    }
}

/// Adds the uid and name labels to the pod template and selects the uid label, keeping
/// any of these labels the client already set. A mismatch the client caused is left for
/// validation to report.
fn generate_selector(job: &mut Value) {
    let uid = job.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = job.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    // Without a uid (a malformed request) there is nothing to select on.
    if uid.is_empty() {
        return;
    }
    let Some(spec) = job.get_mut("spec") else { return };
    let Some(template) = object_mut(spec, "template") else { return };
    let Some(metadata) = object_mut(template, "metadata") else { return };
    if let Some(labels) = object_mut(metadata, "labels") {
        // The name is empty until the server picks one for a `generateName` request,
        // which defaults the Job again after it does.
        if !name.is_empty() {
            set_default(labels, LEGACY_JOB_NAME_LABEL, json!(name));
            set_default(labels, JOB_NAME_LABEL, json!(name));
        }
        set_default(labels, LEGACY_CONTROLLER_UID_LABEL, json!(uid));
        set_default(labels, CONTROLLER_UID_LABEL, json!(uid));
    }

    let Some(spec) = job.get_mut("spec") else { return };
    if let Some(selector) = object_mut(spec, "selector")
        && let Some(match_labels) = object_mut(selector, "matchLabels")
    {
        set_default(match_labels, CONTROLLER_UID_LABEL, json!(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        json!({"metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": spec})
    }

    #[test]
    fn counts_default_to_one_pod() {
        let mut object = job(json!({"template": {"spec": {"containers": [], "restartPolicy": "Never"}}}));
        default_job(&mut object);
        let spec = &object["spec"];
        assert_eq!(spec["completions"], 1);
        assert_eq!(spec["parallelism"], 1);
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert!(spec.get("manualSelector").is_none());
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn parallelism_alone_leaves_completions_unset() {
        let mut object = job(json!({"parallelism": 3, "template": {}}));
        default_job(&mut object);
        assert!(object["spec"].get("completions").is_none());
        assert_eq!(object["spec"]["parallelism"], 3);
    }

    #[test]
    fn selector_generated_from_uid() {
        let mut object = job(json!({"template": {"metadata": {"labels": {"app": "pi"}}}}));
        default_job(&mut object);
        assert_eq!(object["spec"]["selector"], json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}}));
        let labels = &object["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app"], "pi");
        assert_eq!(labels[CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(labels[LEGACY_CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_JOB_NAME_LABEL], "pi");
    }

    #[test]
    fn manual_selector_kept() {
        let selector = json!({"matchLabels": {"app": "pi"}});
        let mut object = job(json!({"manualSelector": true, "selector": selector, "template": {}}));
        default_job(&mut object);
        assert_eq!(object["spec"]["selector"], selector);
        assert!(object["spec"]["template"]["metadata"].get("labels").is_none());
    }
}
