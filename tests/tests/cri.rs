//! Real images through CRI: `capstan up --runtime cri` starts its own containerd, and
//! kubectl runs busybox pods and Jobs from the archives that `scripts/build-images` writes.

use std::process::Command;
use std::time::Duration;

use capstan_e2e::cri::{self, BUSYBOX};
use capstan_e2e::{Cluster, ClusterOptions, capstan_binary, http_get, pod_ready};
use serde_json::Value;

/// Starts a CRI cluster, or returns `None` (with the reason on stderr) when containerd
/// cannot run on this machine.
fn cri_cluster() -> Option<Cluster> {
    if let Some(reason) = cri::missing_tools() {
        eprintln!("skipped: containerd cannot run here: {reason}");
        return None;
    }
    Some(Cluster::start(ClusterOptions { cri: true, ..ClusterOptions::default() }))
}

fn pod(cluster: &Cluster, name: &str) -> Value {
    cluster.get_json(&["get", "pod", name]).unwrap_or(Value::Null)
}

fn wait_phase(cluster: &Cluster, name: &str, phase: &str) -> Value {
    cluster.wait_until(&format!("pod {name} {phase}"), Duration::from_secs(90), || {
        pod(cluster, name)["status"]["phase"] == phase
    });
    pod(cluster, name)
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    let statuses = pod["status"]["containerStatuses"].as_array();
    statuses
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no status for container {name}: {pod}"))
}

#[test]
fn busybox_pod_env_and_exit_codes() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {{name: greeting}}
data: {{GREETING: hello, TARGET: containerd}}
---
apiVersion: v1
kind: Pod
metadata: {{name: envpod}}
spec:
  restartPolicy: Never
  containers:
  - name: ok
    image: {BUSYBOX}
    command: ["sh", "-c", "echo $GREETING $TARGET from $(hostname) as $POD_NAME; cat /etc/hostname"]
    envFrom: [{{configMapRef: {{name: greeting}}}}]
    env:
    - name: POD_NAME
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
  - name: fails
    image: {BUSYBOX}
    command: ["sh", "-c", "echo about to fail >&2; exit 3"]
"#
    ));

    let pod = wait_phase(&cluster, "envpod", "Failed");
    let ok = container_status(&pod, "ok");
    assert_eq!(ok["state"]["terminated"]["exitCode"], 0, "{ok}");
    assert_eq!(ok["state"]["terminated"]["reason"], "Completed", "{ok}");
    let fails = container_status(&pod, "fails");
    assert_eq!(fails["state"]["terminated"]["exitCode"], 3, "{fails}");
    assert_eq!(fails["state"]["terminated"]["reason"], "Error", "{fails}");
    assert!(ok["containerID"].as_str().is_some_and(|id| id.len() > 20), "{ok}");

    let logs = cluster.kubectl(&["logs", "envpod", "-c", "ok"]);
    assert!(logs.contains("hello containerd from envpod as envpod"), "logs: {logs:?}");
    let stderr_logs = cluster.kubectl(&["logs", "envpod", "-c", "fails"]);
    assert_eq!(stderr_logs.trim(), "about to fail");

    // the scheduler's event names the node, as `kubectl describe` shows it
    let events = cluster.kubectl(&["get", "events", "--field-selector", "involvedObject.name=envpod,reason=Scheduled", "-o", "jsonpath={.items[*].message}"]);
    assert_eq!(events, format!("Successfully assigned default/envpod to {}", cluster.node_name));

    // the pod ran in a containerd sandbox, not as a host process
    let containers = cri::ctr(cluster.data_dir.path(), &["containers", "list"]);
    assert!(containers.contains("busybox"), "ctr containers list:\n{containers}");
    assert!(containers.contains("registry.local/pause:local"), "ctr containers list:\n{containers}");
}

