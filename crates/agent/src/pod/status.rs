//! The pod status the agent reports: phase, conditions, container statuses, addresses and
//! QoS class, derived from the worker's container records.

use k8s_openapi::api::core::v1::{HostIP, Pod, PodCondition, PodIP, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::container::{ContainerRecord, Lifecycle};

/// Everything the status is built from.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    /// Turns a runtime container id into the API's `containerID` (`process://…`).
    pub container_uri: &'a (dyn Fn(&str) -> String + Sync),
    pub init: &'a [ContainerRecord],
    pub containers: &'a [ContainerRecord],
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<jiff::Timestamp>,
    /// The status last written, whose condition transition times are kept.
    pub previous: Option<&'a PodStatus>,
    pub now: Instant,
}

/// Builds the full pod status.
pub fn build_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let phase = pod_phase(policy, input.init, input.containers);
    let pod_ref = format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default()
    );
    let statuses = |records: &[ContainerRecord]| {
        records
            .iter()
            .map(|r| r.status(input.container_uri, &pod_ref, input.now))
            .collect::<Vec<_>>()
    };
    let init_statuses = statuses(input.init);
    let conditions = conditions(input, phase);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        container_statuses: Some(statuses(input.containers)),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        host_ip: Some(input.host_ip.clone()),
        host_ips: Some(vec![HostIP {
            ip: input.host_ip.clone(),
        }]),
        pod_ip: input.pod_ip.clone(),
        pod_ips: input.pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        start_time: input.start_time.map(Time),
        qos_class: Some(qos_class(&spec).to_string()),
        ..PodStatus::default()
    }
}

/// Derives the phase as kubelet does: Pending until the init containers finished and
/// every container ran at least once; then Running while any runs or will restart;
/// Succeeded or Failed once all have exited for good.
pub fn pod_phase(
    policy: &str,
    init: &[ContainerRecord],
    containers: &[ContainerRecord],
) -> &'static str {
    let init_failed = init
        .iter()
        .any(|r| matches!(&r.lifecycle, Lifecycle::Exited(t) if t.exit_code != 0));
    if init_failed {
        return "Failed";
    }
    if !init.iter().all(ContainerRecord::succeeded) {
        return "Pending";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for record in containers {
        match &record.lifecycle {
            Lifecycle::Running { .. } => running += 1,
            Lifecycle::Exited(termination) => {
                stopped += 1;
                if termination.exit_code == 0 {
                    succeeded += 1;
                }
            }
            Lifecycle::BackingOff { .. } => stopped += 1,
            Lifecycle::Waiting { .. } if record.last_termination.is_some() => stopped += 1,
            Lifecycle::Waiting { .. } => waiting += 1,
        }
    }
    if waiting > 0 || containers.is_empty() {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    match policy {
        "Always" => "Running",
        _ if stopped == succeeded => "Succeeded",
        "OnFailure" => "Running",
        _ => "Failed",
    }
}

fn conditions(input: &StatusInput<'_>, phase: &str) -> Vec<PodCondition> {
    let previous = input
        .previous
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let names = |records: &[ContainerRecord], pick: fn(&ContainerRecord) -> bool| {
        records
            .iter()
            .filter(|r| pick(r))
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let uninitialized = names(input.init, |r| !r.succeeded());
    let unready = names(input.containers, |r| !r.ready);

    let initialized = if uninitialized.is_empty() {
        Verdict::yes()
    } else {
        Verdict::no(
            "ContainersNotInitialized",
            format!("containers with incomplete status: [{uninitialized}]"),
        )
    };
    let ready = if phase == "Succeeded" || phase == "Failed" {
        Verdict::no("PodCompleted", String::new())
    } else if !uninitialized.is_empty() {
        Verdict::no(
            "ContainersNotInitialized",
            format!("containers with incomplete status: [{uninitialized}]"),
        )
    } else if unready.is_empty() {
        Verdict::yes()
    } else {
        Verdict::no(
            "ContainersNotReady",
            format!("containers with unready status: [{unready}]"),
        )
    };
    let sandbox = if input.sandbox_ready {
        Verdict::yes()
    } else {
        Verdict::no("", String::new())
    };

    let scheduled = input
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled").cloned());
    let mut list = vec![
        sandbox.condition("PodReadyToStartContainers", previous),
        initialized.condition("Initialized", previous),
        ready.clone().condition("Ready", previous),
        ready.condition("ContainersReady", previous),
    ];
    list.push(scheduled.unwrap_or_else(|| Verdict::yes().condition("PodScheduled", previous)));
    list
}

/// A condition's status with its reason and message.
#[derive(Clone)]
struct Verdict {
    status: bool,
    reason: String,
    message: String,
}

impl Verdict {
    fn yes() -> Self {
        Self {
            status: true,
            reason: String::new(),
            message: String::new(),
        }
    }

    fn no(reason: &str, message: String) -> Self {
        Self {
            status: false,
            reason: reason.to_string(),
            message,
        }
    }

    /// Builds the condition, keeping the previous transition time when the status holds.
    fn condition(self, type_: &str, previous: &[PodCondition]) -> PodCondition {
        let status = if self.status { "True" } else { "False" };
        let earlier = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status);
        let transition = earlier.and_then(|c| c.last_transition_time.clone());
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: (!self.reason.is_empty()).then_some(self.reason),
            message: (!self.message.is_empty()).then_some(self.message),
            last_transition_time: Some(transition.unwrap_or_else(|| Time(jiff::Timestamp::now()))),
            last_probe_time: None,
            observed_generation: None,
        }
    }
}

/// Classifies the pod: Guaranteed when every container sets CPU and memory limits equal
/// to its requests, BestEffort when none sets any, Burstable otherwise.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    let mut any_set = false;
    let mut guaranteed = true;
    for container in all {
        let resources = container.resources.clone().unwrap_or_default();
        let limits = resources.limits.unwrap_or_default();
        let requests = resources.requests.unwrap_or_default();
        for name in ["cpu", "memory"] {
            let limit = limits.get(name).map(|q| q.0.as_str());
            let request = requests.get(name).map(|q| q.0.as_str()).or(limit);
            if limit.is_some() || request.is_some() {
                any_set = true;
            }
            let equal = match (limit, request) {
                (Some(limit), Some(request)) => same_quantity(name, limit, request),
                _ => false,
            };
            guaranteed &= equal;
        }
    }
    if !any_set {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn same_quantity(name: &str, left: &str, right: &str) -> bool {
    let parse = if name == "cpu" {
        capstan_api::quantity::parse_millis
    } else {
        capstan_api::quantity::parse_units
    };
    match (parse(left), parse(right)) {
        (Ok(left), Ok(right)) => left == right,
        _ => left == right,
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
