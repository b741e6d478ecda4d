//! Restarts: a stopped and restarted cluster has every object back and adopts its running
//! pods, and a server killed during a burst of creates loses none it acknowledged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, pod_ready};

const WEB: &str = include_str!("../../examples/web.yaml");

fn pod_identities(cluster: &Cluster) -> Vec<(String, String, i64)> {
    let mut pods: Vec<(String, String, i64)> = cluster
        .pods("app=web")
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                p["status"]["podIP"].as_str().unwrap_or_default().to_string(),
                p["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    pods.sort();
    pods
}

#[test]
fn restart_keeps_objects_and_adopts_pods() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(WEB);
    cluster.kubectl(&["create", "configmap", "settings", "--from-literal=color=blue"]);
    cluster.kubectl(&["create", "namespace", "team-a"]);
    cluster.wait_until("3 ready web pods", Duration::from_secs(60), || {
        let pods = cluster.pods("app=web");
        pods.len() == 3 && pods.iter().all(pod_ready)
    });
    let before = pod_identities(&cluster);
    let uid_before = cluster.get_json(&["get", "deploy", "web"]).unwrap()["metadata"]["uid"].clone();

    cluster.stop();
    cluster.restart();

    assert_eq!(cluster.kubectl(&["get", "configmap", "settings", "-o", "jsonpath={.data.color}"]), "blue");
    assert!(cluster.kubectl(&["get", "namespace", "team-a"]).contains("Active"));
    let uid_after = cluster.get_json(&["get", "deploy", "web"]).unwrap()["metadata"]["uid"].clone();
    assert_eq!(uid_before, uid_after, "the Deployment was recreated");

    cluster.wait_until("web pods ready after restart", Duration::from_secs(60), || {
        let pods = cluster.pods("app=web");
        pods.len() == 3 && pods.iter().all(pod_ready)
    });
    std::thread::sleep(Duration::from_secs(3));
    let after = pod_identities(&cluster);
    assert_eq!(after.len(), 3, "duplicate or missing pods: {after:?}");
    let names_before: Vec<&String> = before.iter().map(|p| &p.0).collect();
    let names_after: Vec<&String> = after.iter().map(|p| &p.0).collect();
    assert_eq!(names_before, names_after, "pods were replaced instead of adopted");
    for (name, ip, restarts) in &after {
        assert!(*restarts <= 1, "pod {name} restarted {restarts} times");
        let body = capstan_e2e::http_get(ip, 8080, "/").unwrap_or_default();
        assert!(body.contains(name.as_str()), "pod {name} does not answer after restart: {body:?}");
    }
    let sets = cluster.kubectl(&["get", "rs", "-o", "name"]);
    assert_eq!(sets.lines().count(), 1, "ReplicaSets after restart:\n{sets}");
}

#[test]
fn kill_during_creates_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let cluster_ref = &cluster;
    std::thread::scope(|scope| {
        for worker in 0..8 {
            let acknowledged = acknowledged.clone();
            scope.spawn(move || {
                for i in 0..400 {
                    let name = format!("burst-{worker}-{i}");
                    let body = format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"i":"{i}"}}}}"#);
                    let (code, _) = cluster_ref.request("POST", "/api/v1/namespaces/default/configmaps", "application/json", &body);
                    match code {
                        201 => acknowledged.lock().unwrap().push(name),
                        0 => break, // the server is gone
                        _ => {}
                    }
                }
            });
        }
        // Let the burst run, then kill the server in the middle of it.
        std::thread::sleep(Duration::from_secs(3));
        kill_server(cluster_ref);
    });
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() > 20, "the burst acknowledged only {} creates", acknowledged.len());

    cluster.kill();
    cluster.restart();
    let stored = cluster.kubectl(&["get", "configmaps", "-o", "name"]);
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|name| !stored.lines().any(|line| line == format!("configmap/{name}")))
        .collect();
    assert!(missing.is_empty(), "{} acknowledged creates were lost: {:?}", missing.len(), &missing[..missing.len().min(10)]);
}

/// Sends SIGKILL to the server process; clients in flight see connection errors.
fn kill_server(cluster: &Cluster) {
    let pid = cluster.server_pid().expect("the server is running");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
}
