//! `kubectl exec`, `cp`, `attach` and `port-forward` against a real cluster: output on the
//! right streams, exit codes, stdin, container selection, a terminal, file copies both
//! ways, and TCP forwarded into the pod network.

use std::process::{Output, Stdio};
use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, http_get, pod_ready, read_until};

/// A pod with two long-running containers that tell themselves apart by `$WHO`.
const TWO_CONTAINERS: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: two
  labels:
    app: two
spec:
  containers:
  - name: main
    image: host
    command: ["sh", "-c", "while true; do echo tick; sleep 0.5; done"]
    env:
    - name: WHO
      value: main
  - name: side
    image: host
    command: ["sleep", "3600"]
    env:
    - name: WHO
      value: side
"#;

/// A pod that serves its name over HTTP on port 8080.
const WEB_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  containers:
  - name: web
    image: host
    command:
    - sh
    - -c
    - |
      cd "$(mktemp -d)"
      echo "hello from the web pod" > index.html
      exec python3 -m http.server 8080
    ports:
    - containerPort: 8080
    readinessProbe:
      tcpSocket:
        port: 8080
      periodSeconds: 1
"#;

fn start_pod(cluster: &Cluster, manifest: &str, selector: &str) {
    cluster.apply(manifest);
    cluster.wait_until("pod ready", Duration::from_secs(60), || {
        let pods = cluster.pods(selector);
        pods.len() == 1 && pods.iter().all(pod_ready)
    });
}

