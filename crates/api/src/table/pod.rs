//! Pod rows: readiness, the STATUS reason and restart counts as kubectl shows them.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::{AGE, Column, NAME, age, column, human_duration, integer, list, or_none, text, wide};

pub(super) const COLUMNS: &[Column] = &[
    NAME,
    column("Ready", "string", "Ready containers out of all containers."),
    column("Status", "string", "Aggregate status of the pod's containers."),
    column("Restarts", "string", "Container restarts, and how long ago the last one was."),
    AGE,
    wide("IP", "IP address of the pod."),
    wide("Node", "Node the pod is bound to."),
    wide("Nominated Node", "Node the scheduler nominated after preempting other pods."),
    wide("Readiness Gates", "True readiness gates out of all readiness gates."),
];

/// Restart count and the newest `lastState.terminated.finishedAt` among the counted
/// containers.
#[derive(Default)]
struct Restarts {
    count: i64,
    last: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, status: &Value) {
        self.count += integer(status, "/restartCount");
        let finished = text(status, "/lastState/terminated/finishedAt").parse::<Timestamp>().ok();
        if finished > self.last {
            self.last = finished;
        }
    }
}

pub(super) fn cells(pod: &Value, now: Timestamp) -> Vec<Value> {
    let (ready, total, reason, restarts) = status_summary(pod);
    let restarts = match restarts.last {
        Some(last) if restarts.count != 0 => {
            format!("{} ({} ago)", restarts.count, human_duration(now.as_second() - last.as_second()))
        }
        _ => restarts.count.to_string(),
    };
    let ip = list(pod, "/status/podIPs").first().map(|ip| text(ip, "/ip")).unwrap_or_default();
    let ip = if ip.is_empty() { text(pod, "/status/podIP") } else { ip };
    vec![
        json!(text(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts),
        json!(age(pod, "/metadata/creationTimestamp", now)),
        json!(or_none(ip)),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates(pod)),
    ]
}

fn is_restartable_init(pod: &Value, name: &str) -> bool {
    list(pod, "/spec/initContainers")
        .iter()
        .any(|c| text(c, "/name") == name && text(c, "/restartPolicy") == "Always")
}

fn condition_true(pod: &Value, kind: &str) -> bool {
    list(pod, "/status/conditions").iter().any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

/// Returns (ready containers, containers, status reason, restarts).
fn status_summary(pod: &Value) -> (i64, usize, String, Restarts) {
    let init_specs = list(pod, "/spec/initContainers");
    let mut total = list(pod, "/spec/containers").len();
    total += init_specs.iter().filter(|c| text(c, "/restartPolicy") == "Always").count();
    let mut ready = 0;
    let mut reason = text(pod, "/status/phase").to_string();
    if !text(pod, "/status/reason").is_empty() {
        reason = text(pod, "/status/reason").to_string();
    }
    let gated = list(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "PodScheduled" && text(c, "/reason") == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".to_string();
    }

    // Init containers: the first one that has not finished decides the reason.
    let mut restarts = Restarts::default();
    let mut sidecar_restarts = Restarts::default();
    let mut initializing = false;
    for (index, status) in list(pod, "/status/initContainerStatuses").iter().enumerate() {
        restarts.add(status);
        let sidecar = is_restartable_init(pod, text(status, "/name"));
        if sidecar {
            sidecar_restarts.add(status);
        }
        let terminated = status.pointer("/state/terminated");
        let waiting_reason = text(status, "/state/waiting/reason");
        if terminated.is_some() && integer(status, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && status.get("started").and_then(Value::as_bool) == Some(true) {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(terminated) = terminated {
            format!("Init:{}", terminated_reason(terminated))
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{index}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        let mut running = false;
        // The reference printer walks the statuses backwards, so the first container's
        // state wins.
        for status in list(pod, "/status/containerStatuses").iter().rev() {
            restarts.add(status);
            let waiting_reason = text(status, "/state/waiting/reason");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(terminated) = status.pointer("/state/terminated") {
                reason = terminated_reason(terminated);
            } else if status.get("ready").and_then(Value::as_bool) == Some(true) && status.pointer("/state/running").is_some() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition_true(pod, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    let phase = text(pod, "/status/phase");
    if deleting && text(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }
    (ready, total, reason, restarts)
}

/// Returns the reason of a terminated state, or `Signal:N` / `ExitCode:N` when it has none.
fn terminated_reason(terminated: &Value) -> String {
    let reason = text(terminated, "/reason");
    if !reason.is_empty() {
        return reason.to_string();
    }
    let signal = integer(terminated, "/signal");
    if signal != 0 { format!("Signal:{signal}") } else { format!("ExitCode:{}", integer(terminated, "/exitCode")) }
}

fn readiness_gates(pod: &Value) -> String {
    let gates = list(pod, "/spec/readinessGates");
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = list(pod, "/status/conditions");
    let satisfied = gates
        .iter()
        .filter(|gate| {
            let kind = text(gate, "/conditionType");
            conditions.iter().find(|c| text(c, "/type") == kind).is_some_and(|c| text(c, "/status") == "True")
        })
        .count();
    format!("{satisfied}/{}", gates.len())
}
