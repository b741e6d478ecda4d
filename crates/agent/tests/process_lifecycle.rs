//! Container lifecycle on the process runtime: logs, exit codes, stop, adoption.

mod process_support;

use std::time::{Duration, Instant};

use capstan_agent::runtime::{ContainerState, Runtime, RuntimeError};
use process_support::{fixture, log_lines};

const WAIT: Duration = Duration::from_secs(10);

fn exit_code(state: &ContainerState) -> Option<i32> {
    match state {
        ContainerState::Exited { exit_code, .. } => Some(*exit_code),
        _ => None,
    }
}

fn reason(state: &ContainerState) -> Option<&str> {
    match state {
        ContainerState::Exited { reason, .. } => Some(reason),
        _ => None,
    }
}

#[tokio::test]
async fn log_has_cri_lines() {
    let Some(fx) = fixture(1, false) else { return };
    let (_, id) = fx
        .run(
            "logger",
            &[
                "sh",
                "-c",
                "for i in 1 2 3; do echo line $i; done; echo oops >&2",
            ],
        )
        .await;
    let state = fx.wait_exited(&id, WAIT).await;
    assert_eq!(exit_code(&state), Some(0), "{state:?}");
    assert_eq!(reason(&state), Some("Completed"));

    let status = fx.runtime.container_status(&id).await.unwrap();
    let lines = log_lines(&status.log_path);
    let stdout: Vec<_> = lines
        .iter()
        .filter(|line| line.1 == "stdout")
        .map(|line| line.3.as_str())
        .collect();
    assert_eq!(stdout, ["line 1", "line 2", "line 3"]);
    assert!(
        lines
            .iter()
            .any(|line| line.1 == "stderr" && line.3 == "oops"),
        "{lines:?}"
    );
    assert!(lines.iter().all(|line| line.2 == "F"));

    let times: Vec<jiff::Timestamp> = lines
        .iter()
        .filter(|line| line.1 == "stdout")
        .map(|line| line.0.parse().expect("RFC 3339 timestamp"))
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] <= pair[1]),
        "timestamps go back: {times:?}"
    );
    assert!(
        lines.iter().all(|line| line.0.len() == 30),
        "nine fraction digits: {lines:?}"
    );
}

#[tokio::test]
async fn exit_codes_follow_kubernetes() {
    let Some(fx) = fixture(2, false) else { return };
    let not_executable = fx.state_dir.join("not-executable");
    std::fs::write(&not_executable, "echo never runs\n").unwrap();
    let not_executable = not_executable.to_str().unwrap();
    let cases: [(&[&str], i32, &str); 4] = [
        (&["sh", "-c", "exit 3"], 3, "Error"),
        (&["sh", "-c", "kill -9 $$"], 137, "Error"),
        (&["no-such-command-cst"], 127, "Error"),
        (&[not_executable], 126, "Error"),
    ];
    for (command, code, expected_reason) in cases {
        let (_, id) = fx.run("exits", command).await;
        let state = fx.wait_exited(&id, WAIT).await;
        assert_eq!(exit_code(&state), Some(code), "{command:?}: {state:?}");
        assert_eq!(reason(&state), Some(expected_reason), "{command:?}");
    }

    let (_, id) = fx.run("missing", &["no-such-command-cst"]).await;
    let ContainerState::Exited { message, .. } = fx.wait_exited(&id, WAIT).await else {
        panic!("not exited")
    };
    assert_eq!(
        message.as_deref(),
        Some("exec: \"no-such-command-cst\": executable file not found in $PATH")
    );
}

#[tokio::test]
async fn other_images_are_rejected() {
    let Some(fx) = fixture(3, false) else { return };
    let sandbox = fx
        .runtime
        .run_sandbox(&fx.sandbox_config("web"))
        .await
        .unwrap();
    let mut config = fx.container_config("web", &["nginx"]);
    config.image = "nginx".to_string();
    let err = fx
        .runtime
        .create_container(&sandbox.id, &config)
        .await
        .unwrap_err();
    let RuntimeError::ImageUnsupported { reason, message } = err else {
        panic!("wrong error: {err}")
    };
    assert_eq!(reason, "UnsupportedImage");
    assert!(message.contains("\"nginx\""), "{message}");
    assert!(message.contains("runtimeClassName \"cri\""), "{message}");
}

#[tokio::test]
async fn stop_honours_sigterm_trap() {
    let Some(fx) = fixture(4, false) else { return };
    let script = "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done";
    let (_, id) = fx.run("polite", &["sh", "-c", script]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    fx.runtime
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let status = fx.runtime.container_status(&id).await.unwrap();
    assert_eq!(exit_code(&status.state), Some(0), "{:?}", status.state);
    assert!(
        log_lines(&status.log_path)
            .iter()
            .any(|line| line.3 == "bye")
    );

    // stopping again is fine
    fx.runtime
        .stop_container(&id, Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn stop_kills_after_grace() {
    let Some(fx) = fixture(5, false) else { return };
    let (_, id) = fx
        .run(
            "stubborn",
            &["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    fx.runtime
        .stop_container(&id, Duration::from_secs(1))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1),
        "killed before the grace period: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let status = fx.runtime.container_status(&id).await.unwrap();
    assert_eq!(exit_code(&status.state), Some(137), "{:?}", status.state);
}

#[tokio::test]
async fn restarted_runtime_adopts_container() {
    let Some(fx) = fixture(6, false) else { return };
    let script = "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done";
    let (sandbox_id, id) = fx.run("ticker", &["sh", "-c", script]).await;
    let log_path = fx.runtime.container_status(&id).await.unwrap().log_path;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let runtime = fx.restarted_runtime();
    let containers = runtime.list_containers().await.unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].id, id);
    assert_eq!(containers[0].sandbox_id, sandbox_id);
    assert!(
        matches!(containers[0].state, ContainerState::Running { .. }),
        "{:?}",
        containers[0].state
    );
    let sandboxes = runtime.list_sandboxes().await.unwrap();
    assert_eq!(
        sandboxes.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [sandbox_id.as_str()]
    );

    let before = log_lines(&log_path).len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        log_lines(&log_path).len() > before,
        "the adopted container stopped logging"
    );

    runtime.remove_sandbox(&sandbox_id).await.unwrap();
    assert!(runtime.list_containers().await.unwrap().is_empty());
    assert!(runtime.list_sandboxes().await.unwrap().is_empty());
    runtime
        .remove_sandbox(&sandbox_id)
        .await
        .expect("removing twice is fine");
}

#[tokio::test]
async fn host_network_exec_and_stats() {
    let Some(fx) = fixture(7, false) else { return };
    let (sandbox_id, id) = fx
        .run("busy", &["sh", "-c", "while true; do :; done"])
        .await;
    assert_eq!(
        fx.runtime.sandbox_status(&sandbox_id).await.unwrap().ip,
        None,
        "host network has no pod IP"
    );

    let output = fx
        .runtime
        .exec_sync(
            &id,
            &[
                "sh".into(),
                "-c".into(),
                "echo out; echo err >&2; exit 4".into(),
            ],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(output.exit_code, 4);
    assert_eq!(output.stdout, b"out\n");
    assert_eq!(output.stderr, b"err\n");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = fx.runtime.container_stats(&id).await.unwrap();
    assert!(
        stats.cpu_usage_nanos > 100_000_000,
        "busy loop used {}ns",
        stats.cpu_usage_nanos
    );
    assert!(stats.memory_working_set_bytes > 0);
    fx.runtime.remove_sandbox(&sandbox_id).await.unwrap();
}
