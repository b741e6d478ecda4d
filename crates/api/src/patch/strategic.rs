//! Strategic merge patch: RFC 7386 merging, plus lists merged by key and the `$patch`,
//! `$retainKeys`, `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>`
//! directives that kubectl's apply, edit and rollout commands send.

use serde_json::{Map, Value};

use super::PatchError;
use super::keys::{FieldRule, field_rule, root_child};

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// The type context of a map being merged: a kind's root, a named schema, or unknown (no
/// merge rules below this point).
#[derive(Clone, Debug)]
pub(crate) enum Context {
    Root(String),
    Schema(String),
    Unknown,
}

impl Context {
    pub(crate) fn child(&self, field: &str) -> (Context, Option<&'static FieldRule>) {
        match self {
            Context::Root(kind_schema) => match root_child(kind_schema, field) {
                Some(schema) => (Context::Schema(schema), None),
                None => (Context::Unknown, None),
            },
            Context::Schema(schema) => match field_rule(schema, field) {
                Some(rule) => {
                    let child = rule.child.map_or(Context::Unknown, |c| Context::Schema(c.to_string()));
                    (child, Some(rule))
                }
                None => (Context::Unknown, None),
            },
            Context::Unknown => (Context::Unknown, None),
        }
    }
}

/// Applies a strategic merge patch to `original`, whose top-level schema is `kind_schema`.
pub(crate) fn apply(original: &Value, patch: &Value, kind_schema: &str) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::BadRequest("a strategic merge patch must be a JSON object".into()));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let merged = merge_map(original, patch, &Context::Root(kind_schema.to_string()))?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// Merges `patch` into `original`. Returns None when the patch deletes the whole map.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    context: &Context,
) -> Result<Option<Map<String, Value>>, PatchError> {
    // Whole-map directives come first: they decide what the remaining keys merge into.
    match patch.get(PATCH_DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "replace" => original = Map::new(),
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(other) => return Err(PatchError::BadRequest(format!("unknown $patch directive {other}"))),
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, retain, patch)?;
    }

    let mut orders = Vec::new();
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            orders.push((field, value));
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field, value));
            continue;
        }
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS {
            continue;
        }
        let (child, rule) = context.child(key);
        match value {
            Value::Null => {
                original.remove(key);
            }
            Value::Object(patch_map) => {
                let base = match original.remove(key) {
                    Some(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                if let Some(merged) = merge_map(base, patch_map, &child)? {
                    original.insert(key.clone(), Value::Object(merged));
                }
            }
            Value::Array(patch_list) => {
                let base = match original.remove(key) {
                    Some(Value::Array(list)) => list,
                    _ => Vec::new(),
                };
                let merged = merge_list(base, patch_list, rule, &child)?;
                original.insert(key.clone(), Value::Array(merged));
            }
            scalar => {
                original.insert(key.clone(), scalar.clone());
            }
        }
    }

    for (field, values) in deletions {
        delete_from_primitive_list(&mut original, field, values)?;
    }
    for (field, order) in orders {
        let rule = match context {
            Context::Schema(schema) => field_rule(schema, field),
            _ => None,
        };
        set_element_order(&mut original, field, order, rule)?;
    }
    Ok(Some(original))
}

