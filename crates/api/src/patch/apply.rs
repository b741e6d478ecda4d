//! Server-side apply: merges an applied configuration into the live object by the merge
//! keys of the strategic merge table, and records the applied fields in `managedFields`.
//!
//! NOTE: ownership is tracked per leaf path in FieldsV1 form, which covers what
//! `kubectl apply --server-side` needs. Unlike the reference server's structured merge diff,
//! list order and atomic maps (`x-kubernetes-map-type: atomic`) are not modelled, and a
//! field that only an Update manager owns is never removed by an apply that drops it.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::PatchError;
use super::keys::schema_name;
use super::strategic::{self, Context};
use crate::resources::ResourceInfo;

/// A field path in FieldsV1 segments (`f:spec`, `k:{"name":"web"}`, `v:"a"`).
type FieldPath = Vec<String>;

/// Metadata fields that identify or describe the object and are never owned.
const UNOWNED_METADATA: &[&str] =
    &["name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"];

pub(crate) fn server_side_apply(
    resource: &ResourceInfo,
    current: Option<&Value>,
    body: &[u8],
    manager: &str,
    force: bool,
) -> Result<Value, PatchError> {
    let config = parse_config(resource, body)?;
    let kind_schema = schema_name(resource.group, resource.version, resource.kind);
    let applied: BTreeSet<FieldPath> = flatten(&fields_v1(&config, &Context::Root(kind_schema.clone()), true));

    let Some(current) = current else {
        let mut created = config;
        let entries = vec![managed_entry(resource, manager, &applied)];
        set_managed_fields(&mut created, entries);
        return Ok(created);
    };

    // Conflicts: another manager owns a field that this apply sets to a different value.
    let mut entries = managed_fields(current);
    let mut previous = BTreeSet::new();
    for entry in &mut entries {
        let owned = entry_paths(entry);
        if is_own_apply(entry, manager) {
            previous = owned;
            continue;
        }
        let contested: Vec<&FieldPath> = owned
            .intersection(&applied)
            .filter(|path| resolve(current, path) != resolve(&config, path))
            .collect();
        if contested.is_empty() {
            continue;
        }
        if !force {
            let other = entry.get("manager").and_then(Value::as_str).unwrap_or_default().to_string();
            let fields: Vec<String> = contested.iter().map(|p| display_path(p)).collect();
            return Err(PatchError::Conflict { manager: other, message: format!("conflict on {}", fields.join(", ")) });
        }
        // Forcing takes only the contested fields; fields set to equal values stay shared.
        let kept: BTreeSet<FieldPath> = owned.iter().filter(|p| !contested.contains(p)).cloned().collect();
        entry["fieldsV1"] = unflatten(&kept);
    }

    // Merge, then remove the fields this manager applied before and left out now, unless
    // another manager owns them.
    let mut merged = strategic::apply(current, &config, &kind_schema)?;
    let others: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| !is_own_apply(e, manager))
        .flat_map(entry_paths)
        .collect();
    let mut dropped: Vec<&FieldPath> =
        previous.iter().filter(|p| !applied.contains(*p) && !others.contains(*p)).collect();
    dropped.sort_by_key(|p| p.len());
    for path in dropped {
        remove_path(&mut merged, path);
    }

    entries.retain(|e| !is_own_apply(e, manager) && !entry_paths(e).is_empty());
    entries.push(managed_entry(resource, manager, &applied));
    set_managed_fields(&mut merged, entries);
    Ok(merged)
}

fn parse_config(resource: &ResourceInfo, body: &[u8]) -> Result<Value, PatchError> {
    // YAML is a superset of JSON, so one parser covers both bodies kubectl may send.
    let config: Value = serde_norway::from_slice(body)
        .map_err(|e| PatchError::BadRequest(format!("apply body is neither JSON nor YAML: {e}")))?;
    if !config.is_object() {
        return Err(PatchError::BadRequest("an apply body must be an object".into()));
    }
    let api_version = config.get("apiVersion").and_then(Value::as_str);
    let kind = config.get("kind").and_then(Value::as_str);
    if api_version != Some(resource.api_version().as_str()) || kind != Some(resource.kind) {
        return Err(PatchError::BadRequest(format!(
            "apply body must set apiVersion {} and kind {}, got {} and {}",
            resource.api_version(),
            resource.kind,
            api_version.unwrap_or("nothing"),
            kind.unwrap_or("nothing"),
        )));
    }
    let mut config = config;
    if let Some(metadata) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    Ok(config)
}

