//! ConfigMap, Secret and Namespace rules.

use serde_json::Value;

use super::{FieldError, Path, array_field, str_field};
use crate::meta;

/// Maximum total size of a ConfigMap's or Secret's data, in bytes.
const DATA_MAX_BYTES: usize = 1024 * 1024;

/// Keys each built-in Secret type requires in `data`.
fn required_secret_keys(secret_type: &str) -> &'static [&'static str] {
    match secret_type {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

/// Checks the keys of `data` and `binaryData`, and their total size.
fn validate_data_keys(object: &Value, fields: &[&str], errors: &mut Vec<FieldError>) {
    let mut total = 0;
    let mut seen: Vec<&str> = Vec::new();
    for name in fields {
        let Some(map) = object.get(*name).and_then(Value::as_object) else { continue };
        let path = Path::root().child(name);
        for (key, value) in map {
            for problem in meta::config_map_key(key) {
                errors.push(FieldError::invalid(path.key(key), Value::from(key.as_str()), problem));
            }
            if seen.contains(&key.as_str()) {
                let detail = "duplicate of key present in data";
                errors.push(FieldError::invalid(path.key(key), Value::from(key.as_str()), detail));
            }
            seen.push(key);
            total += value.as_str().map_or(0, str::len);
        }
    }
    if total > DATA_MAX_BYTES {
        errors.push(FieldError::too_long(Path::root().child(fields[0]), DATA_MAX_BYTES));
    }
}

pub(super) fn validate_config_map(object: &Value, errors: &mut Vec<FieldError>) {
    validate_data_keys(object, &["data", "binaryData"], errors);
}

pub(super) fn validate_secret(object: &Value, old: Option<&Value>, errors: &mut Vec<FieldError>) {
    validate_data_keys(object, &["data", "stringData"], errors);
    let secret_type = str_field(Some(object), "type").unwrap_or("Opaque");
    let data_path = Path::root().child("data");
    for key in required_secret_keys(secret_type) {
        let present = [object.get("data"), object.get("stringData")]
            .into_iter()
            .any(|map| map.and_then(|m| m.get(*key)).is_some());
        if !present {
            errors.push(FieldError::required(data_path.key(key), ""));
        }
    }
    if secret_type == "kubernetes.io/basic-auth" {
        let has = |key: &str| object.get("data").and_then(|d| d.get(key)).is_some();
        if !has("username") && !has("password") {
            let detail = "either username or password is required";
            errors.push(FieldError::required(data_path.key("username"), detail));
        }
    }
    if let Some(old) = old {
        let old_type = str_field(Some(old), "type").unwrap_or("Opaque");
        if old_type != secret_type {
            errors.push(FieldError::invalid(Path::root().child("type"), Value::from(secret_type), "field is immutable"));
        }
        if old.get("immutable") == Some(&Value::Bool(true)) && old.get("data") != object.get("data") {
            let detail = "field is immutable when `immutable` is set";
            errors.push(FieldError::forbidden(data_path, detail));
        }
    }
}

/// Validates a Namespace's `spec.finalizers`: qualified names, or the standard `kubernetes`.
pub(super) fn validate_namespace(object: &Value, errors: &mut Vec<FieldError>) {
    let path = Path::root().child("spec").child("finalizers");
    for (index, finalizer) in array_field(object.get("spec"), "finalizers").iter().enumerate() {
        let name = finalizer.as_str().unwrap_or_default();
        let problems = meta::qualified_name(name);
        for problem in &problems {
            errors.push(FieldError::invalid(path.index(index), finalizer.clone(), problem.clone()));
        }
        if problems.is_empty() && !name.contains('/') && name != "kubernetes" {
            let detail = "name is neither a standard finalizer name nor is it fully qualified";
            errors.push(FieldError::invalid(path.index(index), finalizer.clone(), detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(check: fn(&Value, &mut Vec<FieldError>), object: Value) -> Vec<String> {
        let mut errors = Vec::new();
        check(&object, &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    fn secret(object: &Value, errors: &mut Vec<FieldError>) {
        validate_secret(object, None, errors);
    }

    #[test]
    fn data_and_finalizer_rules() {
        type Check = fn(&Value, &mut Vec<FieldError>);
        let cases: Vec<(Check, Value, Vec<&str>)> = vec![
            (validate_config_map, json!({"data": {"app.properties": "x", "KEY_1": "y"}}), vec![]),
            (
                validate_config_map,
                json!({"data": {"a/b": "x"}}),
                vec!["data[a/b]: Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"],
            ),
            (
                validate_config_map,
                json!({"data": {"k": "x"}, "binaryData": {"k": "eA=="}}),
                vec!["binaryData[k]: Invalid value: \"k\": duplicate of key present in data"],
            ),
            (secret, json!({"type": "Opaque", "data": {"k": "eA=="}}), vec![]),
            (
                secret,
                json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}),
                vec!["data[tls.key]: Required value"],
            ),
            (validate_namespace, json!({"spec": {"finalizers": ["kubernetes", "example.com/x"]}}), vec![]),
            (
                validate_namespace,
                json!({"spec": {"finalizers": ["custom"]}}),
                vec!["spec.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"],
            ),
        ];
        for (check, object, expected) in cases {
            assert_eq!(messages(check, object.clone()), expected, "object {object}");
        }
    }

    #[test]
    fn secret_type_is_immutable() {
        let old = json!({"type": "Opaque"});
        let new = json!({"type": "kubernetes.io/basic-auth", "data": {"username": "eA=="}});
        let mut errors = Vec::new();
        validate_secret(&new, Some(&old), &mut errors);
        let messages: Vec<String> = errors.iter().map(FieldError::message).collect();
        assert_eq!(messages, ["type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable"]);
    }
}
