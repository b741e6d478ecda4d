//! OwnerSpread: prefers nodes that run fewer pods of the same owner, so the replicas of
//! a ReplicaSet land on different nodes when they can.

use super::{MAX_NODE_SCORE, ScorePlugin};
use crate::pod::PodInfo;
use crate::snapshot::NodeInfo;

pub struct OwnerSpread;

impl ScorePlugin for OwnerSpread {
    fn name(&self) -> &'static str {
        "OwnerSpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    /// Counts the pods of the same owner already on the node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(owner) = pod.owner_uid.as_ref() else { return 0 };
        node.usage.owner_counts.get(owner).copied().unwrap_or(0).into()
    }

    /// Turns counts into scores: the nodes with the most siblings score 0, nodes without
    /// any score 100, and every node scores 100 when no node has a sibling.
    fn normalize(&self, scores: &mut [i64]) {
        let most = scores.iter().copied().max().unwrap_or(0);
        for score in scores.iter_mut() {
            *score = if most == 0 { MAX_NODE_SCORE } else { (most - *score) * MAX_NODE_SCORE / most };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::test_support::{empty_pod, roomy_node};

    #[test]
    fn siblings_lower_score() {
        let mut pod = empty_pod();
        pod.owner_uid = Some("rs-1".into());
        let mut crowded = roomy_node();
        crowded.usage.owner_counts.insert("rs-1".into(), 4);
        let mut half = roomy_node();
        half.usage.owner_counts.insert("rs-1".into(), 2);
        let mut other_owner = roomy_node();
        other_owner.usage.owner_counts.insert("rs-2".into(), 9);
        let mut scores: Vec<i64> =
            [&crowded, &half, &other_owner].iter().map(|node| OwnerSpread.score(&pod, node)).collect();
        assert_eq!(scores, vec![4, 2, 0]);
        OwnerSpread.normalize(&mut scores);
        assert_eq!(scores, vec![0, 50, 100]);
    }

    #[test]
    fn no_siblings_scores_full() {
        let mut scores = vec![0, 0];
        OwnerSpread.normalize(&mut scores);
        assert_eq!(scores, vec![100, 100]);
    }
}
