//! The label and field selectors of list, watch and delete-collection requests.

use std::collections::BTreeMap;

use capstan_api::resources::ResourceInfo;
use capstan_api::selector::{FieldSelector, LabelSelector};
use serde_json::Value;

use crate::status::ApiError;

/// The parsed `labelSelector` and `fieldSelector` of a request.
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Selectors {
    /// Parses both selectors; a field `resource` cannot be filtered by is a 400.
    pub fn parse(resource: &ResourceInfo, label: Option<&str>, field: Option<&str>) -> Result<Self, ApiError> {
        let labels = match label {
            Some(text) => LabelSelector::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => LabelSelector::default(),
        };
        let fields = match field {
            Some(text) => FieldSelector::parse(text).map_err(|e| ApiError::bad_request(e.to_string()))?,
            None => FieldSelector::default(),
        };
        fields.check_supported(resource).map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(Selectors { labels, fields })
    }

    pub fn matches(&self, object: &Value) -> bool {
        if !self.labels.is_empty() {
            let labels: BTreeMap<String, String> = object["metadata"]["labels"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default();
            if !self.labels.matches(&labels) {
                return false;
            }
        }
        self.fields.matches(object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceInfo {
        capstan_api::resources::lookup("", "v1", "pods").expect("pods")
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "web-1", "labels": {"app": "web", "tier": "front"}},
               "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_terms_and_together() {
        let s = Selectors::parse(pods(), Some("app=web,tier in (front, back),!gone"), None).expect("parse");
        assert!(s.matches(&pod()));
        let s = Selectors::parse(pods(), Some("app=web,tier notin (front)"), None).expect("parse");
        assert!(!s.matches(&pod()));
    }

    #[test]
    fn field_selector_on_pod_fields() {
        let s = Selectors::parse(pods(), None, Some("spec.nodeName=n1,status.phase!=Failed")).expect("parse");
        assert!(s.matches(&pod()));
        let s = Selectors::parse(pods(), None, Some("metadata.name=other")).expect("parse");
        assert!(!s.matches(&pod()));
    }

    #[test]
    fn unsupported_field_is_bad_request() {
        let configmaps = capstan_api::resources::lookup("", "v1", "configmaps").expect("configmaps");
        let error = Selectors::parse(configmaps, None, Some("spec.nodeName=n1")).expect_err("unsupported");
        assert_eq!(error.code_and_reason(), (400, "BadRequest"));
    }
}