#[test]
fn init_container_and_shared_empty_dir() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: shared}}
spec:
  restartPolicy: Never
  initContainers:
  - name: seed
    image: {BUSYBOX}
    command: ["sh", "-c", "echo seeded > /work/seed.txt"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  containers:
  - name: writer
    image: {BUSYBOX}
    command: ["sh", "-c", "cat /work/seed.txt > /work/message.txt; echo written >> /work/message.txt"]
    volumeMounts: [{{name: work, mountPath: /work}}]
  - name: reader
    image: {BUSYBOX}
    command: ["sh", "-c", "while [ ! -s /work/message.txt ] || ! grep -q written /work/message.txt; do sleep 0.2; done; cat /work/message.txt; touch /ro/x 2>/dev/null && echo writable || echo read-only"]
    volumeMounts: [{{name: work, mountPath: /work}}, {{name: work, mountPath: /ro, readOnly: true}}]
  volumes:
  - {{name: work, emptyDir: {{}}}}
"#
    ));

    let pod = wait_phase(&cluster, "shared", "Succeeded");
    let init = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(init["state"]["terminated"]["exitCode"], 0, "{init}");
    let logs = cluster.kubectl(&["logs", "shared", "-c", "reader"]);
    assert_eq!(logs.lines().collect::<Vec<_>>(), ["seeded", "written", "read-only"], "reader logs: {logs:?}");
}

#[test]
fn httpd_pods_own_ips_and_traffic() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: httpd}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: httpd}}}}
  template:
    metadata: {{labels: {{app: httpd}}}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#
    ));
    cluster.wait_until("3 ready httpd pods", Duration::from_secs(90), || {
        let pods = cluster.pods("app=httpd");
        pods.len() == 3 && pods.iter().all(pod_ready)
    });

    let pods = cluster.pods("app=httpd");
    let mut addresses = Vec::new();
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let ip = pod["status"]["podIP"].as_str().expect("a running pod has an IP").to_string();
        let body = http_get(&ip, 8080, "/").unwrap_or_default();
        assert_eq!(body.trim(), format!("served by {name}"), "pod {name} at {ip}");
        addresses.push(ip);
    }
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 3, "each replica needs its own IP: {addresses:?}");

    // a client pod fetches every replica's page over the pod network; nc sends the
    // request because Debian's static busybox wget crashed (SIGSEGV) in this image
    let targets = addresses.join(" ");
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: {BUSYBOX}
    command: ["sh", "-c", "for ip in {targets}; do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip 8080 || exit 1; done"]
"#
    ));
    let client = wait_phase(&cluster, "client", "Succeeded");
    assert_eq!(container_status(&client, "client")["state"]["terminated"]["exitCode"], 0);
    let fetched = cluster.kubectl(&["logs", "client"]);
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        assert!(fetched.contains(&format!("served by {name}")), "client fetched:\n{fetched}");
    }
}

#[test]
fn memory_limit_kills_and_cpu_limit_sets_quota() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {BUSYBOX}
    command: ["sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us; x=0123456789abcdef; while true; do x=$x$x; done"]
    resources:
      limits: {{memory: 32Mi, cpu: 250m}}
"#
    ));

    let pod = wait_phase(&cluster, "hog", "Failed");
    let terminated = &container_status(&pod, "hog")["state"]["terminated"];
    assert_eq!(terminated["reason"], "OOMKilled", "{terminated}");
    assert_eq!(terminated["exitCode"], 137, "{terminated}");
    let quota = cluster.kubectl(&["logs", "hog"]);
    let quota = quota.lines().next().unwrap_or_default().trim();
    // cgroup v2 prints "25000 100000"; v1 prints the quota in microseconds per 100 ms
    assert!(quota == "25000" || quota == "25000 100000", "CPU quota seen in the container: {quota:?}");
}

#[test]
fn missing_image_recovers_after_image_load() {
    let Some(cluster) = cri_cluster() else { return };
    let image = "127.0.0.1:5/capstan-test/busybox:unlisted";
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: late}}
spec:
  containers:
  - name: app
    image: {image}
    command: ["sh", "-c", "echo finally running; sleep 3600"]
"#
    ));

    let mut message = String::new();
    cluster.wait_until("ErrImagePull or ImagePullBackOff", Duration::from_secs(60), || {
        let pod = pod(&cluster, "late");
        let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        message = waiting["message"].as_str().unwrap_or_default().to_string();
        matches!(waiting["reason"].as_str(), Some("ErrImagePull" | "ImagePullBackOff"))
    });
    assert!(message.contains(image), "waiting message: {message}");
    assert!(message.contains("failed to pull"), "the runtime's message is shown: {message}");

    let output = Command::new(capstan_binary())
        .args(["image", "load", "-i"])
        .arg(cri::unlisted_image_archive())
        .arg("--data-dir")
        .arg(cluster.data_dir.path())
        .output()
        .expect("run capstan image load");
    assert!(output.status.success(), "image load failed: {}", String::from_utf8_lossy(&output.stderr));

    cluster.wait_until("pod running after image load", Duration::from_secs(60), || pod_ready(&pod(&cluster, "late")));
    let logs = cluster.kubectl(&["logs", "late"]);
    assert_eq!(logs.trim(), "finally running");
}

