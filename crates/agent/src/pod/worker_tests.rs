use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, Container, EnvVar, EnvVarSource, ExecAction, PodSpec, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::*;
use crate::api::RecordingPodApi;
use crate::fake::FakeRuntime;

struct Harness {
    runtime: Arc<FakeRuntime>,
    api: Arc<RecordingPodApi>,
    context: Arc<WorkerContext>,
}

fn harness() -> Harness {
    let runtime = Arc::new(FakeRuntime::new());
    let api = Arc::new(RecordingPodApi::new());
    let context = Arc::new(WorkerContext {
        runtime: runtime.clone(),
        api: api.clone(),
        directory: PodDirectory::new(),
        node_name: "node-1".into(),
        node_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        data_dir: PathBuf::from("/var/lib/capstan-test"),
        backoff: (Duration::from_secs(10), Duration::from_secs(300)),
        node_cpu_millis: 2000,
        node_memory_bytes: 1 << 30,
        cluster_dns: Default::default(),
    });
    Harness {
        runtime,
        api,
        context,
    }
}

fn container(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("host".into()),
        command: Some(vec!["sh".into(), "-c".into(), "echo hi; sleep 30".into()]),
        ..Container::default()
    }
}

fn pod(policy: &str, containers: Vec<Container>, init: Vec<Container>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-abc".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            restart_policy: Some(policy.into()),
            node_name: Some("node-1".into()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn container_status(
    api: &RecordingPodApi,
    name: &str,
) -> k8s_openapi::api::core::v1::ContainerStatus {
    let status = api.last_status().expect("a status was written");
    let all = status
        .container_statuses
        .into_iter()
        .flatten()
        .chain(status.init_container_statuses.into_iter().flatten());
    all.into_iter()
        .find(|c| c.name == name)
        .expect("container status")
}

fn phase(api: &RecordingPodApi) -> String {
    api.last_status().and_then(|s| s.phase).unwrap_or_default()
}

fn waiting_reason(api: &RecordingPodApi, name: &str) -> Option<String> {
    container_status(api, name)
        .state
        .and_then(|s| s.waiting)
        .and_then(|w| w.reason)
}

#[tokio::test(start_paused = true)]
async fn start_reports_running_pod() {
    let h = harness();
    let mut worker = PodWorker::new(
        h.context.clone(),
        pod("Always", vec![container("web")], vec![]),
        None,
    );
    worker.sync().await;
    assert_eq!(
        h.runtime.calls_starting_with("run_sandbox"),
        vec!["run_sandbox web-abc"]
    );
    assert_eq!(
        h.runtime.calls_starting_with("create_container"),
        vec!["create_container web attempt=0"]
    );
    assert_eq!(phase(&h.api), "Running");
    let status = h.api.last_status().expect("status");
    assert!(
        status
            .pod_ip
            .as_deref()
            .is_some_and(|ip| ip.starts_with("10.88.0."))
    );
    assert_eq!(status.host_ip.as_deref(), Some("192.0.2.10"));
    assert!(container_status(&h.api, "web").ready);
    assert_eq!(
        h.api.event_messages("Pulled"),
        vec!["Container image \"host\" already present on machine"]
    );
    assert_eq!(
        h.api.event_messages("Started"),
        vec!["Started container web"]
    );

    let id = h.runtime.running_container("web").expect("running");
    let config = h.runtime.container_config(&id).expect("config");
    assert_eq!(config.command, vec!["sh", "-c", "echo hi; sleep 30"]);
    assert_eq!(
        config.log_path,
        PathBuf::from("/var/lib/capstan-test/pods/uid-1/logs/web/0.log")
    );

    // Nothing changed, so nothing is written again.
    let writes = h.api.statuses().len();
    worker.sync().await;
    assert_eq!(h.api.statuses().len(), writes);
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backs_off() {
    let h = harness();
    let mut worker = PodWorker::new(
        h.context.clone(),
        pod("Always", vec![container("web")], vec![]),
        None,
    );
    worker.sync().await;

    // first exit: restarted at once
    assert!(h.runtime.exit_container("web", 1));
    worker.sync().await;
    assert_eq!(
        h.runtime
            .calls_starting_with("create_container")
            .last()
            .map(String::as_str),
        Some("create_container web attempt=1")
    );
    assert_eq!(container_status(&h.api, "web").restart_count, 1);

    // second exit: back-off of 10 s
    assert!(h.runtime.exit_container("web", 1));
    worker.sync().await;
    let status = container_status(&h.api, "web");
    assert_eq!(status.restart_count, 2);
    let waiting = status.state.and_then(|s| s.waiting).expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        waiting.message.as_deref(),
        Some("back-off 10s restarting failed container=web pod=web-abc_default(uid-1)")
    );
    let last = status
        .last_state
        .and_then(|s| s.terminated)
        .expect("last state");
    assert_eq!(last.exit_code, 1);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert_eq!(phase(&h.api), "Running");
    assert_eq!(
        h.api.event_messages("BackOff"),
        vec!["Back-off restarting failed container web in pod web-abc_default(uid-1)"]
    );

    tokio::time::advance(Duration::from_secs(9)).await;
    worker.sync().await;
    assert_eq!(h.runtime.calls_starting_with("create_container").len(), 2);
    tokio::time::advance(Duration::from_secs(1)).await;
    worker.sync().await;
    assert_eq!(
        h.runtime
            .calls_starting_with("create_container")
            .last()
            .map(String::as_str),
        Some("create_container web attempt=2")
    );
    assert!(
        container_status(&h.api, "web")
            .state
            .and_then(|s| s.running)
            .is_some()
    );
}

#[tokio::test(start_paused = true)]
async fn never_policy_settles_phase() {
    for (code, expected) in [(0, "Succeeded"), (3, "Failed")] {
        let h = harness();
        let mut worker = PodWorker::new(
            h.context.clone(),
            pod("Never", vec![container("web")], vec![]),
            None,
        );
        worker.sync().await;
        h.runtime.exit_container("web", code);
        worker.sync().await;
        assert_eq!(phase(&h.api), expected, "exit code {code}");
        assert_eq!(worker.state(), PodState::Completed);
        tokio::time::advance(Duration::from_secs(600)).await;
        worker.sync().await;
        assert_eq!(
            h.runtime.calls_starting_with("create_container").len(),
            1,
            "exit code {code}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn on_failure_restarts_only_failures() {
    let h = harness();
    let mut worker = PodWorker::new(
        h.context.clone(),
        pod("OnFailure", vec![container("a"), container("b")], vec![]),
        None,
    );
    worker.sync().await;
    h.runtime.exit_container("a", 0);
    h.runtime.exit_container("b", 2);
    worker.sync().await;
    let creates = h.runtime.calls_starting_with("create_container");
    assert_eq!(
        creates,
        vec![
            "create_container a attempt=0",
            "create_container b attempt=0",
            "create_container b attempt=1"
        ]
    );
    assert_eq!(phase(&h.api), "Running");
    h.runtime.exit_container("b", 0);
    worker.sync().await;
    assert_eq!(phase(&h.api), "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order() {
    let h = harness();
    let spec = pod(
        "Always",
        vec![container("web")],
        vec![container("first"), container("second")],
    );
    let mut worker = PodWorker::new(h.context.clone(), spec, None);
    worker.sync().await;
    assert_eq!(
        h.runtime.calls_starting_with("create_container"),
        vec!["create_container first attempt=0"]
    );
    assert_eq!(phase(&h.api), "Pending");
    h.runtime.exit_container("first", 0);
    worker.sync().await;
    h.runtime.exit_container("second", 0);
    worker.sync().await;
    worker.sync().await;
    let creates = h.runtime.calls_starting_with("create_container");
    assert_eq!(
        creates,
        vec![
            "create_container first attempt=0",
            "create_container second attempt=0",
            "create_container web attempt=0"
        ]
    );
    assert_eq!(phase(&h.api), "Running");
}

#[tokio::test(start_paused = true)]
async fn failed_init_fails_never_pod() {
    let h = harness();
    let mut worker = PodWorker::new(
        h.context.clone(),
        pod("Never", vec![container("web")], vec![container("setup")]),
        None,
    );
    worker.sync().await;
    h.runtime.exit_container("setup", 1);
    worker.sync().await;
    worker.sync().await;
    assert_eq!(phase(&h.api), "Failed");
    assert_eq!(
        h.runtime.calls_starting_with("create_container"),
        vec!["create_container setup attempt=0"]
    );
}

#[tokio::test(start_paused = true)]
async fn missing_config_map_waits() {
    let h = harness();
    let mut web = container("web");
    web.env = Some(vec![EnvVar {
        name: "MODE".into(),
        value: None,
        value_from: Some(EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: "x".into(),
                key: "mode".into(),
                optional: None,
            }),
            ..EnvVarSource::default()
        }),
    }]);
    let mut worker = PodWorker::new(h.context.clone(), pod("Always", vec![web], vec![]), None);
    worker.sync().await;
    let waiting = container_status(&h.api, "web")
        .state
        .and_then(|s| s.waiting)
        .expect("waiting");
    assert_eq!(
        waiting.reason.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert_eq!(
        waiting.message.as_deref(),
        Some("configmap \"x\" not found")
    );
    assert_eq!(phase(&h.api), "Pending");
    assert!(h.runtime.calls_starting_with("create_container").is_empty());
}

#[tokio::test(start_paused = true)]
async fn unsupported_image_retries_on_change() {
    let h = harness();
    let mut web = container("web");
    web.image = Some("nginx:1.27".into());
    let spec = pod("Always", vec![web], vec![]);
    let mut worker = PodWorker::new(h.context.clone(), spec.clone(), None);
    worker.sync().await;
    assert_eq!(
        waiting_reason(&h.api, "web").as_deref(),
        Some("ImageUnsupported")
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    worker.sync().await;
    assert_eq!(h.runtime.calls_starting_with("create_container").len(), 1);

    // the same spec again (the agent's own status write coming back) keeps the hold
    worker.update(PodUpdate::Changed(Box::new(spec.clone())));
    worker.sync().await;
    assert_eq!(h.runtime.calls_starting_with("create_container").len(), 1);

    // an edited spec is tried at once
    let mut edited = spec;
    if let Some(container) = edited.spec.as_mut().and_then(|s| s.containers.first_mut()) {
        container.image = Some("nginx:1.28".into());
    }
    worker.update(PodUpdate::Changed(Box::new(edited)));
    worker.sync().await;
    assert_eq!(h.runtime.calls_starting_with("create_container").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn deletion_stops_and_deletes() {
    let h = harness();
    let mut spec = pod("Always", vec![container("web")], vec![]);
    let mut worker = PodWorker::new(h.context.clone(), spec.clone(), None);
    worker.sync().await;
    let id = h.runtime.running_container("web").expect("running");
    spec.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    spec.metadata.deletion_grace_period_seconds = Some(5);
    worker.update(PodUpdate::Changed(Box::new(spec)));
    worker.sync().await;
    assert_eq!(worker.state(), PodState::Removed);
    assert_eq!(
        h.runtime.calls_starting_with("stop_container"),
        vec![format!("stop_container {id} grace=5s")]
    );
    assert_eq!(h.runtime.calls_starting_with("remove_sandbox").len(), 1);
    assert_eq!(
        h.api.deletes(),
        vec![(
            "default".to_string(),
            "web-abc".to_string(),
            "uid-1".to_string()
        )]
    );
    assert_eq!(
        h.api.event_messages("Killing"),
        vec!["Stopping container web"]
    );
}

#[tokio::test(start_paused = true)]
async fn vanished_pod_is_not_deleted() {
    let h = harness();
    let mut worker = PodWorker::new(
        h.context.clone(),
        pod("Always", vec![container("web")], vec![]),
        None,
    );
    worker.sync().await;
    worker.update(PodUpdate::Gone);
    worker.sync().await;
    assert_eq!(worker.state(), PodState::Removed);
    assert_eq!(h.runtime.calls_starting_with("remove_sandbox").len(), 1);
    assert!(h.api.deletes().is_empty());
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_restarts() {
    let h = harness();
    let mut web = container("web");
    web.liveness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["check".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(2),
        ..Probe::default()
    });
    let mut worker = PodWorker::new(h.context.clone(), pod("Always", vec![web], vec![]), None);
    worker.sync().await;
    h.runtime.set_exec_exit_code(1);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        worker.sync().await;
    }
    assert_eq!(
        h.api.event_messages("Killing"),
        vec!["Container web failed liveness probe, will be restarted"]
    );
    assert!(
        h.api
            .event_messages("Unhealthy")
            .iter()
            .all(|m| m == "Liveness probe failed: command exited with 1")
    );
    assert_eq!(container_status(&h.api, "web").restart_count, 1);
    assert_eq!(h.runtime.calls_starting_with("create_container").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_sets_ready_condition() {
    let h = harness();
    let mut web = container("web");
    web.readiness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["check".into()]),
        }),
        period_seconds: Some(1),
        ..Probe::default()
    });
    let mut worker = PodWorker::new(h.context.clone(), pod("Always", vec![web], vec![]), None);
    worker.sync().await;
    let ready = |api: &RecordingPodApi| {
        let status = api.last_status().expect("status");
        status
            .conditions
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status)
    };
    assert_eq!(ready(&h.api).as_deref(), Some("True"));
    h.runtime.set_exec_exit_code(1);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        worker.sync().await;
    }
    assert_eq!(ready(&h.api).as_deref(), Some("False"));
    assert!(!container_status(&h.api, "web").ready);
}

