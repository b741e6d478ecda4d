//! Reading and writing `metadata` of objects held as JSON values.

use capstan_api::resources::ResourceInfo;
use capstan_store::KeyValue;
use serde_json::{Map, Value, json};

use crate::status::ApiError;

pub fn name(object: &Value) -> Option<String> {
    object["metadata"]["name"].as_str().map(str::to_string)
}

pub fn namespace(object: &Value) -> Option<String> {
    object["metadata"]["namespace"].as_str().map(str::to_string)
}

pub fn uid(object: &Value) -> Option<String> {
    object["metadata"]["uid"].as_str().map(str::to_string)
}

pub fn resource_version(object: &Value) -> Option<String> {
    object["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
        .map(str::to_string)
}

/// Returns the `metadata` map, created when absent. Fails when `metadata` is not an object.
pub fn metadata_mut(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let root = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a JSON object"))?;
    let metadata = root.entry("metadata").or_insert_with(|| json!({}));
    metadata
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))
}

/// Checks whether the object still has finalizers that block its removal. Namespaces count
/// `spec.finalizers` too, which the namespace controller clears once the namespace is empty.
pub fn has_finalizers(resource: &ResourceInfo, object: &Value) -> bool {
    let listed = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty());
    listed(&object["metadata"]["finalizers"])
        || (resource.kind == "Namespace" && listed(&object["spec"]["finalizers"]))
}

pub fn is_deleting(object: &Value) -> bool {
    !object["metadata"]["deletionTimestamp"].is_null()
}

/// Formats the current time in the form `metav1.Time` uses (RFC 3339, second precision, UTC).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Decodes a stored value and sets `resourceVersion`, `apiVersion` and `kind`.
pub fn decode_stored(resource: &ResourceInfo, kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    stamp(resource, &mut object, kv.mod_revision);
    Ok(object)
}

/// Sets `apiVersion`, `kind` and `metadata.resourceVersion` on an object.
pub fn stamp(resource: &ResourceInfo, object: &mut Value, revision: u64) {
    if let Some(root) = object.as_object_mut() {
        root.insert("apiVersion".into(), json!(resource.api_version()));
        root.insert("kind".into(), json!(resource.kind));
        if let Some(metadata) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.insert("resourceVersion".into(), json!(revision.to_string()));
        }
    }
}

/// Encodes an object for the store. The resource version is left out because the store's
/// mod revision is the source of truth for it.
pub fn encode_for_store(object: &Value) -> Result<Vec<u8>, ApiError> {
    let mut copy = object.clone();
    if let Some(metadata) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    serde_json::to_vec(&copy).map_err(ApiError::internal)
}

/// Parses a resource version the client sent.
pub fn parse_revision(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version \"{text}\": expected a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_stored_sets_revision_and_kind() {
        let configmaps = capstan_api::resources::lookup("", "v1", "configmaps").expect("configmaps");
        let kv = KeyValue {
            key: "/registry/core/configmaps/default/a".into(),
            value: br#"{"metadata":{"name":"a"}}"#.to_vec(),
            create_revision: 4,
            mod_revision: 7,
        };
        let object = decode_stored(configmaps, &kv).expect("decode");
        assert_eq!(object["metadata"]["resourceVersion"], "7");
        assert_eq!(object["kind"], "ConfigMap");
        assert_eq!(object["apiVersion"], "v1");
    }

    #[test]
    fn namespace_spec_finalizers_block_removal() {
        let namespaces = capstan_api::resources::lookup("", "v1", "namespaces").expect("namespaces");
        let object = json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}});
        assert!(has_finalizers(namespaces, &object));
    }

    #[test]
    fn non_numeric_revision_is_bad_request() {
        assert!(parse_revision("abc").is_err());
        assert_eq!(parse_revision("12").expect("number"), 12);
    }
}