#[test]
fn image_load_rejects_missing_archive() {
    let Some(cluster) = cri_cluster() else { return };
    let missing = cluster.data_dir.path().join("no-such-image.tar");
    let output = Command::new(capstan_binary())
        .args(["image", "load", "-i"])
        .arg(&missing)
        .arg("--data-dir")
        .arg(cluster.data_dir.path())
        .output()
        .expect("run capstan image load");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not found"), "stderr: {stderr}");
    assert!(stderr.contains("no-such-image.tar"), "stderr: {stderr}");
}

#[test]
fn restarted_up_keeps_healthy_containers() {
    let Some(mut cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: steady}}
spec:
  containers:
  - name: app
    image: {BUSYBOX}
    command: ["sh", "-c", "echo up; exec sleep 3600"]
"#
    ));
    cluster.wait_until("steady ready", Duration::from_secs(60), || pod_ready(&pod(&cluster, "steady")));
    let before = container_status(&pod(&cluster, "steady"), "app").clone();
    let id = before["containerID"].as_str().expect("container id").to_string();

    // a clean stop leaves the containers to their shims; the next up adopts them
    cluster.stop();
    cluster.restart();
    cluster.wait_until("steady ready again", Duration::from_secs(60), || pod_ready(&pod(&cluster, "steady")));
    let after = container_status(&pod(&cluster, "steady"), "app").clone();
    assert_eq!(after["containerID"].as_str(), Some(id.as_str()), "after stop: {after}");
    assert_eq!(after["restartCount"], 0, "{after}");

    // a crash leaves containerd running too; the next up adopts it
    cluster.kill();
    cluster.restart();
    std::thread::sleep(Duration::from_secs(3));
    cluster.wait_until("steady ready after a crash", Duration::from_secs(60), || pod_ready(&pod(&cluster, "steady")));
    let after_crash = container_status(&pod(&cluster, "steady"), "app").clone();
    assert_eq!(after_crash["containerID"].as_str(), Some(id.as_str()), "after kill: {after_crash}");
    assert_eq!(after_crash["restartCount"], 0, "{after_crash}");
    assert_eq!(cluster.kubectl(&["logs", "steady"]).trim(), "up");
}

#[test]
fn node_offers_both_runtime_classes() {
    let Some(cluster) = cri_cluster() else { return };
    let classes = cluster.kubectl(&["get", "runtimeclass", "-o", "name"]);
    assert!(classes.contains("runtimeclass.node.k8s.io/cri"), "{classes}");
    assert!(classes.contains("runtimeclass.node.k8s.io/process"), "{classes}");
    let node = cluster.get_json(&["get", "node", &cluster.node_name]).expect("node");
    assert_eq!(node["metadata"]["labels"]["runtime.capstan.io/cri"], "true");
    assert_eq!(node["metadata"]["labels"]["runtime.capstan.io/process"], "true");
    // the default runtime, containerd, names itself and its version
    let runtime = node["status"]["nodeInfo"]["containerRuntimeVersion"].as_str().unwrap_or_default();
    assert!(runtime.starts_with("containerd://1."), "containerRuntimeVersion {runtime:?}");

    // a host-command pod still runs on the process runtime by naming it
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hostcmd}
spec:
  runtimeClassName: process
  restartPolicy: Never
  containers:
  - name: app
    image: host
    command: ["sh", "-c", "echo on the host"]
"#,
    );
    wait_phase(&cluster, "hostcmd", "Succeeded");
    assert_eq!(cluster.kubectl(&["logs", "hostcmd"]).trim(), "on the host");

    // and the host image has no meaning for CRI, so the default runtime rejects it
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: unknown-runtime}}
spec:
  runtimeClassName: gvisor
  containers:
  - name: app
    image: {BUSYBOX}
