//! The example web Deployment: three replicas that serve HTTP on their own pod IPs, and
//! what `kubectl get`, `describe` and `logs` show about them.

use std::process::Stdio;
use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, http_get, pod_ready, read_until};

const WEB: &str = include_str!("../../examples/web.yaml");

fn ready_pods(cluster: &Cluster, count: usize) -> Vec<serde_json::Value> {
    cluster.wait_until("ready web pods", Duration::from_secs(60), || {
        let pods = cluster.pods("app=web");
        pods.len() == count && pods.iter().all(pod_ready)
    });
    cluster.pods("app=web")
}

#[test]
fn replicas_answer_on_their_own_ips() {
    let cluster = Cluster::start(ClusterOptions::default());
    let applied = cluster.apply(WEB);
    assert!(applied.contains("deployment.apps/web created"), "apply said: {applied}");

    let pods = ready_pods(&cluster, 3);
    let mut addresses: Vec<String> = Vec::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let ip = pod["status"]["podIP"].as_str().expect("a running pod has an IP").to_string();
        let body = http_get(&ip, 8080, "/").unwrap_or_default();
        assert!(body.contains(&format!("hello from {name}")), "pod {name} at {ip} answered {body:?}");
        addresses.push(ip);
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 3, "each replica needs its own IP: {addresses:?}");

    // `get -o wide` shows the pod IPs and the node.
    let wide = cluster.kubectl(&["get", "pods", "-o", "wide"]);
    for address in &addresses {
        assert!(wide.contains(address.as_str()), "get -o wide lacks {address}:\n{wide}");
    }
    assert!(wide.contains(&cluster.node_name), "get -o wide lacks the node:\n{wide}");
    assert!(wide.contains("Running") && wide.contains("1/1"), "unexpected table:\n{wide}");

    // `get deploy` and `describe` report the true counts.
    let deployments = cluster.kubectl(&["get", "deploy", "web"]);
    let row = deployments.lines().nth(1).unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..4], ["web", "3/3", "3", "3"], "get deploy printed:\n{deployments}");
    let described = cluster.kubectl(&["describe", "deploy", "web"]);
    assert!(
        described.contains("3 desired | 3 updated | 3 total | 3 available | 0 unavailable"),
        "describe deploy printed:\n{described}"
    );
    assert!(described.contains("ScalingReplicaSet"), "describe lacks events:\n{described}");
    let pod_name = pods[0]["metadata"]["name"].as_str().unwrap();
    let described_pod = cluster.kubectl(&["describe", "pod", pod_name]);
    assert!(described_pod.contains(&format!("Node:             {}", cluster.node_name))
        || described_pod.contains(&cluster.node_name), "describe pod:\n{described_pod}");
    assert!(described_pod.contains("Started"), "describe pod lacks events:\n{described_pod}");
}

#[test]
fn logs_follow_and_delete_cascades() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: ticker}
spec:
  replicas: 1
  selector: {matchLabels: {app: ticker}}
  template:
    metadata: {labels: {app: ticker}}
    spec:
      containers:
      - name: ticker
        image: host
        command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]
"#,
    );
    cluster.wait_until("ticker running", Duration::from_secs(60), || {
        cluster.pods("app=ticker").iter().any(pod_ready)
    });
    let pod = cluster.pods("app=ticker")[0]["metadata"]["name"].as_str().unwrap().to_string();

    // `logs -f` keeps streaming new lines.
    let mut follow = cluster
        .kubectl_command(&["logs", "-f", &pod])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = read_until(&mut follow, Duration::from_secs(15), |line| {
        line.split_whitespace().nth(1).and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n >= 12)
    });
    let _ = follow.kill();
    let numbers: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("tick ").and_then(|n| n.parse().ok()))
        .collect();
    assert!(numbers.last().copied().unwrap_or(0) >= 12, "logs -f stopped early: {lines:?}");
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "lines lost or repeated: {numbers:?}");

    // `--tail` and `--timestamps`.
    let tail = cluster.kubectl(&["logs", &pod, "--tail", "2"]);
    assert_eq!(tail.lines().count(), 2, "--tail 2 printed:\n{tail}");
    let stamped = cluster.kubectl(&["logs", &pod, "--tail", "1", "--timestamps"]);
    let stamp = stamped.split_whitespace().next().unwrap_or_default();
    assert!(stamp.contains('T') && stamp.ends_with('Z'), "no RFC 3339 timestamp: {stamped}");

    // Deleting the Deployment removes its ReplicaSet and pods.
    cluster.kubectl(&["delete", "deploy", "ticker"]);
    cluster.wait_until("ticker ReplicaSets and pods gone", Duration::from_secs(60), || {
        let sets = cluster.kubectl(&["get", "rs", "-l", "app=ticker", "-o", "name"]);
        sets.trim().is_empty() && cluster.pods("app=ticker").is_empty()
    });
}

/// Deleting a Deployment and applying the same manifest again gives a ReplicaSet of the
/// same name (same template hash); it must create its pods like the first one did.
#[test]
fn deployment_applied_again_after_delete_gets_its_pods() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(WEB);
    let first = ready_pods(&cluster, 3);
    let first_names: Vec<String> =
        first.iter().filter_map(|pod| pod["metadata"]["name"].as_str().map(str::to_string)).collect();

    cluster.kubectl(&["delete", "deploy", "web"]);
    cluster.apply(WEB);
    cluster.kubectl(&["wait", "--for=condition=Available", "deploy/web", "--timeout=60s"]);
    cluster.wait_until("three new ready web pods", Duration::from_secs(60), || {
        let pods = cluster.pods("app=web");
        let fresh: Vec<_> = pods
            .iter()
            .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
            .filter(|pod| !first_names.iter().any(|name| pod["metadata"]["name"] == name.as_str()))
            .collect();
        fresh.len() == 3 && fresh.iter().all(|pod| pod_ready(pod))
    });
    let ready = cluster.kubectl(&["get", "rs", "-l", "app=web", "-o", "jsonpath={.items[*].status.readyReplicas}"]);
    assert_eq!(ready.trim(), "3", "the re-created ReplicaSet reports {ready:?} ready replicas");
    cluster.stop();
}
