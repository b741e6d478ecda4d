//! Decoding of request bodies: JSON or YAML, type checks and `fieldValidation`.

use capstan_api::resources::ResourceInfo;
use serde_json::Value;

use crate::routes::ApiRequest;
use crate::rules;
use crate::status::ApiError;

/// The treatment of unknown and duplicate fields (`fieldValidation` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    /// Reads the parameter; the reference server defaults to `Warn` when it is absent.
    pub fn from_request(request: &ApiRequest) -> Result<Self, ApiError> {
        match request.param("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}; use Ignore, Warn or Strict"
            ))),
        }
    }
}

/// Parses a JSON or YAML body into a JSON value.
pub fn parse_body(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let media = content_type.split(';').next().unwrap_or("").trim();
    if media == "application/vnd.kubernetes.protobuf" {
        return crate::protobuf::decode(body).map_err(|error| match error {
            crate::protobuf::ProtobufError::UnsupportedKind { .. }
            | crate::protobuf::ProtobufError::UnsupportedField { .. } => {
                ApiError::UnsupportedMediaType { message: error.to_string() }
            }
            other => ApiError::bad_request(other.to_string()),
        });
    }
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(ApiError::UnsupportedMediaType {
            message: format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {media})"),
        });
    }
    if media.ends_with("yaml") {
        serde_norway::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode the YAML body: {e}")))
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode the JSON body: {e}")))
    }
}

/// Checks that a body's `apiVersion` and `kind`, when present, name the expected type.
pub fn check_type(object: &Value, api_version: &str, kind: &str) -> Result<(), ApiError> {
    if let Some(found) = object.get("apiVersion").and_then(Value::as_str)
        && found != api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({found}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(found) = object.get("kind").and_then(Value::as_str)
        && found != kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({found}) does not match the expected kind ({kind})"
        )));
    }
    Ok(())
}

/// A decoded object of the request's resource, with unknown fields removed.
pub struct Decoded {
    pub object: Value,
    /// `Warning` header texts for dropped fields under `fieldValidation=Warn`.
    pub warnings: Vec<String>,
}

/// Decodes the request body as an object of `resource` and applies `fieldValidation`.
pub fn decode_object(request: &ApiRequest, resource: &ResourceInfo) -> Result<Decoded, ApiError> {
    let mode = FieldValidation::from_request(request)?;
    let mut object = parse_body(request.content_type(), &request.body)?;
    if !object.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON or YAML object"));
    }
    check_type(&object, &resource.api_version(), resource.kind)?;
    let warnings = enforce_field_validation(mode, resource, &mut object, &request.body)?;
    Ok(Decoded { object, warnings })
}

/// Applies the `fieldValidation` mode to a decoded object: `Strict` rejects unknown and
/// duplicate fields, `Warn` and `Ignore` drop them. Returns the warnings to send.
pub fn enforce_field_validation(
    mode: FieldValidation,
    resource: &ResourceInfo,
    object: &mut Value,
    raw: &[u8],
) -> Result<Vec<String>, ApiError> {
    let (problems, unknown_paths) = rules::field_problems(resource, object, raw);
    rules::drop_fields(object, &unknown_paths);
    match mode {
        FieldValidation::Strict if !problems.is_empty() => Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            problems.join(", ")
        ))),
        FieldValidation::Warn => Ok(problems),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_body_decodes() {
        let object = parse_body("application/yaml", b"kind: ConfigMap\nmetadata:\n  name: a\n").expect("yaml");
        assert_eq!(object["metadata"]["name"], "a");
    }

    #[test]
    fn wrong_kind_is_bad_request() {
        let object = serde_json::json!({"apiVersion": "v1", "kind": "Secret"});
        let error = check_type(&object, "v1", "ConfigMap").expect_err("kind mismatch");
        assert_eq!(error.code_and_reason(), (400, "BadRequest"));
    }

    #[test]
    fn empty_body_is_bad_request() {
        assert!(parse_body("application/json", b"  ").is_err());
    }
}
