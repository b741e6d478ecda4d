//! Deployment and ReplicaSet rules: replicas, selector, template and rollout strategy.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sLabelSelector;
use serde_json::Value;

use super::metadata::validate_labels;
use super::pod::validate_pod_spec;
use super::{FieldError, Path, array_field, check_min, field, str_field};
use crate::meta;
use crate::selector::LabelSelector;

const STRATEGY_TYPES: &[&str] = &["Recreate", "RollingUpdate"];
const SELECTOR_OPERATORS: &[&str] = &["In", "NotIn", "Exists", "DoesNotExist"];

pub(super) fn validate_deployment(object: &Value, old: Option<&Value>, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("spec");
    let spec = object.get("spec");
    validate_replicated_spec(spec, &path, errors);
    check_min(spec, "revisionHistoryLimit", 0, &path, errors);
    if let Some(strategy) = field(spec, "strategy") {
        validate_strategy(strategy, &path.child("strategy"), errors);
    }
    if let Some(deadline) = field(spec, "progressDeadlineSeconds") {
        check_min(spec, "progressDeadlineSeconds", 0, &path, errors);
        let min_ready = field(spec, "minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
        if deadline.as_i64().is_some_and(|d| d <= min_ready) {
            let detail = "must be greater than minReadySeconds";
            errors.push(FieldError::invalid(path.child("progressDeadlineSeconds"), deadline.clone(), detail));
        }
    }
    if let Some(old) = old {
        check_selector_unchanged(object, old, &path, errors);
    }
}

pub(super) fn validate_replica_set(object: &Value, old: Option<&Value>, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("spec");
    validate_replicated_spec(object.get("spec"), &path, errors);
    if let Some(old) = old {
        check_selector_unchanged(object, old, &path, errors);
    }
}

/// Rules that Deployments and ReplicaSets share: replicas, selector and pod template.
fn validate_replicated_spec(spec: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    check_min(spec, "replicas", 0, path, errors);
    check_min(spec, "minReadySeconds", 0, path, errors);

    let Some((pod_spec, pod_spec_path)) = validate_selector_and_template(spec, path, false, &["Always"], errors) else {
        return;
    };
    if field(pod_spec, "activeDeadlineSeconds").is_some() {
        let detail = "activeDeadlineSeconds in ReplicaSet is not Supported";
        errors.push(FieldError::forbidden(pod_spec_path.child("activeDeadlineSeconds"), detail));
    }
}

/// Validates a workload's selector, the template labels against it, and the pod spec with
/// its restart policy limited to `restart_policies`. Returns the pod spec and its path for
/// the caller's own rules, or `None` when the template is missing.
pub(super) fn validate_selector_and_template<'a>(
    spec: Option<&'a Value>,
    path: &Path,
    allow_empty_selector: bool,
    restart_policies: &[&str],
    errors: &mut Vec<FieldError>,
) -> Option<(Option<&'a Value>, Path)> {
    let selector = match field(spec, "selector") {
        None => {
            errors.push(FieldError::required(path.child("selector"), ""));
            None
        }
        Some(selector) => validate_selector(selector, &path.child("selector"), allow_empty_selector, errors),
    };

    let template_path = path.child("template");
    let Some(template) = field(spec, "template") else {
        errors.push(FieldError::required(template_path, ""));
        return None;
    };
    validate_template_labels(template, selector.as_ref(), &template_path, errors);

    let pod_spec_path = template_path.child("spec");
    let pod_spec = template.get("spec");
    validate_pod_spec(pod_spec, &pod_spec_path, errors);
    if let Some(policy) = field(pod_spec, "restartPolicy")
        && !policy.as_str().is_some_and(|p| restart_policies.contains(&p))
    {
        errors.push(FieldError::not_supported(pod_spec_path.child("restartPolicy"), policy.clone(), restart_policies));
    }
    Some((pod_spec, pod_spec_path))
}

/// Validates the labels of the pod template at `template_path` and checks that `selector`
/// (when it is valid) matches them.
fn validate_template_labels(
    template: &Value,
    selector: Option<&LabelSelector>,
    template_path: &Path,
    errors: &mut Vec<FieldError>,
) {
    let labels_path = template_path.child("metadata").child("labels");
    let labels = template.get("metadata").and_then(|m| m.get("labels"));
    validate_labels(labels, &labels_path, errors);
    if let Some(selector) = selector.filter(|s| !s.is_empty()) {
        let label_map: BTreeMap<String, String> =
            labels.and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
        if !selector.matches(&label_map) {
            let shown = labels.cloned().unwrap_or_else(|| Value::Object(Default::default()));
            let detail = "`selector` does not match template `labels`";
            errors.push(FieldError::invalid(labels_path, shown, detail));
        }
    }
}

