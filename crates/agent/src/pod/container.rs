//! One container of a pod as the worker tracks it: its lifecycle, restart count, last
//! termination, back-off and probes, and its `ContainerStatus` for the API.

use std::time::Duration;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::time::Instant;

use super::backoff::Backoff;
use super::probe::ProbeTracker;

/// A finished container run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Termination {
    pub container_id: String,
    pub exit_code: i32,
    /// `Completed`, `Error` or `OOMKilled`.
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: jiff::Timestamp,
}

/// Lifecycle state of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Not running and never ran in this attempt: not created yet, or creation failed
    /// with `reason` (`ContainerCreating`, `CreateContainerConfigError`, an image error).
    /// Next: `Running`, or `Waiting` with another reason. A failed creation is retried
    /// at `retry_at`, or at once when it is `None`.
    Waiting {
        reason: String,
        message: Option<String>,
        retry_at: Option<Instant>,
    },
    /// Running since `started_at`. Next: `BackingOff` or `Exited`.
    Running {
        started_at: jiff::Timestamp,
        since: Instant,
    },
    /// Exited and due to start again at `restart_at`, `delay` after the exit.
    /// Next: `Running`, or `Waiting` when the restart fails.
    BackingOff {
        restart_at: Instant,
        delay: Duration,
    },
    /// Exited for good under the pod's restart policy. No state follows.
    Exited(Termination),
}

/// Change to a container, fed to [`ContainerRecord::apply`].
#[derive(Clone, Debug)]
pub enum ContainerEvent {
    CreateFailed {
        reason: String,
        message: String,
        retry_at: Option<Instant>,
    },
    Started {
        id: String,
        started_at: jiff::Timestamp,
    },
    /// The runtime reports the container finished; `restart` is the restart policy's verdict.
    Exited {
        termination: Termination,
        restart: bool,
    },
}

/// The agent's view of one container.
#[derive(Clone, Debug)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// The runtime's identity of the image the latest run uses (`imageID`), once known.
    pub image_id: Option<String>,
    /// The runtime id of the latest run.
    pub id: Option<String>,
    /// The runtime id of the run before, kept for `logs --previous` until the next start.
    pub previous_id: Option<String>,
    /// Log file of the latest run and of the run before it.
    pub log_path: Option<std::path::PathBuf>,
    pub previous_log_path: Option<std::path::PathBuf>,
    pub lifecycle: Lifecycle,
    pub restart_count: u32,
    /// Failed image pulls since the last start, which set the ImagePullBackOff delay.
    pub pull_failures: u32,
    /// The previous run, shown as `lastState`.
    pub last_termination: Option<Termination>,
    pub backoff: Backoff,
    /// The startup probe passed, or there is none.
    pub started: bool,
    pub ready: bool,
    pub probes: Vec<ProbeTracker>,
}

impl ContainerRecord {
    pub fn new(container: &core::Container, backoff: Backoff) -> Self {
        Self {
            name: container.name.clone(),
            image: container.image.clone().unwrap_or_default(),
            image_id: None,
            id: None,
            previous_id: None,
            log_path: None,
            previous_log_path: None,
            lifecycle: Lifecycle::Waiting {
                reason: "ContainerCreating".to_string(),
                message: None,
                retry_at: None,
            },
            restart_count: 0,
            pull_failures: 0,
            last_termination: None,
            backoff,
            started: false,
            ready: false,
            probes: Vec::new(),
        }
    }

    /// Whether the worker may create and start this container now.
    pub fn can_start(&self, now: Instant) -> bool {
        match &self.lifecycle {
            Lifecycle::Waiting { retry_at, .. } => retry_at.is_none_or(|at| now >= at),
            Lifecycle::BackingOff { restart_at, .. } => now >= *restart_at,
            Lifecycle::Running { .. } | Lifecycle::Exited(_) => false,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Running { .. })
    }

    /// Exited with code 0 and will not run again.
    pub fn succeeded(&self) -> bool {
        matches!(&self.lifecycle, Lifecycle::Exited(t) if t.exit_code == 0)
    }

