use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::pod::backoff::Backoff;
use crate::pod::container::Termination;

fn record(name: &str, lifecycle: Lifecycle, ready: bool) -> ContainerRecord {
    let container = Container {
        name: name.into(),
        image: Some("host".into()),
        ..Container::default()
    };
    let mut record = ContainerRecord::new(
        &container,
        Backoff::new(Duration::from_secs(10), Duration::from_secs(300)),
    );
    record.lifecycle = lifecycle;
    record.ready = ready;
    if matches!(record.lifecycle, Lifecycle::Running { .. }) {
        record.id = Some(format!("{name}-id"));
    }
    record
}

fn running() -> Lifecycle {
    Lifecycle::Running {
        started_at: jiff::Timestamp::UNIX_EPOCH,
        since: Instant::now(),
    }
}

fn exited(code: i32) -> Lifecycle {
    Lifecycle::Exited(Termination {
        container_id: "c".into(),
        exit_code: code,
        reason: "Error".into(),
        message: None,
        started_at: None,
        finished_at: jiff::Timestamp::UNIX_EPOCH,
    })
}

fn creating() -> Lifecycle {
    Lifecycle::Waiting {
        reason: "ContainerCreating".into(),
        message: None,
        retry_at: None,
    }
}

fn backing_off() -> Lifecycle {
    Lifecycle::BackingOff {
        restart_at: Instant::now(),
        delay: Duration::from_secs(10),
    }
}

#[test]
fn phase_table() {
    let cases: Vec<(&str, Vec<ContainerRecord>, Vec<ContainerRecord>, &str)> = vec![
        (
            "Always",
            vec![],
            vec![record("a", creating(), false)],
            "Pending",
        ),
        (
            "Always",
            vec![record("i", running(), false)],
            vec![record("a", creating(), false)],
            "Pending",
        ),
        (
            "Never",
            vec![record("i", exited(1), false)],
            vec![record("a", creating(), false)],
            "Failed",
        ),
        (
            "Always",
            vec![record("i", exited(0), false)],
            vec![record("a", running(), true)],
            "Running",
        ),
        (
            "Always",
            vec![],
            vec![record("a", backing_off(), false)],
            "Running",
        ),
        (
            "Never",
            vec![],
            vec![record("a", exited(0), false), record("b", exited(0), false)],
            "Succeeded",
        ),
        (
            "Never",
            vec![],
            vec![record("a", exited(0), false), record("b", exited(2), false)],
            "Failed",
        ),
        (
            "Never",
            vec![],
            vec![record("a", exited(0), false), record("b", running(), false)],
            "Running",
        ),
        (
            "OnFailure",
            vec![],
            vec![record("a", exited(0), false)],
            "Succeeded",
        ),
        (
            "OnFailure",
            vec![],
            vec![record("a", backing_off(), false)],
            "Running",
        ),
    ];
    for (index, (policy, init, containers, expected)) in cases.iter().enumerate() {
        assert_eq!(
            pod_phase(policy, init, containers),
            *expected,
            "case {index}"
        );
    }
}

fn resources(limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Option<ResourceRequirements> {
    let map = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    Some(ResourceRequirements {
        limits: map(limits),
        requests: map(requests),
        ..ResourceRequirements::default()
    })
}

#[test]
fn qos_table() {
    let spec = |resources: Vec<Option<ResourceRequirements>>| PodSpec {
        containers: resources
            .into_iter()
            .map(|resources| Container {
                name: "c".into(),
                resources,
                ..Container::default()
            })
            .collect(),
        ..PodSpec::default()
    };
    assert_eq!(qos_class(&spec(vec![None])), "BestEffort");
    let full = resources(&[("cpu", "1"), ("memory", "1Gi")], &[]);
    assert_eq!(qos_class(&spec(vec![full.clone()])), "Guaranteed");
    let equal = resources(
        &[("cpu", "1000m"), ("memory", "1Gi")],
        &[("cpu", "1"), ("memory", "1024Mi")],
    );
    assert_eq!(qos_class(&spec(vec![equal])), "Guaranteed");
    let lower = resources(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "500m")]);
    assert_eq!(qos_class(&spec(vec![lower])), "Burstable");
    assert_eq!(qos_class(&spec(vec![full, None])), "Burstable");
    let request_only = resources(&[], &[("memory", "64Mi")]);
    assert_eq!(qos_class(&spec(vec![request_only])), "Burstable");
}

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-abc".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn condition<'s>(status: &'s PodStatus, type_: &str) -> &'s PodCondition {
    let conditions = status.conditions.as_ref().expect("conditions");
    conditions.iter().find(|c| c.type_ == type_).expect(type_)
}

#[test]
fn status_reports_readiness() {
    let pod = pod();
    let unready = [record("web", running(), false)];
    let input = StatusInput {
        pod: &pod,
        container_uri: &|id: &str| format!("process://{id}"),
        init: &[],
        containers: &unready,
        sandbox_ready: true,
        pod_ip: Some("10.88.0.2".into()),
        host_ip: "192.0.2.1".into(),
        start_time: Some(jiff::Timestamp::UNIX_EPOCH),
        previous: None,
        now: Instant::now(),
    };
    let first = build_status(&input);
    assert_eq!(first.phase.as_deref(), Some("Running"));
    assert_eq!(first.pod_ip.as_deref(), Some("10.88.0.2"));
    assert_eq!(first.qos_class.as_deref(), Some("BestEffort"));
    let ready = condition(&first, "Ready");
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [web]")
    );
    assert_eq!(condition(&first, "Initialized").status, "True");
    assert_eq!(condition(&first, "PodScheduled").status, "True");
    let statuses = first
        .container_statuses
        .as_ref()
        .expect("container statuses");
    assert_eq!(
        statuses[0].container_id.as_deref(),
        Some("process://web-id")
    );

    // The same input again yields an equal status, so the worker writes nothing.
    let again = build_status(&StatusInput {
        previous: Some(&first),
        ..input
    });
    assert_eq!(again, first);

    let ready_records = [record("web", running(), true)];
    let input = StatusInput {
        previous: Some(&first),
        containers: &ready_records,
        ..again_input(&pod)
    };
    let later = build_status(&input);
    assert_eq!(condition(&later, "ContainersReady").status, "True");
    assert_eq!(condition(&later, "Ready").status, "True");
}

fn again_input(pod: &Pod) -> StatusInput<'_> {
    StatusInput {
        pod,
        container_uri: &|id: &str| format!("process://{id}"),
        init: &[],
        containers: &[],
        sandbox_ready: true,
        pod_ip: Some("10.88.0.2".into()),
        host_ip: "192.0.2.1".into(),
        start_time: Some(jiff::Timestamp::UNIX_EPOCH),
        previous: None,
        now: Instant::now(),
    }
}
