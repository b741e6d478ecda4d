use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
use proptest::prelude::*;

use super::*;
use crate::pods::fixtures::at;

/// Builds a ReplicaSet state with `replicas`, `available` and a creation time in seconds.
pub(crate) fn rs(name: &str, replicas: i32, available: i32, created: i64) -> RsState {
    RsState {
        name: name.into(),
        replicas,
        available,
        created: Some(at(created)),
        desired_annotation: None,
        max_annotation: None,
    }
}

fn int(n: i32) -> IntOrString {
    IntOrString::Int(n)
}

fn percent(text: &str) -> IntOrString {
    IntOrString::String(text.into())
}

#[test]
fn fenceposts_round_like_kubernetes() {
    // (maxSurge, maxUnavailable, replicas) → (surge, unavailable)
    let cases = [
        (percent("25%"), percent("25%"), 10, (3, 2)),
        (percent("25%"), percent("25%"), 1, (1, 0)),
        (percent("25%"), percent("25%"), 4, (1, 1)),
        (int(0), int(0), 5, (0, 1)),
        (percent("0%"), percent("10%"), 5, (0, 1)),
        (int(2), percent("50%"), 3, (2, 1)),
        (percent("100%"), int(0), 7, (7, 0)),
    ];
    for (surge, unavailable, replicas, expected) in cases {
        let result = resolve_fenceposts(&surge, &unavailable, replicas);
        assert_eq!(result, Ok(expected), "surge {surge:?} unavailable {unavailable:?} replicas {replicas}");
    }
}

#[test]
fn invalid_percent_is_error() {
    for bad in ["25", "abc%", "-5%", ""] {
        let result = scaled_value(&percent(bad), 10, true, "maxSurge");
        assert!(matches!(result, Err(RolloutError::InvalidIntOrPercent { .. })), "value {bad:?}");
    }
    assert!(scaled_value(&int(-1), 10, true, "maxSurge").is_err());
}

#[test]
fn params_default_and_clamp() {
    let defaulted = Params::from_spec(&DeploymentSpec { replicas: Some(4), ..DeploymentSpec::default() });
    assert_eq!(defaulted, Ok(Params { replicas: 4, rolling: true, max_surge: 1, max_unavailable: 1 }));

    let recreate = DeploymentSpec {
        strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), rolling_update: None }),
        ..DeploymentSpec::default()
    };
    assert_eq!(Params::from_spec(&recreate), Ok(Params { replicas: 1, rolling: false, max_surge: 0, max_unavailable: 0 }));

    let too_many = DeploymentSpec {
        replicas: Some(2),
        strategy: Some(DeploymentStrategy {
            type_: None,
            rolling_update: Some(RollingUpdateDeployment { max_surge: Some(int(1)), max_unavailable: Some(int(5)) }),
        }),
        ..DeploymentSpec::default()
    };
    assert_eq!(Params::from_spec(&too_many).map(|p| p.max_unavailable), Ok(2));

    let unknown = DeploymentSpec {
        strategy: Some(DeploymentStrategy { type_: Some("BlueGreen".into()), rolling_update: None }),
        ..DeploymentSpec::default()
    };
    assert!(matches!(Params::from_spec(&unknown), Err(RolloutError::UnknownStrategy { .. })));
}

#[test]
fn new_rs_scale_up_respects_surge() {
    let params = Params { replicas: 3, rolling: true, max_surge: 1, max_unavailable: 0 };
    // (new replicas, old replicas) → new target
    let cases = [(0, 3, 1), (1, 3, 1), (1, 2, 2), (2, 0, 3), (3, 0, 3)];
    for (new, old, expected) in cases {
        let result = new_rs_replicas(&params, &rs("new", new, 0, 2), &[rs("old", old, old, 1)]);
        assert_eq!(result, expected, "new {new} old {old}");
    }
    let recreate = Params { rolling: false, ..params };
    assert_eq!(new_rs_replicas(&recreate, &rs("new", 0, 0, 2), &[rs("old", 3, 3, 1)]), 3);
}