    /// Performs a lifecycle transition. Events that the current state does not allow
    /// (an exit of a container that is not running) are ignored and return false.
    pub fn apply(&mut self, event: ContainerEvent, now: Instant) -> bool {
        match (event, &self.lifecycle) {
            (
                ContainerEvent::CreateFailed {
                    reason,
                    message,
                    retry_at,
                },
                Lifecycle::Waiting { .. } | Lifecycle::BackingOff { .. },
            ) => {
                self.lifecycle = Lifecycle::Waiting {
                    reason,
                    message: Some(message),
                    retry_at,
                };
            }
            (
                ContainerEvent::Started { id, started_at },
                Lifecycle::Waiting { .. } | Lifecycle::BackingOff { .. },
            ) => {
                self.previous_id = self.id.replace(id);
                self.pull_failures = 0;
                self.lifecycle = Lifecycle::Running {
                    started_at,
                    since: now,
                };
                self.probes.clear();
                self.started = false;
                self.ready = false;
            }
            (
                ContainerEvent::Exited {
                    termination,
                    restart,
                },
                Lifecycle::Running { since, .. },
            ) => {
                let ran_for = now.saturating_duration_since(*since);
                self.ready = false;
                self.probes.clear();
                if restart {
                    let delay = self.backoff.delay_after_exit(ran_for);
                    self.restart_count += 1;
                    self.last_termination = Some(termination);
                    self.lifecycle = Lifecycle::BackingOff {
                        restart_at: now + delay,
                        delay,
                    };
                } else {
                    self.lifecycle = Lifecycle::Exited(termination);
                }
            }
            _ => return false,
        }
        debug_assert!(
            !self.is_running() || self.id.is_some(),
            "a running container has an id"
        );
        true
    }

    /// Builds the API status. `pod_ref` is `<name>_<namespace>(<uid>)` for the
    /// CrashLoopBackOff message.
    pub fn status(&self, container_uri: &dyn Fn(&str) -> String, pod_ref: &str, now: Instant) -> core::ContainerStatus {
        let container_id = |id: &str| container_uri(id);
        let state = match &self.lifecycle {
            Lifecycle::Waiting {
                reason, message, ..
            } => waiting(reason, message.clone()),
            Lifecycle::Running { started_at, .. } => core::ContainerState {
                running: Some(core::ContainerStateRunning {
                    started_at: Some(Time(*started_at)),
                }),
                ..core::ContainerState::default()
            },
            Lifecycle::BackingOff { restart_at, delay } if *restart_at > now => {
                let message = format!(
                    "back-off {} restarting failed container={} pod={pod_ref}",
                    format_delay(*delay),
                    self.name
                );
                waiting("CrashLoopBackOff", Some(message))
            }
            Lifecycle::BackingOff { .. } => waiting("ContainerCreating", None),
            Lifecycle::Exited(termination) => terminated(termination, &container_id),
        };
        let last_state = self
            .last_termination
            .as_ref()
            .map(|t| terminated(t, &container_id));
        core::ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone().unwrap_or_default(),
            container_id: self.id.as_deref().map(container_id),
            state: Some(state),
            last_state: Some(last_state.unwrap_or_default()),
            ready: self.ready,
            started: Some(self.is_running() && self.started),
            restart_count: i32::try_from(self.restart_count).unwrap_or(i32::MAX),
            ..core::ContainerStatus::default()
        }
    }
}

fn waiting(reason: &str, message: Option<String>) -> core::ContainerState {
    core::ContainerState {
        waiting: Some(core::ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message,
        }),
        ..core::ContainerState::default()
    }
}

fn terminated(
    termination: &Termination,
    container_id: &dyn Fn(&str) -> String,
) -> core::ContainerState {
    core::ContainerState {
        terminated: Some(core::ContainerStateTerminated {
            exit_code: termination.exit_code,
            reason: Some(termination.reason.clone()),
            message: termination.message.clone(),
            started_at: termination.started_at.map(Time),
            finished_at: Some(Time(termination.finished_at)),
            container_id: Some(container_id(&termination.container_id)),
            signal: None,
        }),
        ..core::ContainerState::default()
    }
}

