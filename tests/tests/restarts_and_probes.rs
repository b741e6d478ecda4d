//! Restart policy and probes: a killed process is restarted and counted, a failing
//! liveness probe restarts the container, a failing readiness probe takes the pod out of
//! Ready, and a pod that fits no node says why.

use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, conditions_true, pod_ready};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_007)
}

/// Finds processes whose command line contains `marker` and kills them with SIGKILL.
fn kill_processes_with(marker: &str) -> usize {
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) && !cmdline.contains("kubectl") {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    }
    killed
}

fn restart_count(cluster: &Cluster, pod: &str) -> i64 {
    cluster
        .get_json(&["get", "pod", pod])
        .map(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0))
        .unwrap_or(0)
}

fn pod_manifest(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{body}")
}

#[test]
fn killed_process_is_restarted_and_counted() {
    let cluster = Cluster::start(ClusterOptions::default());
    let marker = unique("capstan-kill-me");
    cluster.apply(&pod_manifest("victim", &format!(
        "  containers:\n  - name: main\n    image: host\n    command: [python3, -c, 'import time; time.sleep(1000)', {marker}]\n"
    )));
    cluster.wait_until("victim running", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", "victim"]).is_ok_and(|p| pod_ready(&p))
    });
    assert_eq!(restart_count(&cluster, "victim"), 0);

    assert_eq!(kill_processes_with(&marker), 1, "the container process was not found");
    cluster.wait_until("restart counted", Duration::from_secs(30), || {
        restart_count(&cluster, "victim") == 1
    });
    cluster.wait_until("victim running again", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", "victim"]).is_ok_and(|p| pod_ready(&p))
    });
    let pod = cluster.get_json(&["get", "pod", "victim"]).unwrap();
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "lastState: {last}");
}

#[test]
fn failing_liveness_restarts_container() {
    let cluster = Cluster::start(ClusterOptions::default());
    let flag = format!("/tmp/{}", unique("capstan-alive"));
    cluster.apply(&pod_manifest("lively", &format!(
        "  containers:\n  - name: main\n    image: host\n    command: [sh, -c, 'touch {flag}; exec sleep 1000']\n    livenessProbe:\n      exec: {{command: [test, -f, {flag}]}}\n      periodSeconds: 1\n      failureThreshold: 2\n"
    )));
    cluster.wait_until("lively running", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", "lively"]).is_ok_and(|p| pod_ready(&p))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(restart_count(&cluster, "lively"), 0, "a passing probe must not restart");

    std::fs::remove_file(&flag).unwrap();
    cluster.wait_until("liveness restart", Duration::from_secs(30), || {
        restart_count(&cluster, "lively") >= 1
    });
    let described = cluster.kubectl(&["describe", "pod", "lively"]);
    assert!(described.contains("Liveness probe failed"), "describe pod:\n{described}");
    let _ = std::fs::remove_file(&flag);
}

#[test]
fn failing_readiness_makes_pod_unready() {
    let cluster = Cluster::start(ClusterOptions::default());
    let flag = format!("/tmp/{}", unique("capstan-ready"));
    std::fs::write(&flag, "").unwrap();
    cluster.apply(&pod_manifest("ready", &format!(
        "  containers:\n  - name: main\n    image: host\n    command: [sleep, '1000']\n    readinessProbe:\n      exec: {{command: [test, -f, {flag}]}}\n      periodSeconds: 1\n"
    )));
    cluster.wait_until("ready pod Ready", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", "ready"]).is_ok_and(|p| pod_ready(&p))
    });

    std::fs::remove_file(&flag).unwrap();
    cluster.wait_until("pod not Ready", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", "ready"]).is_ok_and(|p| !conditions_true(&p, "Ready"))
    });
    let pod = cluster.get_json(&["get", "pod", "ready"]).unwrap();
    assert_eq!(pod["status"]["phase"], "Running", "an unready pod keeps running");
    assert_eq!(pod["status"]["containerStatuses"][0]["restartCount"], 0);
    let table = cluster.kubectl(&["get", "pod", "ready"]);
    assert!(table.contains("0/1"), "get pod should show 0/1 ready:\n{table}");

    std::fs::write(&flag, "").unwrap();
    cluster.wait_until("pod Ready again", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", "ready"]).is_ok_and(|p| pod_ready(&p))
    });
    let _ = std::fs::remove_file(&flag);
}

#[test]
fn pending_pod_explains_why() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&pod_manifest("huge", "  containers:\n  - name: main\n    image: host\n    command: [sleep, '1000']\n    resources:\n      requests: {cpu: '5000', memory: 1Ti}\n"));
    cluster.wait_until("FailedScheduling event", Duration::from_secs(30), || {
        cluster.kubectl(&["describe", "pod", "huge"]).contains("FailedScheduling")
    });
    let described = cluster.kubectl(&["describe", "pod", "huge"]);
    assert!(described.contains("0/1 nodes are available"), "describe pod:\n{described}");
    assert!(described.contains("Insufficient cpu"), "describe pod:\n{described}");
    assert!(described.contains("Insufficient memory"), "describe pod:\n{described}");
    let pod = cluster.get_json(&["get", "pod", "huge"]).unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(pod["spec"]["nodeName"].is_null(), "an unschedulable pod must stay unbound");

    cluster.apply(&pod_manifest("picky", "  nodeSelector: {disktype: ssd}\n  containers:\n  - name: main\n    image: host\n    command: [sleep, '1000']\n"));
    cluster.wait_until("node selector explained", Duration::from_secs(30), || {
        cluster.kubectl(&["describe", "pod", "picky"]).contains("didn't match Pod's node affinity/selector")
    });
}

/// A crash loop repeats the same events; like Kubernetes' recorders, capstan folds each
/// into one Event whose count grows, and `kubectl describe` shows "(xN over …)".
#[test]
fn repeated_events_are_counted_not_duplicated() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&pod_manifest(
        "crasher",
        "  containers:\n  - name: main\n    image: host\n    command: [sh, -c, 'exit 1']\n",
    ));
    cluster.wait_until("three restarts", Duration::from_secs(60), || restart_count(&cluster, "crasher") >= 3);
    let events = cluster.get_json(&["get", "events", "--field-selector", "involvedObject.name=crasher"]).unwrap();
    let started: Vec<&serde_json::Value> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| event["reason"] == "Started")
        .collect();
    assert_eq!(started.len(), 1, "one Started event per container, counted: {started:#?}");
    assert!(started[0]["count"].as_i64().unwrap_or(0) >= 3, "count of Started: {}", started[0]["count"]);
    let described = cluster.kubectl(&["describe", "pod", "crasher"]);
    assert!(described.contains("(x"), "describe pod shows no repeat count:\n{described}");
}