fn run(cluster: &Cluster, args: &[&str]) -> Output {
    cluster.kubectl_command(args).output().expect("run kubectl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_streams_exit_codes_and_containers() {
    let cluster = Cluster::start(ClusterOptions::default());
    start_pod(&cluster, TWO_CONTAINERS, "app=two");

    // stdout and stderr stay apart, and the exit code comes through
    let output = run(&cluster, &["exec", "two", "-c", "main", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(text(&output.stdout), "out\n", "stderr: {}", text(&output.stderr));
    assert!(text(&output.stderr).contains("err\n"), "stderr: {}", text(&output.stderr));
    assert_eq!(output.status.code(), Some(3), "stderr: {}", text(&output.stderr));

    // success exits with 0
    let output = run(&cluster, &["exec", "two", "-c", "main", "--", "true"]);
    assert_eq!(output.status.code(), Some(0), "stderr: {}", text(&output.stderr));

    // stdin reaches the command, and its end closes the command's input
    let piped = cluster.kubectl_stdin(&["exec", "-i", "two", "-c", "side", "--", "cat"], "hello\nworld\n");
    assert_eq!(piped.as_deref(), Ok("hello\nworld\n"));

    // -c picks the container; without it kubectl takes the first one
    let side = run(&cluster, &["exec", "two", "-c", "side", "--", "sh", "-c", "echo $WHO"]);
    assert_eq!(text(&side.stdout), "side\n", "stderr: {}", text(&side.stderr));
    let default = run(&cluster, &["exec", "two", "--", "sh", "-c", "echo $WHO"]);
    assert_eq!(text(&default.stdout), "main\n", "stderr: {}", text(&default.stderr));

    // a missing program is exit code 127 with a message, as with a container runtime
    let missing = run(&cluster, &["exec", "two", "-c", "main", "--", "no-such-program-xyz"]);
    assert_eq!(missing.status.code(), Some(127), "stderr: {}", text(&missing.stderr));
    assert!(text(&missing.stderr).contains("no-such-program-xyz"), "stderr: {}", text(&missing.stderr));
}

#[test]
fn exec_errors_name_the_cause() {
    let cluster = Cluster::start(ClusterOptions::default());
    start_pod(&cluster, TWO_CONTAINERS, "app=two");

    let missing_pod = run(&cluster, &["exec", "nope", "--", "true"]);
    assert!(!missing_pod.status.success());
    assert!(text(&missing_pod.stderr).contains("pods \"nope\" not found"), "stderr: {}", text(&missing_pod.stderr));

    let missing_container = run(&cluster, &["exec", "two", "-c", "bogus", "--", "true"]);
    assert!(!missing_container.status.success());
    assert!(
        text(&missing_container.stderr).contains("container bogus is not valid for pod two"),
        "stderr: {}",
        text(&missing_container.stderr)
    );

    // the API server returns a Status before the upgrade, here for a pod that is absent
    let (code, body) = cluster.request("POST", "/api/v1/namespaces/default/pods/nope/exec?command=true&stdout=true", "application/json", "");
    assert_eq!(code, 404, "body: {body}");
    let status: serde_json::Value = serde_json::from_str(&body).expect("Status JSON");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");

    // a request without an upgrade gets a clear 400
    let (code, body) = cluster.request("POST", "/api/v1/namespaces/default/pods/two/exec?command=true&stdout=true&container=main", "application/json", "");
    assert_eq!(code, 400, "body: {body}");
    assert!(body.contains("requires an HTTP/1.1 connection upgrade"), "body: {body}");
}

#[test]
fn cp_copies_files_both_ways() {
    let cluster = Cluster::start(ClusterOptions::default());
    start_pod(&cluster, TWO_CONTAINERS, "app=two");
    // the process runtime shares the host's filesystem, so the pod can read this directory
    let work = cluster.data_dir.path().join("cp");
    std::fs::create_dir_all(&work).expect("create the copy directory");
    let local = work.join("local.txt");
    let content = "copied into the pod\nsecond line\n";
    std::fs::write(&local, content).expect("write the local file");

    let remote = work.join("in-pod.txt");
    let target = format!("two:{}", remote.display());
    let local_arg = local.display().to_string();
    cluster.kubectl(&["cp", "-c", "side", &local_arg, &target]);
    let cat = run(&cluster, &["exec", "two", "-c", "side", "--", "cat", &remote.display().to_string()]);
    assert_eq!(text(&cat.stdout), content, "stderr: {}", text(&cat.stderr));

    let back = work.join("back.txt");
    let back_arg = back.display().to_string();
    cluster.kubectl(&["cp", "-c", "side", &target, &back_arg]);
    assert_eq!(std::fs::read_to_string(&back).expect("read the copied file"), content);
}

#[test]
fn terminal_and_attach() {
    let cluster = Cluster::start(ClusterOptions::default());
    start_pod(&cluster, TWO_CONTAINERS, "app=two");

    // `script` gives kubectl a terminal of 40 rows and 100 columns, so `-it` requests a pty
    // in the container and sends the terminal size on the resize channel
    let kubectl_line = format!(
        "stty rows 40 cols 100; {} --kubeconfig {} exec -it two -c side -- sh -c 'tty; sleep 1; stty size'",
        capstan_e2e::KUBECTL,
        cluster.kubeconfig.display()
    );
    let output = std::process::Command::new("script")
        .args(["-qec", &kubectl_line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script");
    let shown = text(&output.stdout);
    assert!(shown.contains("/dev/pts/"), "output: {shown}\nstderr: {}", text(&output.stderr));
    assert!(shown.contains("40 100"), "output: {shown}");

    // attach shows the container's output as it is written
    let mut attach = cluster
        .kubectl_command(&["attach", "two", "-c", "main"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kubectl attach");
    let lines = read_until(&mut attach, Duration::from_secs(20), |line| line == "tick");
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(lines.iter().any(|line| line == "tick"), "attach printed: {lines:?}\n{}", cluster.log());
}

#[test]
fn port_forward_reaches_the_pod() {
    let cluster = Cluster::start(ClusterOptions::default());
    start_pod(&cluster, WEB_POD, "app=web");
    let local_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("pick a free port")
        .port();

    // kubectl's output goes to a file, because a closed pipe would kill it with SIGPIPE
    // when it prints its next line
    let output_path = cluster.data_dir.path().join("port-forward.out");
    let output_file = std::fs::File::create(&output_path).expect("create the port-forward output file");
    let mapping = format!("{local_port}:8080");
    let mut forward = cluster
        .kubectl_command(&["port-forward", "pod/web", &mapping])
        .stdout(output_file)
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubectl port-forward");
    let listening = || std::fs::read_to_string(&output_path).unwrap_or_default().contains("Forwarding from 127.0.0.1");
    cluster.wait_until("kubectl port-forward listening", Duration::from_secs(20), listening);

    // two requests in a row, so the second uses a new stream pair on the same session
    for attempt in 0..2 {
        let body = http_get("127.0.0.1", local_port, "/index.html");
        assert_eq!(body.as_deref(), Some("hello from the web pod\n"), "request {attempt}\n{}", cluster.log());
    }
    let _ = forward.kill();
    let _ = forward.wait();
}
