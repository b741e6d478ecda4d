//! The object rules the handlers apply, from `capstan_api`: defaulting, validation,
//! strict decoding, patches and Table output, with their errors mapped to API statuses.

use capstan_api::patch::{PatchError, PatchType};
use capstan_api::resources::ResourceInfo;
use capstan_api::table::IncludeObject;
use capstan_api::{defaults, strict, table as tables, validation};
use serde_json::Value;

use crate::meta;
use crate::status::{ApiError, Cause};

/// Fills in server-side defaults.
pub fn apply_defaults(resource: &ResourceInfo, object: &mut Value) {
    defaults::apply_defaults(resource, object);
}

/// Validates an object about to be stored; `old` is the stored version on updates.
pub fn validate(resource: &ResourceInfo, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Err(errors) = validation::validate(resource, object, old) else {
        return Ok(());
    };
    Err(invalid(resource, object, &errors))
}

/// Builds the 422 `Invalid` status for `errors` found in `object`.
pub fn invalid(resource: &ResourceInfo, object: &Value, errors: &[validation::FieldError]) -> ApiError {
    let name = meta::name(object).unwrap_or_default();
    let causes = errors
        .iter()
        .map(|e| Cause { reason: e.reason().to_string(), message: e.body(), field: e.field.clone() })
        .collect();
    ApiError::Invalid {
        group: resource.group.to_string(),
        kind: resource.kind.to_string(),
        name: name.clone(),
        message: validation::invalid_message(resource, &name, errors),
        causes,
    }
}

/// Lists the `unknown field "…"` and `duplicate field "…"` problems of a decoded body. Unknown
/// fields come back as paths too, so the caller can drop them.
pub fn field_problems(resource: &ResourceInfo, object: &Value, raw: &[u8]) -> (Vec<String>, Vec<String>) {
    let unknown = strict::unknown_fields(resource, object);
    let mut problems = unknown.clone();
    // duplicates can only be found in JSON text; YAML bodies are checked by their parser
    if raw.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        problems.extend(strict::duplicate_fields(raw));
    }
    let paths = unknown.iter().filter_map(|problem| quoted(problem)).collect();
    (problems, paths)
}

/// Returns the text between the first and the last double quote.
fn quoted(text: &str) -> Option<String> {
    let start = text.find('"')?;
    let end = text.rfind('"')?;
    (end > start).then(|| text[start + 1..end].to_string())
}

/// Removes fields by path (`spec.template.spec.containers[0].bogus`).
pub fn drop_fields(object: &mut Value, paths: &[String]) {
    for path in paths {
        let (pointer, last) = match path.rsplit_once('.') {
            Some((parent, last)) => (to_pointer(parent), last),
            None => (String::new(), path.as_str()),
        };
        if let Some(map) = object.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            map.remove(last);
        }
    }
}

/// Converts `a.b[0].c` to the JSON pointer `/a/b/0/c`.
fn to_pointer(path: &str) -> String {
    let mut pointer = String::new();
    for segment in path.split('.') {
        let mut parts = segment.split('[');
        if let Some(key) = parts.next() {
            pointer.push('/');
            pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
        }
        for index in parts {
            pointer.push('/');
            pointer.push_str(index.trim_end_matches(']'));
        }
    }
    pointer
}

/// Reads the patch type from the request's Content-Type and parameters.
pub fn patch_type(content_type: &str, field_manager: Option<&str>, force: bool) -> Result<PatchType, ApiError> {
    PatchType::from_content_type(content_type, field_manager, force).map_err(|e| patch_error(e, None, ""))
}

/// Applies a patch to the current object, or for server-side apply to no object.
pub fn apply_patch(
    resource: &ResourceInfo,
    patch_type: &PatchType,
    current: Option<&Value>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let name = current.and_then(meta::name).unwrap_or_default();
    capstan_api::patch::apply_patch(resource, patch_type, current, body).map_err(|e| patch_error(e, Some(resource), &name))
}

fn patch_error(error: PatchError, resource: Option<&ResourceInfo>, name: &str) -> ApiError {
    let message = error.to_string();
    match (error, resource) {
        (PatchError::NotFound { .. }, Some(resource)) => ApiError::not_found(resource, name),
        (PatchError::Conflict { .. }, Some(resource)) => ApiError::conflict(resource, name, message),
        (PatchError::Invalid(_), Some(resource)) => ApiError::Invalid {
            group: resource.group.to_string(),
            kind: resource.kind.to_string(),
            name: name.to_string(),
            // kubectl prints only the causes of an Invalid status, so the reason goes there
            causes: vec![Cause { reason: "FieldValueInvalid".into(), message: message.clone(), field: "patch".into() }],
            message,
        },
        (PatchError::UnsupportedMediaType { .. }, _) => ApiError::UnsupportedMediaType { message },
        _ => ApiError::bad_request(message),
    }
}

/// Parses the `includeObject` parameter of Table requests.
pub fn include_object(value: Option<&str>) -> Result<IncludeObject, ApiError> {
    match value {
        None => Ok(IncludeObject::default()),
        Some(text) => IncludeObject::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!("invalid includeObject \"{text}\": use None, Metadata or Object"))
        }),
    }
}

/// Builds a `meta.k8s.io/v1` Table; `with_columns` false leaves the column definitions out
/// (watch events after the first).
pub fn table(
    resource: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    with_columns: bool,
    resource_version: &str,
) -> Value {
    tables::to_table(resource, objects, include, with_columns, resource_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn configmaps() -> &'static ResourceInfo {
        capstan_api::resources::lookup("", "v1", "configmaps").expect("configmaps")
    }

    #[test]
    fn uppercase_name_is_invalid() {
        let object = json!({"metadata": {"name": "Web"}});
        let error = validate(configmaps(), &object, None).expect_err("invalid name");
        assert_eq!(error.code_and_reason(), (422, "Invalid"));
        let status = error.to_status();
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    }

    #[test]
    fn drop_fields_removes_indexed_path() {
        let mut object = json!({"spec": {"containers": [{"name": "a", "bogus": 1}], "x": 2}});
        drop_fields(&mut object, &["spec.containers[0].bogus".to_string(), "spec.x".to_string()]);
        assert_eq!(object, json!({"spec": {"containers": [{"name": "a"}]}}));
    }

    #[test]
    fn unknown_field_paths_are_extracted() {
        let deployments = capstan_api::resources::lookup("apps", "v1", "deployments").expect("deployments");
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}, "spec": {"bogus": 1}});
        let raw = serde_json::to_vec(&object).expect("encode");
        let (problems, paths) = field_problems(deployments, &object, &raw);
        assert_eq!(problems, vec!["unknown field \"spec.bogus\"".to_string()]);
        assert_eq!(paths, vec!["spec.bogus".to_string()]);
    }

    #[test]
    fn merge_patch_on_missing_object_is_not_found() {
        let error = apply_patch(configmaps(), &PatchType::Merge, None, b"{}").expect_err("missing");
        assert_eq!(error.code_and_reason().0, 404);
    }
}
