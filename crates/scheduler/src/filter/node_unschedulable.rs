//! NodeUnschedulable: keeps pods off cordoned nodes unless they tolerate the cordon.

use k8s_openapi::api::core::v1::Taint;

use super::{Filter, REASON_UNSCHEDULABLE, Reason, tolerates};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

/// The taint key that a pod tolerates to land on a node with `spec.unschedulable`.
pub const UNSCHEDULABLE_TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        if !node.unschedulable {
            return Ok(());
        }
        let cordon = Taint {
            key: UNSCHEDULABLE_TAINT_KEY.to_string(),
            effect: "NoSchedule".to_string(),
            ..Taint::default()
        };
        if tolerates(&pod.tolerations, &cordon) {
            Ok(())
        } else {
            Err(vec![REASON_UNSCHEDULABLE.into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Toleration;

    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};

    #[test]
    fn cordoned_node_table() {
        let exists = Toleration {
            key: Some(UNSCHEDULABLE_TAINT_KEY.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        };
        let other_key = Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Toleration::default()
        };
        let cases = [
            ("schedulable node", false, vec![], true),
            ("cordoned without toleration", true, vec![], false),
            ("cordoned with toleration", true, vec![exists], true),
            ("cordoned with other toleration", true, vec![other_key], false),
        ];
        for (case, unschedulable, tolerations, fits) in cases {
            let mut node = roomy_node();
            node.unschedulable = unschedulable;
            let mut pod = empty_pod();
            pod.tolerations = tolerations;
            let result = NodeUnschedulable.filter(&pod, &node);
            assert_eq!(result.is_ok(), fits, "{case}");
            if !fits {
                assert_eq!(result.unwrap_err(), vec![Reason::from(REASON_UNSCHEDULABLE)], "{case}");
            }
        }
    }
}
