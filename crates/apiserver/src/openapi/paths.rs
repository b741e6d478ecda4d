//! The `paths` section: collection, item and subresource URLs of each resource, with one
//! operation per verb the resource table lists.

use capstan_api::patch::keys::schema_name;
use capstan_api::resources::{ResourceInfo, Subresource};
use serde_json::{Map, Value, json};

use super::schemas::{DELETE_OPTIONS_SCHEMA, PATCH_SCHEMA, STATUS_SCHEMA};

/// Media types a PATCH accepts. Strategic merge is listed only for kinds with a schema that
/// carries the merge keys, because kubectl computes its apply patch from that schema.
const PATCH_TYPES: &[&str] = &["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"];
const STRATEGIC_MERGE: &str = "application/strategic-merge-patch+json";

const LIST_PARAMETERS: &[(&str, &str, &str)] = &[
    ("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
    ("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
    ("limit", "integer", "The maximum number of objects to return in one page."),
    ("continue", "string", "The continue token of the previous page."),
    ("resourceVersion", "string", "The resource version to list or watch from."),
    ("resourceVersionMatch", "string", "How resourceVersion applies to a list."),
    ("watch", "boolean", "Watch for changes and stream them as watch events."),
    ("allowWatchBookmarks", "boolean", "Ask for BOOKMARK watch events."),
    ("sendInitialEvents", "boolean", "Start a watch with synthetic ADDED events for the current state."),
    ("timeoutSeconds", "integer", "Timeout for the list or watch call, in seconds."),
];
const DRY_RUN: (&str, &str, &str) = ("dryRun", "string", "When All, validate and admit the request without persisting it.");
const FIELD_MANAGER: (&str, &str, &str) = ("fieldManager", "string", "Name of the actor making the change.");
const FIELD_VALIDATION: (&str, &str, &str) =
    ("fieldValidation", "string", "Ignore, Warn or Strict: what to do with unknown or duplicate fields.");
const FORCE: (&str, &str, &str) = ("force", "boolean", "Apply requests only: take fields owned by other managers.");
const DELETE_PARAMETERS: &[(&str, &str, &str)] = &[
    DRY_RUN,
    ("gracePeriodSeconds", "integer", "Seconds before the object is deleted; zero deletes immediately."),
    ("propagationPolicy", "string", "Orphan, Background or Foreground deletion of dependents."),
];

/// The kind whose body an operation sends or returns.
#[derive(Clone, Copy)]
struct Target<'a> {
    group: &'a str,
    version: &'a str,
    kind: &'a str,
    /// Whether `components.schemas` has a schema for the kind.
    typed: bool,
}

impl Target<'_> {
    fn schema(&self) -> Value {
        if self.typed {
            schema_ref(&schema_name(self.group, self.version, self.kind))
        } else {
            json!({"type": "object"})
        }
    }

    fn list_schema(&self) -> Value {
        if self.typed {
            schema_ref(&format!("{}List", schema_name(self.group, self.version, self.kind)))
        } else {
            json!({"type": "object"})
        }
    }
}

/// Builds the paths of one resource. `typed` and `sub_typed` tell which kinds have a schema.
pub(super) fn resource_paths(resource: &ResourceInfo, typed: bool, sub_typed: &[bool]) -> Map<String, Value> {
    let prefix = if resource.group.is_empty() {
        format!("/api/{}", resource.version)
    } else {
        format!("/apis/{}/{}", resource.group, resource.version)
    };
    let collection = if resource.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
    } else {
        format!("{prefix}/{}", resource.plural)
    };
    let item = format!("{collection}/{{name}}");
    let target = Target { group: resource.group, version: resource.version, kind: resource.kind, typed };
    let scope = if resource.namespaced { "Namespaced" } else { "" };
    let has = |verb: &str| resource.verbs.contains(&verb);

    let mut paths = Map::new();
    let mut collection_ops = Map::new();
    if has("list") {
        collection_ops.insert("get".into(), list_operation(&format!("list{scope}"), target));
    }
    if has("create") {
        collection_ops.insert("post".into(), write_operation("post", &format!("create{scope}"), target));
    }
    if has("deletecollection") {
        collection_ops.insert("delete".into(), delete_operation("deletecollection", &format!("deleteCollection{scope}"), target));
    }
    paths.insert(collection.clone(), path_item(collection_ops, resource.namespaced, false));

    let mut item_ops = item_operations(has, scope, target);
    paths.insert(item.clone(), path_item(std::mem::take(&mut item_ops), resource.namespaced, true));

    if resource.namespaced && has("list") {
        let all = format!("{prefix}/{}", resource.plural);
        let ops = Map::from_iter([("get".to_string(), list_operation("listForAllNamespaces", target))]);
        paths.insert(all, path_item(ops, false, false));
    }

    for (sub, typed) in resource.subresources.iter().zip(sub_typed.iter().copied()) {
        paths.insert(format!("{item}/{}", sub.name), subresource_item(resource, sub, typed, scope));
    }
    paths
}