/// Builds the FieldsV1 tree of the fields set in `value`.
fn fields_v1(value: &Value, context: &Context, root: bool) -> Value {
    let Value::Object(map) = value else {
        return Value::Object(Map::new());
    };
    let mut tree = Map::new();
    for (key, child) in map {
        if root && (key == "apiVersion" || key == "kind") {
            continue;
        }
        let (child_context, rule) = context.child(key);
        let subtree = match child {
            Value::Object(inner) if root && key == "metadata" => {
                let owned: Map<String, Value> =
                    inner.iter().filter(|(k, _)| !UNOWNED_METADATA.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
                if owned.is_empty() {
                    continue;
                }
                fields_v1(&Value::Object(owned), &child_context, false)
            }
            Value::Object(_) => fields_v1(child, &child_context, false),
            Value::Array(items) => list_fields(items, rule.and_then(|r| r.merge_key), rule.and_then(|r| r.strategy), &child_context),
            _ => Value::Object(Map::new()),
        };
        tree.insert(format!("f:{key}"), subtree);
    }
    Value::Object(tree)
}

fn list_fields(items: &[Value], merge_key: Option<&str>, strategy: Option<&str>, context: &Context) -> Value {
    let merged = strategy.is_some_and(|s| s.contains("merge"));
    let mut tree = Map::new();
    match merge_key {
        Some(key) if merged => {
            for item in items {
                let Some(key_value) = item.get(key) else { continue };
                let mut element = match fields_v1(item, context, false) {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                element.insert(".".into(), Value::Object(Map::new()));
                let id = serde_json::json!({ key: key_value });
                tree.insert(format!("k:{id}"), Value::Object(element));
            }
        }
        None if merged => {
            for item in items {
                tree.insert(format!("v:{item}"), Value::Object(Map::new()));
            }
        }
        // An atomic list is owned as a whole, like a scalar.
        _ => {}
    }
    Value::Object(tree)
}

fn flatten(tree: &Value) -> BTreeSet<FieldPath> {
    fn walk(tree: &Map<String, Value>, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        for (segment, child) in tree {
            if segment == "." {
                out.insert(prefix.clone());
                continue;
            }
            prefix.push(segment.clone());
            match child {
                Value::Object(inner) if !inner.is_empty() => walk(inner, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    if let Value::Object(map) = tree {
        walk(map, &mut Vec::new(), &mut out);
    }
    out
}

fn unflatten(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Value::Object(Map::new());
    for path in paths {
        node_at(&mut root, path);
    }
    // A path whose node also has children marks the node itself with ".".
    for path in paths {
        if let Value::Object(node) = node_at(&mut root, path)
            && !node.is_empty()
        {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }
    root
}

/// Returns the FieldsV1 node at `path`, creating it if missing.
fn node_at<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Value {
    let mut node = root;
    for segment in path {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { unreachable!("replaced by an object above") };
        node = map.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    node
}

/// Finds the value a field path points at.
fn resolve<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut node = value;
    for segment in path {
        node = match segment.split_at(2) {
            ("f:", name) => node.get(name)?,
            ("k:", key) => {
                let key: Map<String, Value> = serde_json::from_str(key).ok()?;
                node.as_array()?.iter().find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
            }
            ("v:", item) => {
                let item: Value = serde_json::from_str(item).ok()?;
                node.as_array()?.iter().find(|existing| **existing == item)?
            }
            _ => return None,
        };
    }
    Some(node)
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else { return };
    let mut node = value;
    for segment in parent_path {
        let next = match segment.split_at(2) {
            ("f:", name) => node.get_mut(name),
            ("k:", key) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(key) else { return };
                node.as_array_mut().and_then(|list| list.iter_mut().find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v))))
            }
            _ => None,
        };
        let Some(next) = next else { return };
        node = next;
    }
    match last.split_at(2) {
        ("f:", name) => {
            if let Some(map) = node.as_object_mut() {
                map.remove(name);
            }
        }
        ("k:", key) => {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(key) else { return };
            if let Some(list) = node.as_array_mut() {
                list.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
            }
        }
        ("v:", item) => {
            let Ok(item) = serde_json::from_str::<Value>(item) else { return };
            if let Some(list) = node.as_array_mut() {
                list.retain(|existing| *existing != item);
            }
        }
        _ => {}
    }
}

fn display_path(path: &[String]) -> String {
    path.iter().map(|s| s.trim_start_matches("f:")).collect::<Vec<_>>().join(".")
}

fn managed_fields(object: &Value) -> Vec<Value> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn set_managed_fields(object: &mut Value, entries: Vec<Value>) {
    if let Some(root) = object.as_object_mut() {
        let metadata = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn entry_paths(entry: &Value) -> BTreeSet<FieldPath> {
    entry.get("fieldsV1").map(flatten).unwrap_or_default()
}

fn is_own_apply(entry: &Value, manager: &str) -> bool {
    entry.get("manager").and_then(Value::as_str) == Some(manager)
        && entry.get("operation").and_then(Value::as_str) == Some("Apply")
}

fn managed_entry(resource: &ResourceInfo, manager: &str, fields: &BTreeSet<FieldPath>) -> Value {
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now());
    serde_json::json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": resource.api_version(),
        "time": format!("{now:.0}"),
        "fieldsType": "FieldsV1",
        "fieldsV1": unflatten(fields),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup_kind;
    use serde_json::json;

    fn deployments() -> &'static ResourceInfo {
        lookup_kind("apps", "Deployment").unwrap()
    }

    fn config(replicas: i64, containers: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": containers}}},
        }))
        .unwrap()
    }

    #[test]
    fn apply_creates_with_managed_fields() {
        let body = config(2, json!([{"name": "web", "image": "host"}]));
        let created = server_side_apply(deployments(), None, &body, "kubectl", false).unwrap();
        let entry = &created["metadata"]["managedFields"][0];
        assert_eq!(entry["manager"], "kubectl");
        assert_eq!(entry["operation"], "Apply");
        assert_eq!(entry["fieldsType"], "FieldsV1");
        let fields = &entry["fieldsV1"];
        assert!(fields.pointer("/f:spec/f:replicas").is_some(), "{fields}");
        let container = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"web"}"#];
        assert!(container.get(".").is_some(), "the element itself is owned: {fields}");
        assert!(container.get("f:image").is_some(), "{fields}");
        assert!(fields["f:metadata"].get("f:name").is_none(), "name is not owned");
    }

    #[test]
    fn apply_merges_into_live_object() {
        let first = config(2, json!([{"name": "web", "image": "host"}]));
        let mut live = server_side_apply(deployments(), None, &first, "kubectl", false).unwrap();
        live["spec"]["paused"] = json!(true);
        live["metadata"]["uid"] = json!("u1");
        let yaml = b"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n";
        let out = server_side_apply(deployments(), Some(&live), yaml, "other", true).unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
        assert_eq!(out["spec"]["paused"], true, "fields absent from the config stay");
        assert_eq!(out["spec"]["template"]["spec"]["containers"][0]["image"], "host");
        assert_eq!(out["metadata"]["uid"], "u1");
        assert_eq!(out["metadata"]["managedFields"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn apply_conflict_without_force() {
        let first = config(2, json!([{"name": "web", "image": "host"}]));
        let live = server_side_apply(deployments(), None, &first, "kubectl", false).unwrap();
        let second = config(5, json!([{"name": "web", "image": "host"}]));
        let err = server_side_apply(deployments(), Some(&live), &second, "ci", false).unwrap_err();
        assert_eq!(err.status_code(), 409);
        assert!(err.to_string().contains("spec.replicas"), "{err}");
        let forced = server_side_apply(deployments(), Some(&live), &second, "ci", true).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let kubectl = &forced["metadata"]["managedFields"][0];
        assert!(kubectl["fieldsV1"].pointer("/f:spec/f:replicas").is_none(), "force moves ownership");
    }

    #[test]
    fn dropped_fields_are_removed() {
        let two = json!([{"name": "web", "image": "host"}, {"name": "log", "image": "host"}]);
        let live = server_side_apply(deployments(), None, &config(2, two), "kubectl", false).unwrap();
        let one = config(2, json!([{"name": "web", "image": "host"}]));
        let out = server_side_apply(deployments(), Some(&live), &one, "kubectl", false).unwrap();
        let containers = out["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0]["name"], "web");
    }

    #[test]
    fn wrong_kind_is_rejected() {
        let body = br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"}}"#;
        let err = server_side_apply(deployments(), None, body, "kubectl", false).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }
}
