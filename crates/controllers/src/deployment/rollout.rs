//! Pure rollout arithmetic: maxSurge and maxUnavailable with Kubernetes rounding, the
//! steps of a rolling update, and proportional scaling while a rollout is under way.
//! Functions return the replica counts to set and leave the writes to the caller.

use std::cmp::Ordering;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DeploymentSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Errors from reading a Deployment's strategy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RolloutError {
    #[error("invalid {field} {value:?}: expected an integer or a percentage such as \"25%\"")]
    InvalidIntOrPercent { field: &'static str, value: String },
    #[error("invalid strategy type {value:?}: expected RollingUpdate or Recreate")]
    UnknownStrategy { value: String },
}

/// The fields of one ReplicaSet that the rollout math reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsState {
    pub name: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    pub created: Option<Timestamp>,
    /// The `deployment.kubernetes.io/desired-replicas` annotation.
    pub desired_annotation: Option<i32>,
    /// The `deployment.kubernetes.io/max-replicas` annotation.
    pub max_annotation: Option<i32>,
}

/// A Deployment's rollout parameters after defaulting and rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// `spec.replicas`, default 1.
    pub replicas: i32,
    /// Whether the strategy is RollingUpdate (the default) rather than Recreate.
    pub rolling: bool,
    /// Pods allowed above `replicas`, 0 for Recreate.
    pub max_surge: i32,
    /// Pods allowed below `replicas`, never more than `replicas`, 0 for Recreate.
    pub max_unavailable: i32,
}

impl Params {
    /// Reads and resolves the strategy, with Kubernetes' defaults of 25% each.
    pub fn from_spec(spec: &DeploymentSpec) -> Result<Self, RolloutError> {
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let strategy = spec.strategy.as_ref();
        let rolling = match strategy.and_then(|s| s.type_.as_deref()) {
            None | Some("RollingUpdate") => true,
            Some("Recreate") => false,
            Some(other) => return Err(RolloutError::UnknownStrategy { value: other.to_string() }),
        };
        if !rolling {
            return Ok(Params { replicas, rolling, max_surge: 0, max_unavailable: 0 });
        }
        let update = strategy.and_then(|s| s.rolling_update.as_ref());
        let default = IntOrString::String("25%".into());
        let surge = update.and_then(|u| u.max_surge.as_ref()).unwrap_or(&default);
        let unavailable = update.and_then(|u| u.max_unavailable.as_ref()).unwrap_or(&default);
        let (max_surge, max_unavailable) = resolve_fenceposts(surge, unavailable, replicas)?;
        Ok(Params { replicas, rolling, max_surge, max_unavailable: max_unavailable.min(replicas) })
    }

    /// Returns the minimum number of available pods a rolling update must keep.
    pub fn min_available(&self) -> i32 {
        self.replicas - self.max_unavailable
    }
}

/// Resolves maxSurge (rounded up) and maxUnavailable (rounded down) against
/// `desired`. When both come to zero, maxUnavailable becomes 1 so the rollout can move.
pub fn resolve_fenceposts(
    surge: &IntOrString,
    unavailable: &IntOrString,
    desired: i32,
) -> Result<(i32, i32), RolloutError> {
    let surge = scaled_value(surge, desired, true, "maxSurge")?;
    let unavailable = scaled_value(unavailable, desired, false, "maxUnavailable")?;
    if surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

/// Returns an absolute value, or a percentage of `total` rounded as asked.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool, field: &'static str) -> Result<i32, RolloutError> {
    let invalid = || RolloutError::InvalidIntOrPercent { field, value: format!("{value:?}") };
    match value {
        IntOrString::Int(n) if *n >= 0 => Ok(*n),
        IntOrString::Int(_) => Err(invalid()),
        IntOrString::String(text) => {
            let percent: i64 = text.strip_suffix('%').and_then(|p| p.parse().ok()).filter(|p| *p >= 0).ok_or_else(invalid)?;
            let scaled = percent * i64::from(total);
            let value = if round_up { (scaled + 99) / 100 } else { scaled / 100 };
            Ok(i32::try_from(value).unwrap_or(i32::MAX))
        }
    }
}

/// Sums `spec.replicas`.
pub fn total_replicas(sets: &[&RsState]) -> i32 {
    sets.iter().map(|rs| rs.replicas).sum()
}

fn oldest_first(a: &&RsState, b: &&RsState) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// Returns the replica count for the new ReplicaSet in this rolling-update step:
/// as many as fit under `replicas + maxSurge`, never more than `replicas`.
pub fn new_rs_replicas(params: &Params, new: &RsState, old: &[RsState]) -> i32 {
    if !params.rolling {
        return params.replicas;
    }
    let current: i32 = new.replicas + old.iter().map(|rs| rs.replicas).sum::<i32>();
    let max_total = params.replicas + params.max_surge;
    if current >= max_total {
        return new.replicas;
    }
    let scale_up = (max_total - current).min(params.replicas - new.replicas);
    new.replicas + scale_up.max(0)
}

/// Plans the scale-down of old ReplicaSets in one rolling-update step.
///
/// Pods that are not available go first, since removing them costs no
/// availability. Then available pods go, oldest ReplicaSet first, only as far as
/// `replicas - maxUnavailable` available pods remain. Returns `(name, replicas)`
/// for each ReplicaSet to change.
pub fn plan_old_scale_down(params: &Params, new: &RsState, old: &[RsState]) -> Vec<(String, i32)> {
    let old_total: i32 = old.iter().map(|rs| rs.replicas).sum();
    if old_total == 0 {
        return Vec::new();
    }
    let all_total = old_total + new.replicas;
    let new_unavailable = (new.replicas - new.available).max(0);
    let max_scaled_down = all_total - params.min_available() - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }

    // Remove unavailable old pods first.
    let mut sorted: Vec<&RsState> = old.iter().collect();
    sorted.sort_by(oldest_first);
    let mut targets: Vec<(String, i32)> = sorted.iter().map(|rs| (rs.name.clone(), rs.replicas)).collect();
    let mut cleaned = 0;
    for (index, rs) in sorted.iter().enumerate() {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = (rs.replicas - rs.available).max(0);
        let step = unhealthy.min(max_scaled_down - cleaned);
        targets[index].1 -= step;
        cleaned += step;
    }

    // Then remove available pods down to the minimum.
    let available: i32 = new.available + sorted.iter().map(|rs| rs.available.min(rs.replicas)).sum::<i32>();
    let mut budget = (available - params.min_available()).max(0);
    for target in targets.iter_mut() {
        if budget == 0 {
            break;
        }
        let step = target.1.min(budget);
        target.1 -= step;
        budget -= step;
    }

    sorted
        .iter()
        .zip(targets)
        .filter(|(rs, (_, replicas))| rs.replicas != *replicas)
        .map(|(_, target)| target)
        .collect()
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
pub(crate) mod tests;
