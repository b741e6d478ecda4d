//! Label selector matching against cached objects, so reconcilers can filter the
//! reflector stores without a list call. The grammar and matching rules are
//! `capstan_api::selector`'s, the same code the API server uses for `labelSelector`.

use std::collections::BTreeMap;

use capstan_api::selector::LabelSelector as ParsedSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

pub use capstan_api::selector::SelectorError;

/// Returns whether `labels` satisfy every term of `selector`.
///
/// An empty selector matches everything, as in Kubernetes. Callers that must not
/// act on everything (controllers with an empty selector) check for that first.
pub fn matches(
    selector: &LabelSelector,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<bool, SelectorError> {
    let parsed = ParsedSelector::from_k8s(selector)?;
    let empty = BTreeMap::new();
    Ok(parsed.matches(labels.unwrap_or(&empty)))
}

/// Returns whether the selector has no terms at all.
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn invalid_operator_is_error() {
        let selector = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "Near".into(),
                values: Some(vec!["x".into()]),
            }]),
            ..LabelSelector::default()
        };
        assert!(matches(&selector, Some(&labels(&[("app", "x")]))).is_err());
    }

    #[test]
    fn empty_selector_detection() {
        assert!(is_empty(&LabelSelector::default()));
        let selector = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            ..LabelSelector::default()
        };
        assert!(!is_empty(&selector));
        assert!(matches(&selector, Some(&labels(&[("app", "web"), ("tier", "a")]))).unwrap());
        assert!(!matches(&selector, None).unwrap());
    }
}