fn item_operations(has: impl Fn(&str) -> bool, scope: &str, target: Target) -> Map<String, Value> {
    let mut ops = Map::new();
    if has("get") {
        ops.insert("get".into(), read_operation(&format!("read{scope}"), target));
    }
    if has("update") {
        ops.insert("put".into(), write_operation("put", &format!("replace{scope}"), target));
    }
    if has("patch") {
        ops.insert("patch".into(), patch_operation(&format!("patch{scope}"), target));
    }
    if has("delete") {
        ops.insert("delete".into(), delete_operation("delete", &format!("delete{scope}"), target));
    }
    ops
}

fn subresource_item(resource: &ResourceInfo, sub: &Subresource, typed: bool, scope: &str) -> Value {
    let target = Target { group: sub.group, version: sub.version, kind: sub.kind, typed };
    let suffix = capitalize(sub.name);
    let has = |verb: &str| sub.verbs.contains(&verb);
    let mut ops = item_operations(has, scope, target);
    if has("create") {
        ops.insert("post".into(), write_operation("post", &format!("create{scope}"), target));
    }
    for op in ops.values_mut() {
        if let Some(Value::String(id)) = op.get_mut("operationId") {
            id.push_str(&suffix);
        }
    }
    path_item(ops, resource.namespaced, true)
}

fn path_item(mut operations: Map<String, Value>, namespaced: bool, named: bool) -> Value {
    let mut parameters = Vec::new();
    if named {
        parameters.push(json!({"name": "name", "in": "path", "required": true, "description": "Name of the object.", "schema": {"type": "string"}}));
    }
    if namespaced {
        parameters.push(json!({"name": "namespace", "in": "path", "required": true, "description": "Namespace of the object.", "schema": {"type": "string"}}));
    }
    operations.insert("parameters".into(), Value::Array(parameters));
    Value::Object(operations)
}

fn operation(action: &str, id: &str, target: Target, parameters: &[(&str, &str, &str)], response: Value) -> Value {
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|(name, kind, description)| {
            json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
        })
        .collect();
    json!({
        "operationId": operation_id(id, target),
        "tags": [tag(target.group, target.version)],
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": response}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": target.group, "version": target.version, "kind": target.kind},
    })
}

fn list_operation(id: &str, target: Target) -> Value {
    operation("list", id, target, LIST_PARAMETERS, target.list_schema())
}

fn read_operation(id: &str, target: Target) -> Value {
    operation("get", id, target, &[], target.schema())
}

fn write_operation(action: &str, id: &str, target: Target) -> Value {
    let mut op = operation(action, id, target, &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION], target.schema());
    op["requestBody"] = json!({"content": {"application/json": {"schema": target.schema()}}, "required": true});
    if action == "post" {
        op["responses"]["201"] = json!({"description": "Created", "content": {"application/json": {"schema": target.schema()}}});
    }
    op
}

fn patch_operation(id: &str, target: Target) -> Value {
    let mut op = operation("patch", id, target, &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE], target.schema());
    let mut content = Map::new();
    let patch = json!({"schema": schema_ref(PATCH_SCHEMA)});
    for media_type in PATCH_TYPES {
        content.insert(media_type.to_string(), patch.clone());
    }
    if target.typed {
        content.insert(STRATEGIC_MERGE.to_string(), patch);
    }
    op["requestBody"] = json!({"content": content, "required": true});
    op["responses"]["201"] = json!({"description": "Created", "content": {"application/json": {"schema": target.schema()}}});
    op
}

fn delete_operation(action: &str, id: &str, target: Target) -> Value {
    let parameters: &[(&str, &str, &str)] = if action == "deletecollection" {
        &[DELETE_PARAMETERS, LIST_PARAMETERS].concat()
    } else {
        DELETE_PARAMETERS
    };
    let mut op = operation(action, id, target, parameters, schema_ref(STATUS_SCHEMA));
    op["requestBody"] = json!({"content": {"application/json": {"schema": schema_ref(DELETE_OPTIONS_SCHEMA)}}});
    op
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// `coreV1`, `appsV1`, `coordinationV1` as upstream tags operations.
fn tag(group: &str, version: &str) -> String {
    let group = group.split('.').next().filter(|g| !g.is_empty()).unwrap_or("core");
    format!("{group}_{version}")
}

/// `patchAppsV1NamespacedDeployment`, in upstream's operation id style.
fn operation_id(verb: &str, target: Target) -> String {
    let group = target.group.split('.').next().filter(|g| !g.is_empty()).unwrap_or("core");
    let (verb, scope) = match verb.strip_suffix("Namespaced") {
        Some(base) => (base, "Namespaced"),
        None => (verb, ""),
    };
    format!("{verb}{}{}{scope}{}", capitalize(group), capitalize(target.version), target.kind)
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
