//! Startup, liveness and readiness probes: when to run them, how to run exec, HTTP and TCP
//! checks, and when a run of results flips the probe's verdict.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use crate::runtime::Runtime;

/// Which question a probe answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    /// The word Kubernetes uses in Event messages (`Liveness probe failed: …`).
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// The outcome of one probe run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub success: bool,
    /// Why it failed, as Kubernetes words it (`HTTP probe failed with statuscode: 500`).
    pub message: String,
}

/// Schedule and verdict of one probe of one container run. A restarted container gets a
/// new tracker, so counts never carry over between runs.
#[derive(Clone, Debug)]
pub struct ProbeTracker {
    pub kind: ProbeKind,
    pub probe: Probe,
    verdict: bool,
    successes: u32,
    failures: u32,
    next_run: Instant,
}

impl ProbeTracker {
    /// Starts tracking a container that started at `started`. Liveness begins as passing,
    /// startup and readiness as failing, as in kubelet.
    pub fn new(kind: ProbeKind, probe: Probe, started: Instant) -> Self {
        let delay = seconds(probe.initial_delay_seconds, 0);
        Self {
            kind,
            verdict: kind == ProbeKind::Liveness,
            successes: 0,
            failures: 0,
            next_run: started + delay,
            probe,
        }
    }

    /// Whether the latest run of results counts as passing.
    pub fn passing(&self) -> bool {
        self.verdict
    }

    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_run
    }

    pub fn next_run(&self) -> Instant {
        self.next_run
    }

    pub fn timeout(&self) -> Duration {
        seconds(self.probe.timeout_seconds, 1)
    }

    /// Records one result and schedules the next run. Returns the new verdict when this
    /// result flipped it: after `successThreshold` successes in a row, or
    /// `failureThreshold` failures in a row.
    pub fn record(&mut self, success: bool, now: Instant) -> Option<bool> {
        self.next_run = now + seconds(self.probe.period_seconds, 10);
        if success {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let success_threshold = threshold(self.probe.success_threshold, 1);
        let failure_threshold = threshold(self.probe.failure_threshold, 3);
        let flipped = if success && !self.verdict && self.successes >= success_threshold {
            Some(true)
        } else if !success && self.verdict && self.failures >= failure_threshold {
            Some(false)
        } else if !success && self.kind != ProbeKind::Liveness && self.failures == failure_threshold
        {
            // A startup or readiness probe that never passed reports its failure once the
            // threshold is reached, so the agent can act on a startup probe that gives up.
            Some(false)
        } else {
            None
        };
        if let Some(verdict) = flipped {
            self.verdict = verdict;
        }
        flipped
    }
}

fn seconds(value: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(
        value
            .and_then(|v| u64::try_from(v).ok())
            .filter(|&v| v > 0)
            .unwrap_or(default),
    )
}

fn threshold(value: Option<i32>, default: u32) -> u32 {
    value
        .and_then(|v| u32::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// Where a probe connects: the pod's address and the container's declared ports.
#[derive(Clone, Debug)]
pub struct ProbeTarget {
    pub container_id: String,
    pub pod_ip: Option<IpAddr>,
    pub host_ip: IpAddr,
    pub ports: Vec<ContainerPort>,
}

/// Resolves a probe port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, String> {
    match port {
        IntOrString::Int(number) => {
            u16::try_from(*number).map_err(|_| format!("invalid port number: {number}"))
        }
        IntOrString::String(name) => {
            if let Ok(number) = name.parse::<u16>() {
                return Ok(number);
            }
            let found = ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()));
            let number = found
                .map(|p| p.container_port)
                .ok_or_else(|| format!("couldn't find port {name:?} in the container"))?;
            u16::try_from(number).map_err(|_| format!("invalid port number: {number}"))
        }
    }
}

/// Runs one probe to completion, within its `timeoutSeconds`.
pub async fn run_probe(runtime: &dyn Runtime, probe: &Probe, target: &ProbeTarget) -> ProbeOutcome {
    let timeout = seconds(probe.timeout_seconds, 1);
    let failed = |message: String| ProbeOutcome {
        success: false,
        message,
    };
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        return match runtime
            .exec_sync(&target.container_id, &command, timeout)
            .await
        {
            Ok(output) if output.exit_code == 0 => ProbeOutcome {
                success: true,
                message: String::new(),
            },
            Ok(output) => {
                let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
                failed(if text.is_empty() {
                    format!("command exited with {}", output.exit_code)
                } else {
                    text
                })
            }
            Err(error) => failed(error.to_string()),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = match resolve_port(&http.port, &target.ports) {
            Ok(port) => port,
            Err(message) => return failed(message),
        };
        let host = http
            .host
            .clone()
            .unwrap_or_else(|| target.pod_ip.unwrap_or(target.host_ip).to_string());
        let scheme = http
            .scheme
            .as_deref()
            .unwrap_or("HTTP")
            .to_ascii_lowercase();
        let path = http.path.as_deref().unwrap_or("/");
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let url = format!("{scheme}://{host}:{port}{path}");
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return http_probe(&url, &headers, timeout).await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match resolve_port(&tcp.port, &target.ports) {
            Ok(port) => port,
            Err(message) => return failed(message),
        };
        let host = tcp
            .host
            .clone()
            .unwrap_or_else(|| target.pod_ip.unwrap_or(target.host_ip).to_string());
        let connect = tokio::net::TcpStream::connect((host.as_str(), port));
        return match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(_)) => ProbeOutcome {
                success: true,
                message: String::new(),
            },
            Ok(Err(error)) => failed(format!("dial tcp {host}:{port}: {error}")),
            Err(_) => failed(format!("dial tcp {host}:{port}: i/o timeout")),
        };
    }
    failed("probe has no handler (exec, httpGet or tcpSocket)".to_string())
}

/// Sends one GET. Redirects are not followed because a 3xx answer already counts as
/// success, and following one could send the probe to a host outside the pod.
async fn http_probe(url: &str, headers: &[(String, String)], timeout: Duration) -> ProbeOutcome {
    let failed = |message: String| ProbeOutcome {
        success: false,
        message,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        // kubelet does not verify a probed container's certificate either.
        .danger_accept_invalid_certs(true)
        .build();
    let client = match client {
        Ok(client) => client,
        Err(error) => return failed(format!("failed to build the HTTP client: {error}")),
    };
    let mut request = client.get(url).header("User-Agent", "kube-probe/1.33");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) if (200..400).contains(&response.status().as_u16()) => ProbeOutcome {
            success: true,
            message: String::new(),
        },
        Ok(response) => failed(format!(
            "HTTP probe failed with statuscode: {}",
            response.status().as_u16()
        )),
        Err(error) if error.is_timeout() => failed(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Err(error) => failed(format!("Get \"{url}\": {error}")),
    }
}

#[cfg(test)]
#[path = "probe_tests.rs"]
mod tests;
