//! Strict field validation (`fieldValidation=Strict` and `Warn`): unknown and duplicate
//! fields in a request body, found by walking the JSON against each kind's schema.
//!
//! k8s-openapi's deserializers ignore unknown fields, so the server has to look for them
//! itself. The schemas come from k8s-openapi's `schemars` implementations and are generated
//! once, on first use.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::node::v1::RuntimeClass;
use schemars::SchemaGenerator;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::resources::ResourceInfo;

/// The schemas of every served kind, sharing one table of definitions.
struct Schemas {
    /// The root schema (a `$ref`) of each kind, keyed by group and kind.
    roots: HashMap<(&'static str, &'static str), Value>,
    definitions: Map<String, Value>,
}

fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut generator = SchemaGenerator::default();
        let mut roots = HashMap::new();
        let mut add = |group: &'static str, kind: &'static str, schema: schemars::Schema| {
            roots.insert((group, kind), schema.to_value());
        };
        add("", "Namespace", generator.subschema_for::<Namespace>());
        add("", "Node", generator.subschema_for::<Node>());
        add("", "Pod", generator.subschema_for::<Pod>());
        add("", "Service", generator.subschema_for::<Service>());
        add("", "Endpoints", generator.subschema_for::<Endpoints>());
        add("", "ConfigMap", generator.subschema_for::<ConfigMap>());
        add("", "Secret", generator.subschema_for::<Secret>());
        add("", "Event", generator.subschema_for::<Event>());
        add("", "ServiceAccount", generator.subschema_for::<ServiceAccount>());
        add("coordination.k8s.io", "Lease", generator.subschema_for::<Lease>());
        add("node.k8s.io", "RuntimeClass", generator.subschema_for::<RuntimeClass>());
        add("apps", "Deployment", generator.subschema_for::<Deployment>());
        add("apps", "ReplicaSet", generator.subschema_for::<ReplicaSet>());
        add("batch", "Job", generator.subschema_for::<Job>());
        add("discovery.k8s.io", "EndpointSlice", generator.subschema_for::<EndpointSlice>());
        let definitions = generator.take_definitions(true);
        Schemas { roots, definitions }
    })
}

/// Returns the schema `schema` points to when it is a `$ref`, else `schema` itself.
fn resolve<'a>(schema: &'a Value, definitions: &'a Map<String, Value>) -> &'a Value {
    let mut current = schema;
    // A chain of references is at most a few links long; the bound guards against loops.
    for _ in 0..8 {
        let Some(reference) = current.get("$ref").and_then(Value::as_str) else { break };
        let name = reference.rsplit('/').next().unwrap_or(reference).replace("~1", "/").replace("~0", "~");
        match definitions.get(&name) {
            Some(target) => current = target,
            None => break,
        }
    }
    current
}

/// Lists the fields of `object` that the schema of `resource` does not define, as
/// Kubernetes words them: `unknown field "spec.template.spec.containers[0].bogus"`.
/// A kind without a schema here has no unknown fields.
pub fn unknown_fields(resource: &ResourceInfo, object: &Value) -> Vec<String> {
    let schemas = schemas();
    let Some(root) = schemas.roots.get(&(resource.group, resource.kind)) else { return Vec::new() };
    let mut unknown = Vec::new();
    walk(root, object, "", &schemas.definitions, &mut unknown);
    unknown.into_iter().map(|path| format!("unknown field \"{path}\"")).collect()
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn walk(schema: &Value, value: &Value, path: &str, definitions: &Map<String, Value>, unknown: &mut Vec<String>) {
    let schema = resolve(schema, definitions);
    // IntOrString and Quantity accept a number or a string and have no fields.
    if schema.get("x-kubernetes-int-or-string").is_some() {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                let child_path = join(path, key);
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => walk(child_schema, child, &child_path, definitions, unknown),
                    (None, Some(entry_schema)) => walk(entry_schema, child, &child_path, definitions, unknown),
                    // An object schema with neither list (RawExtension, FieldsV1) takes any field.
                    (None, None) if properties.is_some() => unknown.push(child_path),
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.get("items") else { return };
            for (index, item) in items.iter().enumerate() {
                walk(item_schema, item, &format!("{path}[{index}]"), definitions, unknown);
            }
        }
        _ => {}
    }
}

/// Lists the object keys that appear more than once in a JSON document, as Kubernetes
/// words them: `duplicate field "spec.replicas"`. Text that is not JSON has none; the
/// caller's decoding reports that.
pub fn duplicate_fields(raw_json: &[u8]) -> Vec<String> {
    let mut duplicates = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(raw_json);
    let seed = DuplicateFinder { path: String::new(), duplicates: &mut duplicates };
    if seed.deserialize(&mut deserializer).is_err() {
        return Vec::new();
    }
    duplicates.into_iter().map(|path| format!("duplicate field \"{path}\"")).collect()
}

/// Walks any JSON value, recording the path of every repeated object key.
struct DuplicateFinder<'a> {
    path: String,
    duplicates: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for DuplicateFinder<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DuplicateFinder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let child_path = join(&self.path, &key);
            if !seen.insert(key) {
                self.duplicates.push(child_path.clone());
            }
            map.next_value_seed(DuplicateFinder { path: child_path, duplicates: self.duplicates })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            let path = format!("{}[{index}]", self.path);
            if seq.next_element_seed(DuplicateFinder { path, duplicates: self.duplicates })?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
#[path = "strict_tests.rs"]
mod tests;