/// Formats a delay as Go's `time.Duration` prints whole seconds and minutes (`10s`, `5m0s`).
pub fn format_delay(delay: Duration) -> String {
    let total = delay.as_secs();
    if total < 60 {
        format!("{total}s")
    } else if total < 3600 {
        format!("{}m{}s", total / 60, total % 60)
    } else {
        format!("{}h{}m{}s", total / 3600, (total % 3600) / 60, total % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ContainerRecord {
        let container = core::Container {
            name: "web".into(),
            image: Some("host".into()),
            ..core::Container::default()
        };
        ContainerRecord::new(
            &container,
            Backoff::new(Duration::from_secs(10), Duration::from_secs(300)),
        )
    }

    fn termination(exit_code: i32) -> Termination {
        Termination {
            container_id: "c1".into(),
            exit_code,
            reason: if exit_code == 0 {
                "Completed".into()
            } else {
                "Error".into()
            },
            message: None,
            started_at: None,
            finished_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn exit_with_restart_backs_off() {
        let now = Instant::now();
        let mut container = record();
        assert!(container.can_start(now));
        container.apply(
            ContainerEvent::Started {
                id: "c1".into(),
                started_at: jiff::Timestamp::UNIX_EPOCH,
            },
            now,
        );
        assert!(!container.can_start(now));
        assert!(container.apply(
            ContainerEvent::Exited {
                termination: termination(1),
                restart: true
            },
            now
        ));
        assert_eq!(container.restart_count, 1);
        // The first restart is immediate, the second waits the base delay.
        assert!(container.can_start(now));
        container.apply(
            ContainerEvent::Started {
                id: "c2".into(),
                started_at: jiff::Timestamp::UNIX_EPOCH,
            },
            now,
        );
        container.apply(
            ContainerEvent::Exited {
                termination: termination(1),
                restart: true,
            },
            now,
        );
        assert!(!container.can_start(now + Duration::from_secs(9)));
        assert!(container.can_start(now + Duration::from_secs(10)));

        let status = container.status(&|id: &str| format!("process://{id}"), "web-abc_default(u1)", now);
        let waiting = status.state.and_then(|s| s.waiting).expect("waiting state");
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            waiting.message.as_deref(),
            Some("back-off 10s restarting failed container=web pod=web-abc_default(u1)")
        );
        assert_eq!(status.restart_count, 2);
        let last = status
            .last_state
            .and_then(|s| s.terminated)
            .expect("last state");
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.container_id.as_deref(), Some("process://c1"));
    }

    #[test]
    fn exit_without_restart_is_final() {
        let now = Instant::now();
        let mut container = record();
        container.apply(
            ContainerEvent::Started {
                id: "c1".into(),
                started_at: jiff::Timestamp::UNIX_EPOCH,
            },
            now,
        );
        container.apply(
            ContainerEvent::Exited {
                termination: termination(0),
                restart: false,
            },
            now,
        );
        assert!(container.succeeded());
        assert!(!container.can_start(now + Duration::from_secs(3600)));
        assert_eq!(container.restart_count, 0);
        let status = container.status(&|id: &str| format!("process://{id}"), "p", now);
        assert_eq!(
            status.state.and_then(|s| s.terminated).map(|t| t.reason),
            Some(Some("Completed".into()))
        );
    }

    #[test]
    fn exit_of_waiting_container_ignored() {
        let mut container = record();
        assert!(!container.apply(
            ContainerEvent::Exited {
                termination: termination(1),
                restart: true
            },
            Instant::now()
        ));
        assert_eq!(container.restart_count, 0);
    }

    #[test]
    fn delay_formats_like_go() {
        assert_eq!(format_delay(Duration::from_secs(10)), "10s");
        assert_eq!(format_delay(Duration::from_secs(300)), "5m0s");
        assert_eq!(format_delay(Duration::from_secs(160)), "2m40s");
    }
}
