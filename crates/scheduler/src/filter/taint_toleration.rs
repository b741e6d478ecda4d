//! TaintToleration: rejects nodes with a `NoSchedule` or `NoExecute` taint that the pod
//! does not tolerate. `PreferNoSchedule` taints only matter for scoring, which capstan
//! does not do yet, so they never reject.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use super::{Filter, REASON_UNTOLERATED_TAINT, Reason};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct TaintToleration;

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// Names the first untolerated taint, as kube-scheduler does.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let untolerated = node.taints.iter().find(|taint| {
            matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
                && !tolerates(&pod.tolerations, taint)
        });
        match untolerated {
            None => Ok(()),
            Some(taint) => {
                let value = taint.value.as_deref().unwrap_or_default();
                Err(vec![format!("{REASON_UNTOLERATED_TAINT} {{{}: {value}}}", taint.key).into()])
            }
        }
    }
}

/// Whether any of `tolerations` tolerates `taint`, by the Kubernetes rules: an empty
/// effect matches every effect, an empty key with `Exists` matches every taint, `Exists`
/// ignores the value, and `Equal` (the default operator) compares it.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|toleration| toleration_matches(toleration, taint))
}

fn toleration_matches(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if key.is_empty() {
        return operator == "Exists";
    }
    if key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: (!value.is_empty()).then(|| value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(key: &str, operator: &str, value: &str, effect: &str) -> Toleration {
        let some = |text: &str| (!text.is_empty()).then(|| text.to_string());
        Toleration {
            key: some(key),
            operator: some(operator),
            value: some(value),
            effect: some(effect),
            toleration_seconds: None,
        }
    }

    #[test]
    fn toleration_table() {
        let gpu = taint("gpu", "yes", "NoSchedule");
        let cases = [
            ("equal with same value", toleration("gpu", "Equal", "yes", "NoSchedule"), true),
            ("default operator is equal", toleration("gpu", "", "yes", ""), true),
            ("equal with other value", toleration("gpu", "Equal", "no", "NoSchedule"), false),
            ("exists ignores value", toleration("gpu", "Exists", "", ""), true),
            ("other effect", toleration("gpu", "Exists", "", "NoExecute"), false),
            ("empty key with exists", toleration("", "Exists", "", ""), true),
            ("empty key with equal", toleration("", "Equal", "", ""), false),
            ("other key", toleration("disk", "Exists", "", ""), false),
        ];
        for (case, tol, expected) in cases {
            assert_eq!(tolerates(&[tol], &gpu), expected, "{case}");
        }
    }

    #[test]
    fn taint_effect_table() {
        let cases = [
            ("NoSchedule", false),
            ("NoExecute", false),
            ("PreferNoSchedule", true),
        ];
        for (effect, fits) in cases {
            let mut node = roomy_node();
            node.taints = vec![taint("dedicated", "db", effect)];
            assert_eq!(TaintToleration.filter(&empty_pod(), &node).is_ok(), fits, "{effect}");
        }
    }

    #[test]
    fn reason_quotes_taint() {
        let mut node = roomy_node();
        node.taints = vec![
            taint("soft", "", "PreferNoSchedule"),
            taint("node.kubernetes.io/not-ready", "", "NoExecute"),
        ];
        let reasons = TaintToleration.filter(&empty_pod(), &node).unwrap_err();
        assert_eq!(reasons, vec![Reason::from("node(s) had untolerated taint {node.kubernetes.io/not-ready: }")]);
        node.taints = vec![taint("dedicated", "db", "NoSchedule")];
        let reasons = TaintToleration.filter(&empty_pod(), &node).unwrap_err();
        assert_eq!(reasons, vec![Reason::from("node(s) had untolerated taint {dedicated: db}")]);
    }
}
