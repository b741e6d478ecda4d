//! The benchmark's workload in a cluster: a Deployment of backend pods that run this
//! program's `serve` subcommand, and a ClusterIP Service in front of them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use capstan_e2e::{Cluster, pod_ready};
use serde_json::json;

/// Name of the Deployment, its pod label and the Service.
pub const NAME: &str = "bench";
/// Port the backends listen on inside their pods.
pub const BACKEND_PORT: u16 = 8080;
/// Port of the Service.
pub const SERVICE_PORT: u16 = 80;

/// Addresses of the running workload.
pub struct Workload {
    /// Every backend pod, sorted by pod name.
    pub pods: Vec<SocketAddr>,
    pub cluster_ip: SocketAddr,
}

/// Creates `replicas` backend pods running `program serve` and the Service, and waits
/// until every pod is Ready.
pub fn deploy(cluster: &Cluster, program: &Path, replicas: usize) -> Workload {
    cluster.apply(&manifest(program, replicas));
    cluster.wait_until(&format!("{replicas} ready {NAME} pods"), Duration::from_secs(120), || {
        let pods = cluster.pods(&format!("app={NAME}"));
        pods.len() == replicas && pods.iter().all(pod_ready)
    });

    let mut pods: Vec<(String, SocketAddr)> = cluster
        .pods(&format!("app={NAME}"))
        .iter()
        .filter_map(|pod| {
            let name = pod["metadata"]["name"].as_str()?.to_string();
            let ip = pod["status"]["podIP"].as_str()?.parse().ok()?;
            Some((name, SocketAddr::new(ip, BACKEND_PORT)))
        })
        .collect();
    pods.sort();
    assert_eq!(pods.len(), replicas, "every ready pod has a podIP");

    let service = cluster.get_json(&["get", "service", NAME]).expect("the Service exists");
    let ip = service["spec"]["clusterIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("Service {NAME} has no valid clusterIP: {service}"));
    Workload { pods: pods.into_iter().map(|(_, address)| address).collect(), cluster_ip: SocketAddr::new(ip, SERVICE_PORT) }
}

/// Builds the Deployment and Service as one multi-document JSON stream for `kubectl apply`.
fn manifest(program: &Path, replicas: usize) -> String {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{
                    "name": "serve", "image": "host",
                    "command": [program.display().to_string(), "serve", "--port", BACKEND_PORT.to_string()],
                    "ports": [{"name": "http", "containerPort": BACKEND_PORT}],
                    "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 1}
                }]}
            }
        }
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": NAME},
        "spec": {"selector": {"app": NAME}, "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]}
    });
    format!("{deployment}\n---\n{service}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_runs_serve_subcommand() {
        let text = manifest(Path::new("/opt/capstan-bench-proxy"), 3);
        let deployment: serde_json::Value = serde_json::from_str(text.split("\n---\n").next().unwrap()).unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["command"], json!(["/opt/capstan-bench-proxy", "serve", "--port", "8080"]));
        assert_eq!(deployment["spec"]["replicas"], 3);
    }
}