#[test]
fn old_scale_down_steps() {
    let params = Params { replicas: 3, rolling: true, max_surge: 1, max_unavailable: 0 };

    // The new set has one unavailable pod: nothing may go.
    assert!(plan_old_scale_down(&params, &rs("new", 1, 0, 2), &[rs("old", 3, 3, 1)]).is_empty());

    // The new pod became available: one old pod may go.
    let plan = plan_old_scale_down(&params, &rs("new", 1, 1, 2), &[rs("old", 3, 3, 1)]);
    assert_eq!(plan, [("old".to_string(), 2)]);

    // Unavailable old pods go first, even beyond the availability budget.
    let plan = plan_old_scale_down(&params, &rs("new", 1, 1, 3), &[rs("older", 1, 0, 1), rs("old", 2, 2, 2)]);
    assert_eq!(plan, [("older".to_string(), 0)]);

    // Oldest first when several old sets are available.
    let relaxed = Params { replicas: 4, rolling: true, max_surge: 1, max_unavailable: 2 };
    let plan = plan_old_scale_down(&relaxed, &rs("new", 1, 1, 3), &[rs("old", 2, 2, 2), rs("older", 2, 2, 1)]);
    assert_eq!(plan, [("older".to_string(), 0), ("old".to_string(), 1)]);
}

fn arb_rs(index: usize) -> impl Strategy<Value = RsState> {
    (0..8i32, 0..8i32).prop_map(move |(replicas, available)| {
        rs(&format!("old-{index}"), replicas, available.min(replicas), i64::try_from(index).unwrap_or(0))
    })
}

proptest! {
    /// A rolling step never takes available pods below `replicas - maxUnavailable`,
    /// counting that the ReplicaSet controller deletes unavailable pods first.
    #[test]
    fn scale_down_keeps_min_available(
        replicas in 0..12i32,
        surge in 0..4i32,
        unavailable in 0..4i32,
        new_replicas in 0..12i32,
        new_available in 0..12i32,
        old in proptest::collection::vec(0..4usize, 0..4)
            .prop_flat_map(|ids| ids.into_iter().enumerate().map(|(i, _)| arb_rs(i)).collect::<Vec<_>>()),
    ) {
        let (surge, unavailable) = if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) };
        let params = Params { replicas, rolling: true, max_surge: surge, max_unavailable: unavailable.min(replicas) };
        let new = rs("new", new_replicas, new_available.min(new_replicas), 100);
        let before: i32 = new.available + old.iter().map(|r| r.available).sum::<i32>();

        let plan = plan_old_scale_down(&params, &new, &old);
        let after: i32 = new.available + old.iter().map(|r| {
            let target = plan.iter().find(|(name, _)| *name == r.name).map_or(r.replicas, |(_, n)| *n);
            prop_assert!(target >= 0 && target <= r.replicas, "{} scaled to {target}", r.name);
            Ok(r.available.min(target))
        }).collect::<Result<Vec<_>, _>>()?.iter().sum::<i32>();
        prop_assert!(after >= before.min(params.min_available()), "available {before} -> {after}, min {}", params.min_available());
    }

    /// The new ReplicaSet never grows past `replicas`, nor the total past `replicas + maxSurge`
    /// unless it was already there.
    #[test]
    fn scale_up_stays_within_surge(
        replicas in 0..12i32,
        surge in 0..4i32,
        new_replicas in 0..12i32,
        old_replicas in 0..12i32,
    ) {
        let params = Params { replicas, rolling: true, max_surge: surge, max_unavailable: 1 };
        let target = new_rs_replicas(&params, &rs("new", new_replicas, 0, 2), &[rs("old", old_replicas, 0, 1)]);
        prop_assert!(target >= new_replicas);
        if target > new_replicas {
            prop_assert!(target <= replicas);
            prop_assert!(target + old_replicas <= replicas + surge);
        }
    }
}
