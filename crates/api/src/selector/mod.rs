//! Label and field selectors as list and watch requests carry them (`labelSelector=app=web`,
//! `fieldSelector=spec.nodeName=n1`), with the grammar of apimachinery's `pkg/labels` and
//! `pkg/fields`.

mod field;
mod label;

pub use field::FieldSelector;
pub use label::{LabelSelector, Operator, Requirement};

/// A selector that cannot be parsed or is not supported for a resource. The message is
/// what the API server returns in its 400 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The text does not follow the selector grammar.
    #[error("unable to parse requirement: {detail}")]
    Syntax { detail: String },
    /// A label key or value breaks the label rules.
    #[error("unable to parse requirement: values[0][{key}]: Invalid value: {value:?}: {detail}")]
    InvalidValue { key: String, value: String, detail: String },
    /// A label key breaks the qualified name rule.
    #[error("unable to parse requirement: key: Invalid value: {key:?}: {detail}")]
    InvalidKey { key: String, detail: String },
    /// A field selector term without an operator.
    #[error("invalid selector: '{term}'; can't understand '{term}'")]
    FieldTerm { term: String },
    /// A field selector value with a bad escape or an unescaped `,` or `=`.
    #[error("invalid field selector value {value:?}: {detail}")]
    FieldValue { value: String, detail: String },
    /// A field the resource cannot be filtered by.
    #[error("field label not supported: {field}")]
    UnsupportedField { field: String },
}
