//! Resource limits on the process runtime: cgroup files and the OOM killer.

mod process_support;

use std::time::Duration;

use capstan_agent::runtime::{ContainerState, Resources, Runtime};
use process_support::{fixture, python};

fn read_cgroup(path: std::path::PathBuf) -> String {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .trim()
        .to_string()
}

#[tokio::test]
async fn limits_appear_in_cgroup_files() {
    let Some(fx) = fixture(31, false) else { return };
    let sandbox_config = fx.sandbox_config("limited");
    let sandbox = fx.runtime.run_sandbox(&sandbox_config).await.unwrap();
    let mut config = fx.container_config("limited", &["sleep", "60"]);
    config.resources = Resources {
        cpu_request_millis: Some(250),
        cpu_limit_millis: Some(500),
        memory_limit_bytes: Some(64 * 1024 * 1024),
    };
    let id = fx
        .runtime
        .create_container(&sandbox.id, &config)
        .await
        .unwrap();
    fx.runtime.start_container(&id).await.unwrap();

    let relative = format!("{}/{id}", sandbox_config.pod_uid);
    let cpu = fx.cgroup_dir("cpu").join(&relative);
    assert_eq!(read_cgroup(cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read_cgroup(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read_cgroup(cpu.join("cpu.shares")), "256");
    let memory = fx.cgroup_dir("memory").join(&relative);
    assert_eq!(
        read_cgroup(memory.join("memory.limit_in_bytes")),
        "67108864"
    );

    // the process is in the container's cgroup
    let procs = read_cgroup(memory.join("cgroup.procs"));
    assert_eq!(procs.lines().count(), 1, "cgroup.procs: {procs}");

    fx.runtime.remove_sandbox(&sandbox.id).await.unwrap();
    assert!(!cpu.exists(), "container cgroup left behind");
    assert!(
        !fx.cgroup_dir("cpu").join(&sandbox_config.pod_uid).exists(),
        "pod cgroup left behind"
    );
}

#[tokio::test]
async fn memory_hog_is_oom_killed() {
    let Some(fx) = fixture(32, false) else { return };
    let sandbox = fx
        .runtime
        .run_sandbox(&fx.sandbox_config("hog"))
        .await
        .unwrap();
    let python = python();
    let mut config = fx.container_config(
        "hog",
        &[
            &python,
            "-c",
            "x = bytearray(512 * 1024 * 1024); print('survived')",
        ],
    );
    config.resources.memory_limit_bytes = Some(64 * 1024 * 1024);
    let id = fx
        .runtime
        .create_container(&sandbox.id, &config)
        .await
        .unwrap();
    fx.runtime.start_container(&id).await.unwrap();

    let state = fx.wait_exited(&id, Duration::from_secs(20)).await;
    let ContainerState::Exited {
        exit_code, reason, ..
    } = &state
    else {
        panic!("still running: {state:?}")
    };
    assert_eq!(*exit_code, 137);
    assert_eq!(reason, "OOMKilled");
}