"#
    ));
    cluster.wait_until("unschedulable pod", Duration::from_secs(30), || {
        let pod = pod(&cluster, "unknown-runtime");
        let conditions = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
    });
}

#[test]
fn busybox_job_completes_with_log() {
    let Some(cluster) = cri_cluster() else { return };
    // The shape of the Job examples in the Kubernetes documentation, with the plain
    // `busybox` image name that the loaded archive is also tagged with.
    cluster.apply(
        r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: say-done
spec:
  backoffLimit: 4
  template:
    spec:
      containers:
      - name: say-done
        image: busybox
        command: ["sh", "-c", "echo done"]
      restartPolicy: Never
"#,
    );

    let waited = cluster.try_kubectl(&["wait", "--for=condition=complete", "job/say-done", "--timeout=90s"]);
    assert!(waited.is_ok(), "kubectl wait failed: {waited:?}\n{}", cluster.log());
    let job = cluster.get_json(&["get", "job", "say-done"]).unwrap();
    assert_eq!(job["status"]["succeeded"], 1, "status: {}", job["status"]);
    let pods = cluster.pods("batch.kubernetes.io/job-name=say-done");
    assert_eq!(pods.len(), 1, "pods: {pods:?}");
    let pod = &pods[0];
    assert_eq!(pod["status"]["phase"], "Succeeded");
    let status = container_status(pod, "say-done");
    assert_eq!(status["state"]["terminated"]["exitCode"], 0, "{status}");
    assert!(status["containerID"].as_str().is_some_and(|id| id.len() > 20), "{status}");
    assert_eq!(cluster.kubectl(&["logs", "job/say-done"]), "done\n");
}

#[test]
fn exec_into_httpd_returns_output_and_code() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  containers:
  - name: httpd
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#
    ));
    cluster.wait_until("web ready", Duration::from_secs(90), || pod_ready(&pod(&cluster, "web")));

    // The remote command's stdout arrives, and its exit code becomes kubectl's.
    let output = cluster
        .kubectl_command(&["exec", "web", "--", "sh", "-c", "echo out; exit 3"])
        .output()
        .expect("run kubectl exec");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "out\n");
    assert_eq!(output.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&output.stderr));

    // The command runs inside the container: it sees the file the container wrote, which
    // the host does not have, and the container's httpd process.
    let inside = cluster.kubectl(&["exec", "web", "--", "cat", "/www/index.html"]);
    assert_eq!(inside, "hello\n");
    let httpd = cluster.kubectl(&["exec", "web", "-c", "httpd", "--", "pidof", "httpd"]);
    assert!(httpd.trim().parse::<u32>().is_ok(), "pidof httpd: {httpd:?}");

    // piped input reaches the command, and its end is the command's EOF
    let counted = cluster.kubectl_stdin(&["exec", "-i", "web", "--", "wc", "-l"], "one\ntwo\nthree\n");
    assert_eq!(counted.expect("kubectl exec -i").trim(), "3");
}

/// `kubectl cp` rides on exec with tar: a file copied into the container is served by its
/// httpd, and a file copied out contains what the container wrote.
#[test]
fn kubectl_cp_copies_files_both_ways() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: files}}
spec:
  containers:
  - name: httpd
    image: {BUSYBOX}
    command: ["sh", "-c", "mkdir -p /www && echo written inside > /www/inside.txt && exec httpd -f -p 8080 -h /www"]
"#
    ));
    cluster.wait_until("files ready", Duration::from_secs(90), || pod_ready(&pod(&cluster, "files")));
    let local = tempfile::tempdir().expect("temp dir");

    let upload = local.path().join("upload.txt");
    let content = format!("copied in at {:?}\n", std::time::SystemTime::now());
    std::fs::write(&upload, &content).expect("write upload");
    let destination = "files:/www/upload.txt";
    cluster.kubectl(&["cp", upload.to_str().expect("utf-8 path"), destination]);
    let inside = cluster.kubectl(&["exec", "files", "--", "cat", "/www/upload.txt"]);
    assert_eq!(inside, content);
    let ip = pod(&cluster, "files")["status"]["podIP"].as_str().expect("pod IP").to_string();
    let served = http_get(&ip, 8080, "/upload.txt").expect("GET the copied file");
    assert!(served.ends_with(&content), "httpd answered: {served:?}");

    let download = local.path().join("inside.txt");
    cluster.kubectl(&["cp", "files:/www/inside.txt", download.to_str().expect("utf-8 path")]);
    assert_eq!(std::fs::read_to_string(&download).expect("read the copied file"), "written inside\n");
}