/// Drops the keys of `original` that `$retainKeys` does not list.
fn retain_keys(original: &mut Map<String, Value>, retain: &Value, patch: &Map<String, Value>) -> Result<(), PatchError> {
    let Value::Array(names) = retain else {
        return Err(PatchError::BadRequest("$retainKeys must be a list of field names".into()));
    };
    let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
    // The reference server rejects a patch that sets a field its own $retainKeys drops.
    for key in patch.keys().filter(|k| !k.starts_with('$')) {
        if !names.contains(&key.as_str()) && !patch[key].is_null() {
            return Err(PatchError::Invalid(format!("field {key} is set but not listed in $retainKeys")));
        }
    }
    original.retain(|key, _| names.contains(&key.as_str()));
    Ok(())
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    rule: Option<&FieldRule>,
    child: &Context,
) -> Result<Vec<Value>, PatchError> {
    let strategy = rule.and_then(|r| r.strategy).unwrap_or_default();
    if !strategy.contains("merge") || strategy == "retainKeys" {
        return Ok(clean_list(patch));
    }
    let Some(merge_key) = rule.and_then(|r| r.merge_key) else {
        // A merged list of primitives is a set: append the values not yet present.
        let mut merged = original;
        for value in patch {
            if !merged.contains(value) {
                merged.push(value.clone());
            }
        }
        return Ok(merged);
    };

    let replace = patch.iter().any(|item| item.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let mut merged = if replace { Vec::new() } else { original };
    for item in patch {
        let Value::Object(item_map) = item else {
            return Err(PatchError::BadRequest(format!("list items merged by {merge_key} must be objects, got {item}")));
        };
        let directive = item_map.get(PATCH_DIRECTIVE).and_then(Value::as_str);
        if directive == Some("replace") && item_map.len() == 1 {
            continue;
        }
        let Some(key_value) = item_map.get(merge_key) else {
            return Err(PatchError::BadRequest(format!("list item {item} does not contain the merge key {merge_key}")));
        };
        let position = merged.iter().position(|existing| existing.get(merge_key) == Some(key_value));
        if directive == Some("delete") {
            merged.retain(|existing| existing.get(merge_key) != Some(key_value));
            continue;
        }
        let base = match position.map(|i| merged.remove(i)) {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        if let Some(element) = merge_map(base, item_map, child)? {
            let index = position.unwrap_or(merged.len());
            merged.insert(index.min(merged.len()), Value::Object(element));
        }
    }
    Ok(merged)
}

/// Copies a list from a patch without its directives, for fields that are replaced whole.
fn clean_list(patch: &[Value]) -> Vec<Value> {
    patch
        .iter()
        .filter(|item| !(item.get(PATCH_DIRECTIVE).is_some() && item.as_object().is_some_and(|m| m.len() == 1)))
        .cloned()
        .collect()
}

fn delete_from_primitive_list(object: &mut Map<String, Value>, field: &str, values: &Value) -> Result<(), PatchError> {
    let Value::Array(values) = values else {
        return Err(PatchError::BadRequest(format!("$deleteFromPrimitiveList/{field} must be a list")));
    };
    if let Some(Value::Array(list)) = object.get_mut(field) {
        list.retain(|item| !values.contains(item));
    }
    Ok(())
}

/// Reorders a merged list by the order that `$setElementOrder/<field>` gives. Elements the
/// order does not name (added by other writers) keep their relative order after the named
/// ones.
fn set_element_order(
    object: &mut Map<String, Value>,
    field: &str,
    order: &Value,
    rule: Option<&FieldRule>,
) -> Result<(), PatchError> {
    let Value::Array(order) = order else {
        return Err(PatchError::BadRequest(format!("$setElementOrder/{field} must be a list")));
    };
    let Some(Value::Array(list)) = object.get_mut(field) else {
        return Ok(());
    };
    let merge_key = rule.and_then(|r| r.merge_key);
    let identity = |item: &Value| -> Value {
        match merge_key {
            Some(key) => item.get(key).cloned().unwrap_or(Value::Null),
            None => item.clone(),
        }
    };
    let expected: Vec<Value> = order.iter().map(identity).collect();
    let mut ordered = Vec::with_capacity(list.len());
    for id in &expected {
        if let Some(index) = list.iter().position(|item| identity(item) == *id) {
            ordered.push(list.remove(index));
        }
    }
    ordered.append(list);
    *list = ordered;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": ["a"]},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": "host", "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "host"},
                ]}},
            },
        })
    }

    #[test]
    fn rollout_restart_adds_annotation() {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2025-01-01T00:00:00Z"}}}}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        let template = &out["spec"]["template"];
        assert_eq!(template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"], "2025-01-01T00:00:00Z");
        assert_eq!(template["metadata"]["labels"]["app"], "web");
        assert_eq!(template["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn containers_merge_by_name() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"name": "web", "image": "host:2", "env": [{"name": "B", "value": "2"}]}],
        }}}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        let containers = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 2);
        assert_eq!(containers[0]["image"], "host:2");
        assert_eq!(containers[0]["env"].as_array().unwrap().len(), 2, "env merges by name too");
        assert_eq!(containers[1]["name"], "sidecar");
    }

    #[test]
    fn delete_directive_removes_element() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "sidecar", "$patch": "delete"}],
        }}}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        let containers = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "web");
    }

    #[test]
    fn replace_directive_replaces_list() {
        let patch = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "only", "image": "host"}, {"$patch": "replace"}],
        }}}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        let containers = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers, &vec![json!({"name": "only", "image": "host"})]);
    }

    #[test]
    fn set_element_order_reorders() {
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
        }}}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        let containers = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers[0]["name"], "sidecar");
        assert_eq!(containers[1]["name"], "web");
    }

    #[test]
    fn retain_keys_drops_rolling_update() {
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn finalizers_merge_as_set() {
        let patch = json!({"metadata": {"finalizers": ["a", "b"], "$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn unkeyed_lists_replace_whole() {
        let original = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "args": ["a", "b"]}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "args": ["z"]}]}}}});
        let out = apply(&original, &patch, DEPLOYMENT).unwrap();
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["args"], json!(["z"]));
    }

    #[test]
    fn missing_merge_key_is_rejected() {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"image": "host"}]}}}});
        let err = apply(&deployment(), &patch, DEPLOYMENT).unwrap_err();
        assert!(matches!(err, PatchError::BadRequest(_)), "{err}");
    }

    #[test]
    fn null_deletes_key() {
        let patch = json!({"spec": {"replicas": null}});
        let out = apply(&deployment(), &patch, DEPLOYMENT).unwrap();
        assert!(out["spec"].get("replicas").is_none());
    }
}
