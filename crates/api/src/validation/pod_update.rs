//! The rule that a Pod's spec is fixed once created, apart from a few fields.

use serde_json::Value;

use super::{FieldError, Path};

/// The fields a Pod update may change, worded as the reference server lists them.
const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Rejects an update whose spec differs from `old` in anything but the updatable fields.
///
/// NOTE: binding writes `spec.nodeName`, so the binding subresource must not run this check.
pub(super) fn validate_pod_update(object: &Value, old: &Value, errors: &mut Vec<FieldError>) {
    let (Some(new_spec), Some(old_spec)) = (object.get("spec"), old.get("spec")) else { return };
    let mut allowed = old_spec.clone();

    // Copy the updatable fields from the new spec onto the old one, then compare.
    for list in ["containers", "initContainers"] {
        let new_list = new_spec.get(list).and_then(Value::as_array);
        let Some(old_list) = allowed.get_mut(list).and_then(Value::as_array_mut) else { continue };
        let Some(new_list) = new_list.filter(|l| l.len() == old_list.len()) else { continue };
        for (old_container, new_container) in old_list.iter_mut().zip(new_list) {
            if let (Some(slot), Some(image)) = (old_container.get_mut("image"), new_container.get("image")) {
                *slot = image.clone();
            }
        }
    }
    copy_field(&mut allowed, new_spec, "activeDeadlineSeconds");
    copy_field(&mut allowed, new_spec, "terminationGracePeriodSeconds");
    if tolerations_only_added(old_spec.get("tolerations"), new_spec.get("tolerations")) {
        copy_field(&mut allowed, new_spec, "tolerations");
    }

    if &allowed != new_spec {
        let detail = format!("pod updates may not change fields other than {UPDATABLE_FIELDS}");
        errors.push(FieldError::forbidden(Path::root().child("spec"), detail));
    }
}

fn copy_field(target: &mut Value, source: &Value, name: &str) {
    let Some(target) = target.as_object_mut() else { return };
    match source.get(name) {
        Some(value) => {
            target.insert(name.to_string(), value.clone());
        }
        None => {
            target.remove(name);
        }
    }
}

/// Whether every old toleration is still present in the new list.
fn tolerations_only_added(old: Option<&Value>, new: Option<&Value>) -> bool {
    let old = old.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let new = new.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    old.iter().all(|toleration| new.contains(toleration))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(image: &str, extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "web", "image": image}], "restartPolicy": "Always"});
        for (key, value) in extra.as_object().unwrap() {
            spec[key] = value.clone();
        }
        json!({"spec": spec})
    }

    #[test]
    fn pod_update_rules() {
        let toleration = json!({"key": "a", "operator": "Exists"});
        let other = json!({"key": "b", "operator": "Exists"});
        let old = pod("host", json!({"tolerations": [toleration]}));
        let cases = [
            ("same spec", pod("host", json!({"tolerations": [toleration]})), true),
            ("new image", pod("busybox", json!({"tolerations": [toleration]})), true),
            ("added toleration", pod("host", json!({"tolerations": [toleration, other]})), true),
            ("removed toleration", pod("host", json!({})), false),
            ("deadline", pod("host", json!({"tolerations": [toleration], "activeDeadlineSeconds": 5})), true),
            ("restart policy", pod("host", json!({"tolerations": [toleration], "restartPolicy": "Never"})), false),
            ("node name", pod("host", json!({"tolerations": [toleration], "nodeName": "n1"})), false),
        ];
        for (case, new, allowed) in cases {
            let mut errors = Vec::new();
            validate_pod_update(&new, &old, &mut errors);
            assert_eq!(errors.is_empty(), allowed, "{case}: {errors:?}");
            if !allowed {
                assert!(errors[0].message().starts_with("spec: Forbidden: pod updates may not change fields other than"));
            }
        }
    }
}
