//! NodeReady: skips nodes whose `Ready` condition is not `True`.
//!
//! kube-scheduler relies on the node lifecycle controller to taint such nodes with
//! `node.kubernetes.io/not-ready`; capstan checks the condition directly, so a pod is not
//! bound to a node that stopped reporting before that taint arrives.

use super::{Filter, REASON_NOT_READY, Reason};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct NodeReady;

impl Filter for NodeReady {
    fn name(&self) -> &'static str {
        "NodeReady"
    }

    fn filter(&self, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        if node.ready { Ok(()) } else { Err(vec![REASON_NOT_READY.into()]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};

    #[test]
    fn readiness_table() {
        for (ready, fits) in [(true, true), (false, false)] {
            let mut node = roomy_node();
            node.ready = ready;
            assert_eq!(NodeReady.filter(&empty_pod(), &node).is_ok(), fits, "ready={ready}");
        }
    }
}
