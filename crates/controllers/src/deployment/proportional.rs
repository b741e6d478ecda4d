//! Scaling a Deployment whose replica count changed, or that is paused, without
//! starting a rollout. When several ReplicaSets are active (mid-rollout), the change
//! is spread over them in proportion to their sizes, as Kubernetes does, so a
//! scale-up during a rollout does not pile every new pod onto one template.

use std::cmp::Ordering;

use super::rollout::{Params, RsState};

/// Plans the replica counts after a scaling event. `new` is the ReplicaSet that
/// matches the current template, if it exists yet. `status_replicas` is the
/// Deployment's `status.replicas`, used when a ReplicaSet lacks the max-replicas
/// annotation. Returns `(name, replicas)` for each ReplicaSet to change.
pub fn plan_scale(params: &Params, status_replicas: i32, new: Option<&RsState>, old: &[RsState]) -> Vec<(String, i32)> {
    // One active ReplicaSet (or none): it simply takes the full count.
    if let Some(only) = active_or_latest(new, old) {
        if only.replicas == params.replicas {
            return Vec::new();
        }
        return vec![(only.name.clone(), params.replicas)];
    }

    // The new ReplicaSet is complete: old ones go to zero.
    if new.is_some_and(|rs| is_saturated(params, rs)) {
        return old.iter().filter(|rs| rs.replicas > 0).map(|rs| (rs.name.clone(), 0)).collect();
    }
    if !params.rolling {
        return Vec::new();
    }

    // Several active ReplicaSets: share the difference by size.
    let mut active: Vec<&RsState> = new.into_iter().chain(old.iter()).filter(|rs| rs.replicas > 0).collect();
    let current: i32 = active.iter().map(|rs| rs.replicas).sum();
    let allowed = if params.replicas > 0 { params.replicas + params.max_surge } else { 0 };
    let to_add = allowed - current;
    if to_add == 0 {
        return Vec::new();
    }
    // Growing favours larger then newer sets, shrinking larger then older ones.
    active.sort_by(|a, b| {
        let by_size = b.replicas.cmp(&a.replicas);
        let by_age = if to_add > 0 { b.created.cmp(&a.created) } else { a.created.cmp(&b.created) };
        by_size.then(by_age).then_with(|| a.name.cmp(&b.name))
    });
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    let mut added = 0;
    for rs in &active {
        let share = proportion(params, status_replicas, rs, to_add, added);
        sizes.push(rs.replicas + share);
        added += share;
    }

    // Rounding leftovers go to the largest set.
    if let Some(first) = sizes.first_mut() {
        *first = (*first + to_add - added).max(0);
    }
    active
        .iter()
        .zip(sizes)
        .filter(|(rs, size)| rs.replicas != *size)
        .map(|(rs, size)| (rs.name.clone(), size))
        .collect()
}

/// Returns the one ReplicaSet that should carry all replicas when at most one is
/// active: the active one, else the new one, else the newest old one.
fn active_or_latest<'a>(new: Option<&'a RsState>, old: &'a [RsState]) -> Option<&'a RsState> {
    let mut all: Vec<&RsState> = new.into_iter().chain(old.iter()).collect();
    if all.is_empty() {
        return None;
    }
    let active: Vec<&RsState> = all.iter().copied().filter(|rs| rs.replicas > 0).collect();
    match active.len() {
        0 => {
            if new.is_some() {
                return new;
            }
            all.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.name.cmp(&b.name)));
            all.first().copied()
        }
        1 => Some(active[0]),
        _ => None,
    }
}

/// Returns whether the new ReplicaSet already runs every replica, available.
fn is_saturated(params: &Params, new: &RsState) -> bool {
    new.desired_annotation == Some(params.replicas)
        && new.replicas == params.replicas
        && new.available == params.replicas
}

fn proportion(params: &Params, status_replicas: i32, rs: &RsState, to_add: i32, added: i32) -> i32 {
    if rs.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(params, status_replicas, rs);
    let allowed = to_add - added;
    match to_add.cmp(&0) {
        Ordering::Greater => fraction.min(allowed),
        _ => fraction.max(allowed),
    }
}

/// Returns the change for `rs` if every set grew or shrank by the same ratio.
fn fraction(params: &Params, status_replicas: i32, rs: &RsState) -> i32 {
    if params.replicas == 0 {
        return -rs.replicas;
    }
    let target_total = f64::from(params.replicas + params.max_surge);
    let annotated = f64::from(rs.max_annotation.unwrap_or(status_replicas));
    if annotated <= 0.0 {
        return 0;
    }
    let scaled = (f64::from(rs.replicas) * target_total / annotated).round();
    // The ratio of two i32 values times an i32 stays far inside f64 precision.
    #[allow(clippy::cast_possible_truncation, reason = "rounded value of bounded i32 arithmetic")]
    let scaled = scaled as i32;
    scaled - rs.replicas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::rollout::tests::rs;

    fn params(replicas: i32, surge: i32, unavailable: i32) -> Params {
        Params { replicas, rolling: true, max_surge: surge, max_unavailable: unavailable }
    }

    #[test]
    fn single_active_set_takes_all() {
        let plan = plan_scale(&params(5, 1, 1), 3, Some(&rs("new", 3, 3, 2)), &[rs("old", 0, 0, 1)]);
        assert_eq!(plan, [("new".to_string(), 5)]);
    }

    #[test]
    fn no_change_when_sizes_match() {
        assert!(plan_scale(&params(3, 1, 1), 3, Some(&rs("new", 3, 3, 2)), &[]).is_empty());
    }

    #[test]
    fn scale_up_mid_rollout_is_proportional() {
        // 10 replicas, surge 3: sets of 8 (old) and 5 (new) annotated max 13.
        // Scaling to 20 (max 23) adds 10, split 6 to old and 4 to new.
        let mut old = rs("old", 8, 8, 1);
        old.max_annotation = Some(13);
        let mut new = rs("new", 5, 0, 2);
        new.max_annotation = Some(13);
        let plan = plan_scale(&params(20, 3, 2), 13, Some(&new), &[old]);
        assert_eq!(plan, [("old".to_string(), 14), ("new".to_string(), 9)]);
    }

    #[test]
    fn scale_to_zero_empties_all() {
        let params = Params { replicas: 0, rolling: true, max_surge: 0, max_unavailable: 0 };
        let plan = plan_scale(&params, 6, Some(&rs("new", 2, 0, 2)), &[rs("old", 4, 4, 1)]);
        assert_eq!(plan, [("old".to_string(), 0), ("new".to_string(), 0)]);
    }

    #[test]
    fn saturated_new_set_zeroes_old() {
        let mut new = rs("new", 3, 3, 2);
        new.desired_annotation = Some(3);
        let plan = plan_scale(&params(3, 1, 0), 5, Some(&new), &[rs("old", 2, 2, 1)]);
        assert_eq!(plan, [("old".to_string(), 0)]);
    }
}
