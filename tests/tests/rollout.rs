//! Rolling updates driven by kubectl: scale, set env, set image, rollout status, undo,
//! restart and wait, with maxUnavailable 0 keeping every desired replica ready throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, pod_ready};

const SERVER: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 2
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: host
        command: ["python3", "-m", "http.server", "8080"]
        env: [{name: VERSION, value: "1"}]
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 1
"#;

/// Counts ready pods of `app=api` in a background thread and records the lowest count
/// seen while `watching` is set.
fn watch_minimum_ready(cluster: &Cluster, watching: Arc<AtomicBool>) -> Arc<AtomicUsize> {
    let minimum = Arc::new(AtomicUsize::new(usize::MAX));
    let kubeconfig = cluster.kubeconfig.clone();
    let seen = minimum.clone();
    std::thread::spawn(move || {
        while watching.load(Ordering::SeqCst) {
            let output = std::process::Command::new(capstan_e2e::KUBECTL)
                .args(["--kubeconfig"])
                .arg(&kubeconfig)
                .args(["get", "pods", "-l", "app=api", "-o", "json"])
                .output();
            if let Ok(output) = output {
                if let Ok(list) = serde_json::from_slice::<serde_json::Value>(&output.stdout) {
                    let ready = list["items"]
                        .as_array()
                        .map(|items| items.iter().filter(|p| pod_ready(p)).count())
                        .unwrap_or(0);
                    seen.fetch_min(ready, Ordering::SeqCst);
                }
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    });
    minimum
}

fn revision(cluster: &Cluster) -> String {
    let deployment = cluster.get_json(&["get", "deploy", "api"]).unwrap();
    deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn env_version(cluster: &Cluster) -> String {
    let deployment = cluster.get_json(&["get", "deploy", "api"]).unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn rolling_update_keeps_desired_ready() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(SERVER);
    cluster.kubectl(&["wait", "--for=condition=Available", "deploy/api", "--timeout=60s"]);
    cluster.kubectl(&["rollout", "status", "deploy/api", "--timeout=60s"]);

    // Scale up and down.
    cluster.kubectl(&["scale", "deploy/api", "--replicas=3"]);
    cluster.kubectl(&["rollout", "status", "deploy/api", "--timeout=60s"]);
    cluster.wait_until("3 ready pods", Duration::from_secs(30), || {
        cluster.pods("app=api").iter().filter(|p| pod_ready(p)).count() == 3
    });
    cluster.kubectl(&["scale", "deploy/api", "--replicas=2"]);
    cluster.wait_until("2 pods after scale down", Duration::from_secs(30), || {
        cluster.pods("app=api").len() == 2
    });

    // `set env` rolls out a new ReplicaSet without dropping below 2 ready pods.
    let watching = Arc::new(AtomicBool::new(true));
    let minimum = watch_minimum_ready(&cluster, watching.clone());
    std::thread::sleep(Duration::from_millis(500));
    cluster.kubectl(&["set", "env", "deploy/api", "VERSION=2"]);
    cluster.kubectl(&["rollout", "status", "deploy/api", "--timeout=90s"]);
    watching.store(false, Ordering::SeqCst);
    assert!(minimum.load(Ordering::SeqCst) >= 2, "ready pods fell to {}", minimum.load(Ordering::SeqCst));
    assert_eq!(revision(&cluster), "2");
    let sets = cluster.kubectl(&["get", "rs", "-l", "app=api", "-o", "name"]);
    assert_eq!(sets.lines().count(), 2, "expected the old and the new ReplicaSet:\n{sets}");

    // An image the process runtime cannot run stalls the rollout but keeps the old pods serving.
    cluster.kubectl(&["set", "image", "deploy/api", "api=nginx:1.27"]);
    std::thread::sleep(Duration::from_secs(4));
    let ready = cluster.pods("app=api").iter().filter(|p| pod_ready(p)).count();
    assert_eq!(ready, 2, "old replicas must keep serving while the new image cannot start");
    let waiting = cluster.kubectl(&["get", "pods", "-l", "app=api"]);
    assert!(waiting.contains("UnsupportedImage"), "no waiting reason shown:\n{waiting}");

    // `rollout undo` returns to the previous template.
    cluster.kubectl(&["rollout", "undo", "deploy/api"]);
    cluster.kubectl(&["rollout", "status", "deploy/api", "--timeout=90s"]);
    let deployment = cluster.get_json(&["get", "deploy", "api"]).unwrap();
    assert_eq!(deployment["spec"]["template"]["spec"]["containers"][0]["image"], "host");
    assert_eq!(env_version(&cluster), "2");

    // `rollout restart` replaces every pod.
    let before: Vec<String> = cluster
        .pods("app=api")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    cluster.kubectl(&["rollout", "restart", "deploy/api"]);
    cluster.kubectl(&["rollout", "status", "deploy/api", "--timeout=90s"]);
    cluster.wait_until("old pods replaced", Duration::from_secs(30), || {
        let now = cluster.pods("app=api");
        now.len() == 2 && now.iter().all(|p| !before.contains(&p["metadata"]["name"].as_str().unwrap().to_string()))
    });
    cluster.kubectl(&["wait", "--for=condition=Available", "deploy/api", "--timeout=30s"]);
    let history = cluster.kubectl(&["rollout", "history", "deploy/api"]);
    assert!(history.lines().count() >= 4, "rollout history:\n{history}");
}