/// Validates a metav1 LabelSelector and returns it parsed, or `None` when it is invalid.
/// Only Jobs (`allow_empty`) accept a selector without requirements, which matches every pod.
fn validate_selector(
    selector: &Value,
    path: &Path,
    allow_empty: bool,
    errors: &mut Vec<FieldError>,
) -> Option<LabelSelector> {
    let before = errors.len();
    validate_labels(selector.get("matchLabels"), &path.child("matchLabels"), errors);
    let expressions_path = path.child("matchExpressions");
    let expressions = array_field(Some(selector), "matchExpressions");
    for (index, expression) in expressions.iter().enumerate() {
        validate_selector_expression(expression, &expressions_path.index(index), errors);
    }
    let match_labels = selector.get("matchLabels").and_then(Value::as_object).map_or(0, |m| m.len());
    if match_labels + expressions.len() == 0 && !allow_empty {
        errors.push(FieldError::invalid(path.clone(), selector.clone(), "empty selector is invalid for deployment"));
    }
    if errors.len() > before {
        return None;
    }
    let typed: K8sLabelSelector = serde_json::from_value(selector.clone()).ok()?;
    LabelSelector::from_k8s(&typed).ok()
}

fn validate_selector_expression(expression: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let expression = Some(expression);
    match str_field(expression, "key") {
        None => errors.push(FieldError::required(path.child("key"), "")),
        Some(key) => {
            for problem in meta::qualified_name(key) {
                errors.push(FieldError::invalid(path.child("key"), Value::from(key), problem));
            }
        }
    }
    let values = array_field(expression, "values");
    match str_field(expression, "operator") {
        Some("In" | "NotIn") if values.is_empty() => {
            let detail = "must be specified when `operator` is 'In' or 'NotIn'";
            errors.push(FieldError::required(path.child("values"), detail));
        }
        Some("Exists" | "DoesNotExist") if !values.is_empty() => {
            let detail = "may not be specified when `operator` is 'Exists' or 'DoesNotExist'";
            errors.push(FieldError::forbidden(path.child("values"), detail));
        }
        Some(op) if !SELECTOR_OPERATORS.contains(&op) => {
            errors.push(FieldError::not_supported(path.child("operator"), Value::from(op), SELECTOR_OPERATORS));
        }
        None => errors.push(FieldError::required(path.child("operator"), "")),
        Some(_) => {}
    }
}

fn validate_strategy(strategy: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let rolling = field(Some(strategy), "rollingUpdate");
    match str_field(Some(strategy), "type") {
        Some("Recreate") => {
            if rolling.is_some() {
                let detail = "may not be specified when strategy `type` is 'Recreate'";
                errors.push(FieldError::forbidden(path.child("rollingUpdate"), detail));
            }
        }
        Some("RollingUpdate") => match rolling {
            None => {
                let detail = "this should be defaulted and never be nil";
                errors.push(FieldError::required(path.child("rollingUpdate"), detail));
            }
            Some(rolling) => validate_rolling_update(rolling, &path.child("rollingUpdate"), errors),
        },
        _ => {
            let value = strategy.get("type").cloned().unwrap_or(Value::from(""));
            errors.push(FieldError::not_supported(path.child("type"), value, STRATEGY_TYPES));
        }
    }
}

fn validate_rolling_update(rolling: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let unavailable = check_int_or_percent(rolling.get("maxUnavailable"), &path.child("maxUnavailable"), errors);
    let surge = check_int_or_percent(rolling.get("maxSurge"), &path.child("maxSurge"), errors);
    if unavailable == Some(0) && surge == Some(0) {
        let value = rolling.get("maxUnavailable").cloned().unwrap_or(Value::from(0));
        errors.push(FieldError::invalid(path.child("maxUnavailable"), value, "may not be 0 when `maxSurge` is 0"));
    }
    if let Some(Value::String(text)) = rolling.get("maxUnavailable") {
        if unavailable.is_some_and(|percent| percent > 100) {
            let detail = "must not be greater than 100%";
            errors.push(FieldError::invalid(path.child("maxUnavailable"), Value::from(text.as_str()), detail));
        }
    }
}

/// Checks an IntOrString that must be a non-negative integer or a percentage (`25%`), and
/// returns its number. A missing value counts as 0, as an unset Go field does.
fn check_int_or_percent(value: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) -> Option<i64> {
    match value {
        None | Some(Value::Null) => Some(0),
        Some(Value::String(text)) => {
            let number = text.strip_suffix('%').filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let parsed = number.and_then(|n| n.parse::<i64>().ok());
            if parsed.is_none() {
                let detail = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";
                errors.push(FieldError::invalid(path.clone(), Value::from(text.as_str()), detail));
            }
            parsed
        }
        Some(other) => match other.as_i64() {
            Some(number) if number >= 0 => Some(number),
            _ => {
                errors.push(FieldError::invalid(path.clone(), other.clone(), "must be greater than or equal to 0"));
                None
            }
        },
    }
}

/// On update, apps/v1 forbids changing the selector.
fn check_selector_unchanged(object: &Value, old: &Value, path: &Path, errors: &mut Vec<FieldError>) {
    let new_selector = object.get("spec").and_then(|s| s.get("selector"));
    let old_selector = old.get("spec").and_then(|s| s.get("selector"));
    if new_selector != old_selector {
        let shown = new_selector.cloned().unwrap_or(Value::Null);
        errors.push(FieldError::invalid(path.child("selector"), shown, "field is immutable"));
    }
}

#[cfg(test)]
#[path = "workload_tests.rs"]
mod tests;