#[tokio::test(start_paused = true)]
async fn adoption_keeps_running_container() {
    let h = harness();
    let sandbox = SandboxStatus {
        id: "old-sandbox".into(),
        pod_uid: "uid-1".into(),
        pod_namespace: "default".into(),
        pod_name: "web-abc".into(),
        ip: Some("10.88.0.42".into()),
        ready: true,
        created_at: jiff::Timestamp::UNIX_EPOCH,
    };
    let running = ContainerStatus {
        id: "old-web".into(),
        sandbox_id: "old-sandbox".into(),
        name: "web".into(),
        image: "host".into(),
        image_id: "host".into(),
        attempt: 3,
        state: ContainerState::Running {
            started_at: jiff::Timestamp::UNIX_EPOCH,
        },
        log_path: PathBuf::from("/logs/web/3.log"),
        labels: Default::default(),
    };
    h.runtime.insert_sandbox(sandbox.clone());
    h.runtime.insert_container(running.clone());
    let adopted = Adopted {
        sandbox,
        containers: vec![running],
    };
    let mut worker = PodWorker::new(
        h.context.clone(),
        pod("Always", vec![container("web")], vec![]),
        Some(adopted),
    );
    worker.sync().await;
    assert!(h.runtime.calls_starting_with("run_sandbox").is_empty());
    assert!(h.runtime.calls_starting_with("create_container").is_empty());
    let status = container_status(&h.api, "web");
    assert_eq!(status.restart_count, 3);
    assert_eq!(status.container_id.as_deref(), Some("process://old-web"));
    assert_eq!(
        h.api.last_status().and_then(|s| s.pod_ip).as_deref(),
        Some("10.88.0.42")
    );

    // An exit after adoption counts from the adopted attempt.
    h.runtime.exit_container("web", 1);
    worker.sync().await;
    assert_eq!(
        h.runtime.calls_starting_with("create_container"),
        vec!["create_container web attempt=4"]
    );
}
