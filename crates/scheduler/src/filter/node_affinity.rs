//! NodeAffinity: `spec.nodeSelector` (with the RuntimeClass's selector merged in) and
//! `requiredDuringSchedulingIgnoredDuringExecution` node affinity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

use super::{Filter, REASON_AFFINITY_MISMATCH, Reason};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct NodeAffinity;

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let selector_matches = pod
            .node_selector
            .iter()
            .all(|(key, value)| node.labels.get(key) == Some(value));
        let affinity_matches = pod
            .required_affinity
            .as_ref()
            .is_none_or(|selector| selector_matches_node(selector, node));
        if selector_matches && affinity_matches {
            Ok(())
        } else {
            Err(vec![REASON_AFFINITY_MISMATCH.into()])
        }
    }
}

/// Whether any term matches: terms are ORed, and an empty term list matches no node.
fn selector_matches_node(selector: &NodeSelector, node: &NodeInfo) -> bool {
    selector.node_selector_terms.iter().any(|term| term_matches(term, node))
}

/// Whether every expression of the term matches. A term without expressions and fields
/// matches no node, as in Kubernetes.
fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    let node_fields = BTreeMap::from([("metadata.name".to_string(), node.name.clone())]);
    expressions.iter().all(|requirement| requirement_matches(requirement, &node.labels))
        && fields.iter().all(|requirement| field_requirement_matches(requirement, &node_fields))
}

/// Matches a label requirement. An unknown operator or a `Gt`/`Lt` value that is not a
/// single integer matches nothing, because Kubernetes treats both as invalid selectors.
fn requirement_matches(requirement: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let label = labels.get(&requirement.key);
    match requirement.operator.as_str() {
        "In" => label.is_some_and(|value| values.contains(value)),
        "NotIn" => label.is_none_or(|value| !values.contains(value)),
        "Exists" => label.is_some(),
        "DoesNotExist" => label.is_none(),
        "Gt" | "Lt" => {
            let [bound] = values else { return false };
            let (Ok(bound), Some(Ok(actual))) =
                (bound.parse::<i64>(), label.map(|value| value.parse::<i64>()))
            else {
                return false;
            };
            if requirement.operator == "Gt" { actual > bound } else { actual < bound }
        }
        _ => false,
    }
}

/// Matches a field requirement: only `metadata.name` with `In` or `NotIn` is valid.
fn field_requirement_matches(
    requirement: &NodeSelectorRequirement,
    fields: &BTreeMap<String, String>,
) -> bool {
    if requirement.key != "metadata.name" || !matches!(requirement.operator.as_str(), "In" | "NotIn") {
        return false;
    }
    requirement_matches(requirement, fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};

    fn requirement(key: &str, operator: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn labelled_node() -> NodeInfo {
        let mut node = roomy_node();
        node.labels = BTreeMap::from([
            ("zone".to_string(), "a".to_string()),
            ("cores".to_string(), "8".to_string()),
        ]);
        node
    }

    fn with_terms(terms: Vec<NodeSelectorTerm>) -> PodInfo {
        let mut pod = empty_pod();
        pod.required_affinity = Some(NodeSelector { node_selector_terms: terms });
        pod
    }

    fn expression_term(requirements: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm { match_expressions: Some(requirements), match_fields: None }
    }

    #[test]
    fn match_expressions_table() {
        let cases = [
            ("In matches", requirement("zone", "In", &["a", "b"]), true),
            ("In misses", requirement("zone", "In", &["b"]), false),
            ("NotIn misses", requirement("zone", "NotIn", &["a"]), false),
            ("NotIn on absent label", requirement("rack", "NotIn", &["r1"]), true),
            ("Exists", requirement("zone", "Exists", &[]), true),
            ("Exists on absent label", requirement("rack", "Exists", &[]), false),
            ("DoesNotExist", requirement("rack", "DoesNotExist", &[]), true),
            ("DoesNotExist on present label", requirement("zone", "DoesNotExist", &[]), false),
            ("Gt below", requirement("cores", "Gt", &["4"]), true),
            ("Gt equal", requirement("cores", "Gt", &["8"]), false),
            ("Lt above", requirement("cores", "Lt", &["16"]), true),
            ("Lt with text", requirement("cores", "Lt", &["many"]), false),
            ("Gt on text label", requirement("zone", "Gt", &["1"]), false),
            ("Gt with two values", requirement("cores", "Gt", &["1", "2"]), false),
            ("unknown operator", requirement("zone", "Like", &["a"]), false),
        ];
        for (case, req, fits) in cases {
            let pod = with_terms(vec![expression_term(vec![req])]);
            assert_eq!(NodeAffinity.filter(&pod, &labelled_node()).is_ok(), fits, "{case}");
        }
    }

    #[test]
    fn match_fields_table() {
        let cases = [
            ("name In", requirement("metadata.name", "In", &["n1"]), true),
            ("name In other", requirement("metadata.name", "In", &["n2"]), false),
            ("name NotIn", requirement("metadata.name", "NotIn", &["n1"]), false),
            ("name Exists is invalid", requirement("metadata.name", "Exists", &[]), false),
            ("other field", requirement("metadata.uid", "In", &["n1"]), false),
        ];
        for (case, req, fits) in cases {
            let term = NodeSelectorTerm { match_expressions: None, match_fields: Some(vec![req]) };
            let pod = with_terms(vec![term]);
            assert_eq!(NodeAffinity.filter(&pod, &labelled_node()).is_ok(), fits, "{case}");
        }
    }

    #[test]
    fn terms_are_ored_and_expressions_anded() {
        let miss = expression_term(vec![requirement("zone", "In", &["b"])]);
        let hit = expression_term(vec![requirement("zone", "In", &["a"])]);
        let half = expression_term(vec![
            requirement("zone", "In", &["a"]),
            requirement("cores", "Gt", &["9"]),
        ]);
        let node = labelled_node();
        assert!(NodeAffinity.filter(&with_terms(vec![miss.clone(), hit]), &node).is_ok());
        assert!(NodeAffinity.filter(&with_terms(vec![miss, half]), &node).is_err());
        assert!(NodeAffinity.filter(&with_terms(vec![]), &node).is_err());
        assert!(NodeAffinity.filter(&with_terms(vec![expression_term(vec![])]), &node).is_err());
    }

    #[test]
    fn node_selector_table() {
        let cases = [
            ("empty selector", vec![], true),
            ("matching label", vec![("zone", "a")], true),
            ("wrong value", vec![("zone", "b")], false),
            ("missing label", vec![("zone", "a"), ("disk", "ssd")], false),
        ];
        for (case, selector, fits) in cases {
            let mut pod = empty_pod();
            pod.node_selector = selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let result = NodeAffinity.filter(&pod, &labelled_node());
            assert_eq!(result.is_ok(), fits, "{case}");
            if !fits {
                assert_eq!(result.unwrap_err(), vec![Reason::from(REASON_AFFINITY_MISMATCH)], "{case}");
            }
        }
    }
}
