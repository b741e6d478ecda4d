//! Field errors worded like apimachinery's `field.Error`, and the 422 message built from
//! them.

use std::fmt;

use serde_json::Value;

use crate::resources::ResourceInfo;

/// The kind of a field error, one per apimachinery `field.ErrorType` that validation uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    Invalid,
    Required,
    Duplicate,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    /// A reference to something that does not exist, such as a volume mount naming no volume.
    NotFound,
}

impl FieldErrorKind {
    /// Returns the `reason` of a `StatusCause` (`FieldValueInvalid`).
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The phrase that opens the message body (`Invalid value`).
    fn phrase(self) -> &'static str {
        match self {
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// A field path in Kubernetes syntax: `spec.containers[0].ports[1].containerPort`,
/// `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// The empty path, parent of `metadata` and `spec`.
    pub fn root() -> Path {
        Path(String::new())
    }

    /// The path of a named field below this one.
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{name}", self.0)) }
    }

    /// The path of a list element.
    pub fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, key: &str) -> Path {
        Path(format!("{}[{key}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One validation failure on one field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    /// The field path (`spec.replicas`).
    pub field: String,
    /// The offending value. `None` leaves it out of the message, as `Required` and
    /// `Forbidden` errors do.
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(path: Path, value: Value, detail: impl Into<String>) -> FieldError {
        FieldError { kind: FieldErrorKind::Invalid, field: path.0, value: Some(value), detail: detail.into() }
    }

    pub fn required(path: Path, detail: impl Into<String>) -> FieldError {
        FieldError { kind: FieldErrorKind::Required, field: path.0, value: None, detail: detail.into() }
    }

    pub fn duplicate(path: Path, value: Value) -> FieldError {
        FieldError { kind: FieldErrorKind::Duplicate, field: path.0, value: Some(value), detail: String::new() }
    }

    pub fn not_found(path: Path, value: Value) -> FieldError {
        FieldError { kind: FieldErrorKind::NotFound, field: path.0, value: Some(value), detail: String::new() }
    }

    pub fn forbidden(path: Path, detail: impl Into<String>) -> FieldError {
        FieldError { kind: FieldErrorKind::Forbidden, field: path.0, value: None, detail: detail.into() }
    }

    /// An enum value outside `allowed`; the detail lists the allowed values quoted.
    pub fn not_supported(path: Path, value: Value, allowed: &[&str]) -> FieldError {
        let quoted: Vec<String> = allowed.iter().map(|v| go_quote(v)).collect();
        let detail = if quoted.is_empty() {
            String::new()
        } else {
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError { kind: FieldErrorKind::NotSupported, field: path.0, value: Some(value), detail }
    }

    /// A string longer than `max` bytes.
    pub fn too_long(path: Path, max: usize) -> FieldError {
        let detail = format!("may not be more than {max} bytes");
        FieldError { kind: FieldErrorKind::TooLong, field: path.0, value: None, detail }
    }

    /// A list with more than `max` items.
    pub fn too_many(path: Path, actual: usize, max: usize) -> FieldError {
        let detail = format!("must have at most {max} items");
        FieldError { kind: FieldErrorKind::TooMany, field: path.0, value: Some(Value::from(actual)), detail }
    }

    /// Returns the `reason` of the `StatusCause` for this error (`FieldValueInvalid`).
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }

    /// Formats the message as apimachinery words it: `spec.replicas: Invalid value: -1: must be
    /// greater than or equal to 0`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }

    /// Formats the message without the field path, which is the `StatusCause` message.
    pub fn body(&self) -> String {
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        let mut body = self.kind.phrase().to_string();
        if let (true, Some(value)) = (shows_value, &self.value) {
            body.push_str(": ");
            body.push_str(&format_value(value));
        }
        if !self.detail.is_empty() {
            body.push_str(": ");
            body.push_str(&self.detail);
        }
        body
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

/// Builds the message of a 422 `Invalid` status: `Deployment.apps "web" is invalid: [a,
/// b]`, without brackets for a single error. Repeated messages appear once, as in
/// apimachinery's aggregate error.
pub fn invalid_message(resource: &ResourceInfo, name: &str, errors: &[FieldError]) -> String {
    let qualified_kind = if resource.group.is_empty() {
        resource.kind.to_string()
    } else {
        format!("{}.{}", resource.kind, resource.group)
    };
    let mut messages: Vec<String> = Vec::new();
    for error in errors {
        let message = error.message();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    let joined = match messages.len() {
        1 => messages.remove(0),
        _ => format!("[{}]", messages.join(", ")),
    };
    format!("{qualified_kind} {} is invalid: {joined}", go_quote(name))
}

/// Formats a value as Go's `%v`/`%q`/`%#v` print it in field errors: numbers and booleans
/// bare, strings quoted, string maps as `map[string]string{"k":"v"}`, anything else as JSON.
fn format_value(value: &Value) -> String {
    match value {
        Value::String(text) => go_quote(text),
        Value::Object(map) if !map.is_empty() && map.values().all(Value::is_string) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or_default())))
                .collect();
            format!("map[string]string{{{}}}", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// Quotes a string as Go's `%q` does for printable text.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup_kind;
    use serde_json::json;

    #[test]
    fn messages_follow_apimachinery_wording() {
        let spec = Path::root().child("spec");
        let containers = spec.child("template").child("spec").child("containers");
        let cases = [
            (
                FieldError::invalid(spec.child("replicas"), json!(-1), "must be greater than or equal to 0"),
                "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                FieldError::required(containers.clone(), ""),
                "spec.template.spec.containers: Required value",
            ),
            (
                FieldError::duplicate(containers.index(1).child("name"), json!("web")),
                "spec.template.spec.containers[1].name: Duplicate value: \"web\"",
            ),
            (
                FieldError::not_supported(spec.child("type"), json!("Foo"), &["ClusterIP", "ExternalName"]),
                "spec.type: Unsupported value: \"Foo\": supported values: \"ClusterIP\", \"ExternalName\"",
            ),
            (
                FieldError::invalid(spec.child("labels"), json!({"b": "2", "a": "1"}), "bad"),
                "spec.labels: Invalid value: map[string]string{\"a\":\"1\", \"b\":\"2\"}: bad",
            ),
            (
                FieldError::too_long(Path::root().child("metadata").child("annotations"), 262144),
                "metadata.annotations: Too long: may not be more than 262144 bytes",
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.message(), expected);
        }
    }

    #[test]
    fn reasons_match_status_causes() {
        let error = FieldError::required(Path::root().child("spec"), "");
        assert_eq!(error.reason(), "FieldValueRequired");
        let error = FieldError::not_supported(Path::root().child("x"), json!("y"), &["z"]);
        assert_eq!(error.reason(), "FieldValueNotSupported");
    }

    #[test]
    fn invalid_message_brackets_only_several() {
        let deployments = lookup_kind("apps", "Deployment").unwrap();
        let one = [FieldError::invalid(Path::root().child("spec").child("replicas"), json!(-1), "must be greater than or equal to 0")];
        assert_eq!(
            invalid_message(deployments, "web", &one),
            "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let pods = lookup_kind("", "Pod").unwrap();
        let two = [
            FieldError::required(Path::root().child("a"), ""),
            FieldError::required(Path::root().child("b"), ""),
            FieldError::required(Path::root().child("b"), ""),
        ];
        assert_eq!(
            invalid_message(pods, "p", &two),
            "Pod \"p\" is invalid: [a: Required value, b: Required value]"
        );
    }

    #[test]
    fn quoting_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("é"), "\"é\"");
    }
}