/// `kubectl run -i --rm` attaches to the new container's own standard input and output
/// through containerd's streaming server: the container reads the line kubectl sends and
/// its reply comes back, then kubectl deletes the pod.
#[test]
fn run_interactive_attaches_to_container_stdin() {
    let Some(cluster) = cri_cluster() else { return };
    let mut child = cluster
        .kubectl_command(&[
            "run", "talk", &format!("--image={BUSYBOX}"), "--restart=Never", "-i", "--rm",
            "--pod-running-timeout=90s", "--", "sh", "-c", "read line; echo \"got $line\"; echo done >&2",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kubectl run");
    // the pod waits for its line, so the attach happens before the container can exit
    cluster.wait_until("talk running", Duration::from_secs(90), || {
        pod(&cluster, "talk")["status"]["phase"] == "Running"
    });
    let mut stdin = child.stdin.take().expect("stdin pipe");
    std::io::Write::write_all(&mut stdin, b"hello capstan\n").expect("send the line");
    drop(stdin);
    let output = child.wait_with_output().expect("wait for kubectl run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl run failed: {stdout}{stderr}");
    assert!(stdout.contains("got hello capstan"), "stdout: {stdout:?} stderr: {stderr:?}");
    // the container's stderr arrives on kubectl's stderr, not in its stdout
    assert!(!stdout.contains("done"), "stdout: {stdout:?}");
    cluster.wait_until("talk deleted by --rm", Duration::from_secs(60), || {
        cluster.try_kubectl(&["get", "pod", "talk"]).is_err()
    });
}

/// Services reach CRI pods too: the ClusterIP from the node balances over the replicas,
/// and a busybox pod resolves the Service's name through the cluster DNS in its
/// resolv.conf and reaches every replica through the ClusterIP.
#[test]
fn service_reaches_cri_pods_by_cluster_ip_and_name() {
    let Some(cluster) = cri_cluster() else { return };
    cluster.apply(&format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: httpd
        image: {BUSYBOX}
        command: ["sh", "-c", "mkdir -p /www && echo served by $(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
        ports: [{{name: http, containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: echo}}
spec:
  selector: {{app: echo}}
  ports: [{{port: 80, targetPort: http}}]
"#
    ));
    cluster.wait_until("3 ready echo pods", Duration::from_secs(90), || {
        let pods = cluster.pods("app=echo");
        pods.len() == 3 && pods.iter().all(pod_ready)
    });
    let names: Vec<String> =
        cluster.pods("app=echo").iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)).collect();
    let service = cluster.get_json(&["get", "service", "echo"]).unwrap();
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    cluster.wait_until("every replica behind the ClusterIP", Duration::from_secs(60), || {
        let bodies: Vec<String> = (0..30).filter_map(|_| http_get(&cluster_ip, 80, "/")).collect();
        names.iter().all(|name| bodies.iter().any(|body| body.trim() == format!("served by {name}")))
    });

    cluster.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: dns-client}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: {BUSYBOX}
    command: ["sh", "-c", "cat /etc/resolv.conf; nslookup echo.default.svc.cluster.local || exit 1; for i in $(seq 30); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {cluster_ip} 80 || exit 2; done"]
"#
    ));
    cluster.wait_until("dns-client finished", Duration::from_secs(90), || {
        matches!(pod(&cluster, "dns-client")["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
    });
    let log = cluster.kubectl(&["logs", "dns-client"]);
    let client = pod(&cluster, "dns-client");
    assert_eq!(client["status"]["phase"], "Succeeded", "dns-client log:\n{log}\nstatus: {}", client["status"]);
    assert!(log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "resolv.conf:\n{log}");
    assert!(log.contains(&cluster_ip), "nslookup did not answer the ClusterIP {cluster_ip}:\n{log}");
    for name in &names {
        assert!(log.contains(&format!("served by {name}")), "replica {name} never answered the pod:\n{log}");
    }
}
