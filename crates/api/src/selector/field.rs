//! Field selectors: `spec.nodeName=n1,status.phase!=Failed`.

use serde_json::Value;

use super::SelectorError;
use crate::resources::ResourceInfo;

/// Fields every resource can be filtered by.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Extra fields per kind, as the reference server registers them for field selectors.
fn kind_fields(resource: &ResourceInfo) -> &'static [&'static str] {
    match (resource.group, resource.kind) {
        ("", "Pod") => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        ("", "Event") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "Node") => &["spec.unschedulable"],
        ("", "Secret") => &["type"],
        ("", "Namespace") => &["status.phase"],
        ("apps", "ReplicaSet") => &["status.replicas"],
        _ => &[],
    }
}

/// The value a missing field takes, where the reference server reads it from a non-pointer
/// Go field (`false`, `0`) rather than from an empty string.
fn default_value(field: &str) -> &'static str {
    match field {
        "spec.unschedulable" | "spec.hostNetwork" => "false",
        "status.replicas" => "0",
        _ => "",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Term {
    field: String,
    negated: bool,
    value: String,
}

/// A parsed field selector: `field=value` and `field!=value` terms that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// Parses `f=v`, `f==v` and `f!=v` terms separated by commas. In values, `\,`, `\=`
    /// and `\\` stand for the literal characters. Empty text selects everything.
    pub fn parse(text: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::new();
        for part in split_unescaped(text, ',') {
            if part.is_empty() {
                continue;
            }
            terms.push(parse_term(part)?);
        }
        Ok(FieldSelector { terms })
    }

    /// Checks every field is supported for `resource`.
    pub fn check_supported(&self, resource: &ResourceInfo) -> Result<(), SelectorError> {
        let extra = kind_fields(resource);
        for term in &self.terms {
            let field = term.field.as_str();
            if !COMMON_FIELDS.contains(&field) && !extra.contains(&field) {
                return Err(SelectorError::UnsupportedField { field: term.field.clone() });
            }
        }
        Ok(())
    }

    /// Whether `object` satisfies every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| (field_value(object, &term.field) == term.value) != term.negated)
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value the selector requires for `field` with `=`, if any. The API server can
    /// use it to narrow a list (`metadata.name=web`) before filtering.
    pub fn exact_value(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && !t.negated).map(|t| t.value.as_str())
    }
}

/// Splits on `separator` where it is not escaped by a backslash.
fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(&text[start..index]);
            start = index + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_term(term: &str) -> Result<Term, SelectorError> {
    // The first operator in the term wins; `!=` and `==` are tried before `=` at each
    // position, so `a!=b` is never read as `a!` = `b`.
    for (index, _) in term.char_indices() {
        let rest = &term[index..];
        for (operator, negated) in [("!=", true), ("==", false), ("=", false)] {
            if rest.starts_with(operator) {
                let field = term[..index].trim().to_string();
                let value = unescape(&rest[operator.len()..])?;
                return Ok(Term { field, negated, value });
            }
        }
    }
    Err(SelectorError::FieldTerm { term: term.to_string() })
}

fn unescape(value: &str) -> Result<String, SelectorError> {
    let error = |detail: &str| SelectorError::FieldValue { value: value.to_string(), detail: detail.to_string() };
    let mut result = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => result.push(escaped),
                Some(other) => return Err(error(&format!("invalid escape sequence \\{other}"))),
                None => return Err(error("ends with an unfinished escape sequence")),
            },
            ',' | '=' => return Err(error(&format!("unescaped {c}"))),
            c => result.push(c),
        }
    }
    Ok(result)
}

/// Reads a selectable field from an object as the string the selector compares.
fn field_value(object: &Value, field: &str) -> String {
    let mut current = object;
    for segment in field.split('.') {
        match current.get(segment) {
            Some(next) => current = next,
            None => return default_value(field).to_string(),
        }
    }
    match current {
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::Null => default_value(field).to_string(),
        // An event's `source` selects on its component.
        Value::Object(map) => map.get("component").and_then(Value::as_str).unwrap_or_default().to_string(),
        Value::Array(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup_kind;
    use serde_json::json;

    #[test]
    fn field_selector_matching() {
        let pod = json!({
            "metadata": {"name": "web-1", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running"},
        });
        let cases = [
            ("", true),
            ("metadata.name=web-1", true),
            ("metadata.name==web-1", true),
            ("metadata.name!=web-1", false),
            ("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed", true),
            ("spec.nodeName=n2", false),
            ("spec.schedulerName=", true),
            ("status.podIP!=", false),
        ];
        for (text, expected) in cases {
            let selector = FieldSelector::parse(text).unwrap();
            assert_eq!(selector.matches(&pod), expected, "selector {text:?}");
        }
    }

    #[test]
    fn field_selector_defaults_and_sources() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(FieldSelector::parse("spec.unschedulable=false").unwrap().matches(&node));
        let event = json!({"metadata": {"name": "e"}, "source": {"component": "kubelet"}, "type": "Normal"});
        assert!(FieldSelector::parse("source=kubelet,type=Normal").unwrap().matches(&event));
        let replica_set = json!({"metadata": {"name": "rs"}, "status": {"replicas": 3}});
        assert!(FieldSelector::parse("status.replicas=3").unwrap().matches(&replica_set));
        assert!(FieldSelector::parse("status.replicas=0").unwrap().matches(&json!({"metadata": {}})));
    }

    #[test]
    fn field_selector_escapes() {
        let object = json!({"metadata": {"name": "a,b=c\\d"}});
        let selector = FieldSelector::parse("metadata.name=a\\,b\\=c\\\\d").unwrap();
        assert_eq!(selector.exact_value("metadata.name"), Some("a,b=c\\d"));
        assert!(selector.matches(&object));
        let bad = ["metadata.name", "metadata.name=a\\x", "metadata.name=a=b", "metadata.name=a\\"];
        for text in bad {
            assert!(FieldSelector::parse(text).is_err(), "{text:?} should not parse");
        }
    }

    #[test]
    fn supported_fields_per_kind() {
        let pods = lookup_kind("", "Pod").unwrap();
        let events = lookup_kind("", "Event").unwrap();
        let secrets = lookup_kind("", "Secret").unwrap();
        let cases = [
            (pods, "spec.nodeName=n1,metadata.namespace=default", None),
            (pods, "spec.foo=1", Some("field label not supported: spec.foo")),
            (events, "involvedObject.uid=1,involvedObject.kind=Pod,reason=Started", None),
            (secrets, "type=Opaque", None),
            (secrets, "status.phase=Active", Some("field label not supported: status.phase")),
        ];
        for (resource, text, expected) in cases {
            let result = FieldSelector::parse(text).unwrap().check_supported(resource);
            assert_eq!(result.err().map(|e| e.to_string()).as_deref(), expected, "{} {text:?}", resource.kind);
        }
    }
}
