//! Pulling images through CRI from a registry: Debian's docker-registry serves the test
//! busybox image over plain HTTP, and `capstan up --runtime cri` pulls it when a pod
//! names it, by the pod's pull policy.

use std::time::Duration;

use capstan_e2e::registry::{self, Registry};
use capstan_e2e::{Cluster, ClusterOptions, cri};
use serde_json::Value;

/// Starts a CRI cluster, or returns `None` (with the reason on stderr) when containerd or
/// the registry tools are missing.
fn cri_cluster() -> Option<Cluster> {
    if let Some(reason) = cri::missing_tools().or_else(registry::missing_tools) {
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(Cluster::start(ClusterOptions { cri: true, ..ClusterOptions::default() }))
}

fn pod_manifest(name: &str, image: &str, pull_policy: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  containers:
  - name: app
    image: {image}
    imagePullPolicy: {pull_policy}
    command: ["sh", "-c", "echo pulled from the registry"]
"#
    )
}

fn container(cluster: &Cluster, pod: &str) -> Value {
    let pod = cluster.get_json(&["get", "pod", pod]).unwrap_or(Value::Null);
    pod["status"]["containerStatuses"][0].clone()
}

fn waiting_reason(cluster: &Cluster, pod: &str) -> String {
    container(cluster, pod)["state"]["waiting"]["reason"].as_str().unwrap_or_default().to_string()
}

fn event_messages(cluster: &Cluster, pod: &str, reason: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={pod},reason={reason}");
    let events = cluster.get_json(&["get", "events", "--field-selector", &selector]).unwrap_or(Value::Null);
    let items = events["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter_map(|event| event["message"].as_str().map(String::from)).collect()
}

fn wait_succeeded(cluster: &Cluster, pod: &str) {
    cluster.wait_until(&format!("pod {pod} Succeeded"), Duration::from_secs(90), || {
        cluster.get_json(&["get", "pod", pod]).is_ok_and(|p| p["status"]["phase"] == "Succeeded")
    });
}

/// A registry on loopback needs no configuration: the image is pulled, the container's
/// `imageID` is the registry's manifest digest, and the events tell of the pull. An image
/// the registry lacks gives ErrImagePull with the registry's error, `Never` does not try
/// to pull, and an invalid name gives InvalidImageName.
#[test]
fn pulls_from_a_loopback_registry() {
    let Some(cluster) = cri_cluster() else { return };
    let registry = Registry::start("127.0.0.1");
    let digest = registry.push(&cri::unlisted_image_archive(), "capstan/busybox:v1");
    assert!(digest.starts_with("sha256:"), "digest {digest:?}");

    let image = format!("{}/capstan/busybox:v1", registry.address);
    cluster.apply(&pod_manifest("pulled", &image, "IfNotPresent"));
    wait_succeeded(&cluster, "pulled");
    assert_eq!(cluster.kubectl(&["logs", "pulled"]), "pulled from the registry\n");
    let status = container(&cluster, "pulled");
    assert_eq!(status["imageID"], format!("{}/capstan/busybox@{digest}", registry.address), "{status}");
    assert!(status["containerID"].as_str().is_some_and(|id| id.starts_with("containerd://")), "{status}");
    assert_eq!(event_messages(&cluster, "pulled", "Pulling"), [format!("Pulling image \"{image}\"")]);
    let pulled = event_messages(&cluster, "pulled", "Pulled");
    assert!(
        pulled.iter().any(|m| m.starts_with(&format!("Successfully pulled image \"{image}\" in "))),
        "Pulled events: {pulled:?}"
    );

    // the image is now present, so a second pod does not pull it again
    cluster.apply(&pod_manifest("again", &image, "IfNotPresent"));
    wait_succeeded(&cluster, "again");
    assert!(event_messages(&cluster, "again", "Pulling").is_empty());
    assert_eq!(
        event_messages(&cluster, "again", "Pulled"),
        [format!("Container image \"{image}\" already present on machine")]
    );

    let absent = format!("{}/capstan/absent:v1", registry.address);
    cluster.apply(&pod_manifest("absent", &absent, "IfNotPresent"));
    cluster.wait_until("absent fails to pull", Duration::from_secs(60), || {
        matches!(waiting_reason(&cluster, "absent").as_str(), "ErrImagePull" | "ImagePullBackOff")
    });
    let message = container(&cluster, "absent")["state"]["waiting"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(&absent), "waiting message: {message:?}");
    assert!(message.contains("not found"), "waiting message: {message:?}");

    let never = format!("{}/capstan/busybox:never", registry.address);
    cluster.apply(&pod_manifest("never", &never, "Never"));
    cluster.wait_until("never is not pulled", Duration::from_secs(60), || {
        waiting_reason(&cluster, "never") == "ErrImageNeverPull"
    });
    assert!(event_messages(&cluster, "never", "Pulling").is_empty());

    // a name that is no image reference is not pulled at all
    cluster.apply(&pod_manifest("invalid", "UPPER/Case:x", "IfNotPresent"));
    cluster.wait_until("invalid is rejected", Duration::from_secs(60), || {
        waiting_reason(&cluster, "invalid") == "InvalidImageName"
    });
    assert!(event_messages(&cluster, "invalid", "Pulling").is_empty());
}

/// A registry on an address that is not loopback (the node's pod bridge) serves plain
/// HTTP, which containerd refuses until `--insecure-registry` names it, and again once
/// the flag is dropped.
#[test]
fn insecure_registry_flag_allows_plain_http() {
    let Some(mut cluster) = cri_cluster() else { return };
    let registry = Registry::start(&cluster.gateway());
    registry.push(&cri::unlisted_image_archive(), "capstan/busybox:v1");
    registry.push(&cri::unlisted_image_archive(), "capstan/busybox:v2");
    let image = format!("{}/capstan/busybox:v1", registry.address);

    cluster.apply(&pod_manifest("plain", &image, "IfNotPresent"));
    cluster.wait_until("plain fails to pull over HTTPS", Duration::from_secs(60), || {
        matches!(waiting_reason(&cluster, "plain").as_str(), "ErrImagePull" | "ImagePullBackOff")
    });
    let message = container(&cluster, "plain")["state"]["waiting"]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("HTTP response to HTTPS client"), "waiting message: {message:?}");
    cluster.kubectl(&["delete", "pod", "plain", "--wait=true"]);

    let flag = ["--insecure-registry", registry.address.as_str()];
    cluster.restart_with(&flag);
    cluster.apply(&pod_manifest("plain", &image, "IfNotPresent"));
    wait_succeeded(&cluster, "plain");
    assert_eq!(cluster.kubectl(&["logs", "plain"]), "pulled from the registry\n");

    // without the flag, a tag not pulled yet needs HTTPS again
    cluster.restart_without(&flag);
    let second = format!("{}/capstan/busybox:v2", registry.address);
    cluster.apply(&pod_manifest("again", &second, "IfNotPresent"));
    cluster.wait_until("again fails to pull over HTTPS", Duration::from_secs(60), || {
        matches!(waiting_reason(&cluster, "again").as_str(), "ErrImagePull" | "ImagePullBackOff")
    });
}
