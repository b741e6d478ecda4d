//! Services as kubectl users meet them. EndpointSlices and Endpoints follow the pods, and
//! ClusterIPs and NodePorts survive restarts and are freed on delete. Invalid input is
//! rejected with the field path, `get svc` prints the usual table, and pods get the
//! Service variables in their environment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, pod_ready};
use serde_json::Value;

const SERVICES: &str = "/api/v1/namespaces/default/services";
/// The managed-by value the endpoints controller puts on its slices.
const SLICE_CONTROLLER: &str = "endpointslice-controller.capstan.io";

/// Creates a scratch directory on the host, shared with the process-runtime pods.
fn scratch_dir(name: &str) -> std::path::PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("capstan-e2e-{name}-{}-{}", std::process::id(), nanos % 1_000_000_007));
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Returns a Deployment of HTTP servers on the container port named `http` (8080). Each
/// pod is ready while the file `<dir>/<pod name>/ready` exists.
fn echo_deployment(dir: &std::path::Path, replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: echo}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: echo}}}}
  template:
    metadata: {{labels: {{app: echo}}}}
    spec:
      containers:
      - name: web
        image: host
        command: [sh, -c, 'root={dir}/$POD_NAME; mkdir -p "$root" && cd "$root" && echo ok > ready && exec python3 -m http.server 8080']
        env: [{{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1, failureThreshold: 1}}
"#,
        dir = dir.display()
    )
}

const ECHO_SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo, labels: {tier: front}}
spec:
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-headless}
spec:
  clusterIP: None
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-missing}
spec:
  selector: {app: echo}
  ports: [{name: web, port: 80, targetPort: nosuch}]
---
apiVersion: v1
kind: Service
metadata: {name: manual}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: manual}
subsets: [{addresses: [{ip: 192.0.2.10}], ports: [{port: 5432}]}]
"#;

/// One endpoint of a slice: address, ready, serving, terminating.
type SliceEndpoint = (String, bool, bool, bool);

/// Lists the slices the endpoints controller manages for `service`.
fn managed_slices(cluster: &Cluster, service: &str) -> Vec<Value> {
    let selector = format!("kubernetes.io/service-name={service}");
    let Ok(list) = cluster.get_json(&["get", "endpointslices", "-l", &selector]) else { return Vec::new() };
    let items = list["items"].as_array().cloned().unwrap_or_default();
    items
        .into_iter()
        .filter(|slice| slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == SLICE_CONTROLLER)
        .collect()
}

fn slice_endpoints(cluster: &Cluster, service: &str) -> Vec<SliceEndpoint> {
    let mut endpoints: Vec<SliceEndpoint> = managed_slices(cluster, service)
        .iter()
        .flat_map(|slice| slice["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            let condition = |name: &str| e["conditions"][name].as_bool().unwrap_or(false);
            let address = e["addresses"][0].as_str().unwrap_or_default().to_string();
            (address, condition("ready"), condition("serving"), condition("terminating"))
        })
        .collect();
    endpoints.sort();
    endpoints
}

/// Ready and not-ready addresses of the legacy Endpoints, and the port numbers listed.
fn legacy_endpoints(cluster: &Cluster, name: &str) -> (Vec<String>, Vec<String>, BTreeSet<i64>) {
    let Ok(endpoints) = cluster.get_json(&["get", "endpoints", name]) else { return Default::default() };
    let (mut ready, mut not_ready, mut ports) = (Vec::new(), Vec::new(), BTreeSet::new());
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let ips = |list: &str| -> Vec<String> {
            subset[list].as_array().into_iter().flatten().filter_map(|a| a["ip"].as_str().map(str::to_string)).collect()
        };
        ready.extend(ips("addresses"));
        not_ready.extend(ips("notReadyAddresses"));
        ports.extend(subset["ports"].as_array().into_iter().flatten().filter_map(|p| p["port"].as_i64()));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready, ports)
}

fn pod_ips(cluster: &Cluster) -> BTreeMap<String, String> {
    cluster
        .pods("app=echo")
        .iter()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|pod| Some((pod["metadata"]["name"].as_str()?.to_string(), pod["status"]["podIP"].as_str()?.to_string())))
        .collect()
}

#[test]
fn endpoints_follow_deployment() {
    let cluster = Cluster::start(ClusterOptions::default());
    let dir = scratch_dir("echo");
    cluster.apply(&echo_deployment(&dir, 3));
    cluster.apply(ECHO_SERVICES);
    cluster.wait_until("3 ready echo pods", Duration::from_secs(60), || {
        let pods = cluster.pods("app=echo");
        pods.len() == 3 && pods.iter().all(pod_ready)
    });
    let ips = pod_ips(&cluster);
    let mut all_ready: Vec<SliceEndpoint> = ips.values().map(|ip| (ip.clone(), true, true, false)).collect();
    all_ready.sort();

    // The slice lists the three pods on the port that the named targetPort resolves to.
    cluster.wait_until("slice lists 3 ready pods", Duration::from_secs(15), || slice_endpoints(&cluster, "echo") == all_ready);
    let slices = managed_slices(&cluster, "echo");
    assert_eq!(slices.len(), 1, "one slice for one port set: {slices:?}");
    let slice = &slices[0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"], serde_json::json!([{"name": "web", "port": 8080, "protocol": "TCP"}]));
    assert_eq!(slice["metadata"]["labels"]["tier"], "front", "service labels are copied");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
    assert_eq!(slice["metadata"]["ownerReferences"][0]["name"], "echo");
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["nodeName"], cluster.node_name.as_str());
    assert_eq!(endpoint["targetRef"]["kind"], "Pod");
    assert!(ips.contains_key(endpoint["targetRef"]["name"].as_str().unwrap_or_default()), "targetRef names a pod: {endpoint}");

    let ready_ips: Vec<String> = all_ready.iter().map(|e| e.0.clone()).collect();
    cluster.wait_until("Endpoints list 3 ready pods", Duration::from_secs(15), || {
        legacy_endpoints(&cluster, "echo") == (ready_ips.clone(), Vec::new(), BTreeSet::from([8080]))
    });

    // kubectl shows both with the usual columns.
    let table = cluster.kubectl(&["get", "endpoints", "echo"]);
    assert!(table.starts_with("NAME"), "get endpoints printed:\n{table}");
    assert!(table.contains("ENDPOINTS"), "get endpoints printed:\n{table}");
    for ip in &ready_ips {
        assert!(table.contains(&format!("{ip}:8080")), "get endpoints lacks {ip}:8080:\n{table}");
    }
    let table = cluster.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=echo"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"], "get endpointslices printed:\n{table}");
    assert!(table.contains("IPv4"), "get endpointslices printed:\n{table}");
    assert!(table.contains("8080"), "get endpointslices printed:\n{table}");

    // A headless Service gets slices too; a port no pod names leaves the pods port-less.
    cluster.wait_until("headless slice lists 3 pods", Duration::from_secs(15), || slice_endpoints(&cluster, "echo-headless") == all_ready);
    let headless = managed_slices(&cluster, "echo-headless");
    assert_eq!(headless[0]["metadata"]["labels"]["service.kubernetes.io/headless"], "");
    cluster.wait_until("port-less slice lists 3 pods", Duration::from_secs(15), || slice_endpoints(&cluster, "echo-missing") == all_ready);
    let missing = managed_slices(&cluster, "echo-missing");
    assert!(missing[0]["ports"].as_array().is_none_or(Vec::is_empty), "no pod has the port: {}", missing[0]);
    assert_eq!(legacy_endpoints(&cluster, "echo-missing"), Default::default(), "Endpoints leave such pods out");

    // The Service without a selector keeps the user's Endpoints and gets no slice.
    assert_eq!(legacy_endpoints(&cluster, "manual"), (vec!["192.0.2.10".to_string()], Vec::new(), BTreeSet::from([5432])));
    assert!(managed_slices(&cluster, "manual").is_empty(), "selector-less service got a slice");

    // A pod failing readiness moves to not-ready in both.
    let (failing, failing_ip) = ips.iter().next().map(|(n, ip)| (n.clone(), ip.clone())).expect("a pod");
    std::fs::remove_file(dir.join(&failing).join("ready")).expect("remove the readiness file");
    cluster.wait_until("endpoint not ready", Duration::from_secs(15), || {
        slice_endpoints(&cluster, "echo").iter().any(|e| *e == (failing_ip.clone(), false, false, false))
    });
    cluster.wait_until("Endpoints list the pod as not ready", Duration::from_secs(15), || {
        legacy_endpoints(&cluster, "echo").1 == vec![failing_ip.clone()]
    });
    let (ready, _, _) = legacy_endpoints(&cluster, "echo");
    assert_eq!(ready.len(), 2, "the other pods stay ready: {ready:?}");

    // Scaled to one, the slice follows within seconds.
    cluster.kubectl(&["scale", "deployment", "echo", "--replicas=1"]);
    cluster.wait_until("slice lists 1 pod", Duration::from_secs(20), || {
        let remaining = pod_ips(&cluster);
        let endpoints = slice_endpoints(&cluster, "echo");
        remaining.len() == 1 && endpoints.len() == 1 && remaining.values().next() == Some(&endpoints[0].0)
    });
    cluster.wait_until("Endpoints list 1 pod", Duration::from_secs(15), || {
        let (ready, not_ready, _) = legacy_endpoints(&cluster, "echo");
        ready.len() + not_ready.len() == 1
    });

    // Deleting the Service removes its slices and Endpoints, but not the user's.
    cluster.kubectl(&["delete", "service", "echo"]);
    cluster.wait_until("slices and Endpoints of echo gone", Duration::from_secs(20), || {
        managed_slices(&cluster, "echo").is_empty() && cluster.try_kubectl(&["get", "endpoints", "echo"]).is_err()
    });
    assert!(cluster.try_kubectl(&["get", "endpoints", "manual"]).is_ok(), "user-written Endpoints were deleted");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Returns `name → (clusterIP, nodePorts)` of every Service in the default namespace.
fn allocations(cluster: &Cluster) -> BTreeMap<String, (String, Vec<i64>)> {
    let list = cluster.get_json(&["get", "services"]).expect("list services");
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|service| {
            let name = service["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let ip = service["spec"]["clusterIP"].as_str().unwrap_or_default().to_string();
            let ports = service["spec"]["ports"].as_array().into_iter().flatten().filter_map(|p| p["nodePort"].as_i64()).collect();
            (name, (ip, ports))
        })
        .collect()
}

fn assert_distinct(allocations: &BTreeMap<String, (String, Vec<i64>)>) {
    let ips: BTreeSet<&String> = allocations.values().map(|(ip, _)| ip).collect();
    assert_eq!(ips.len(), allocations.len(), "duplicate ClusterIPs: {allocations:?}");
    let ports: Vec<i64> = allocations.values().flat_map(|(_, ports)| ports.clone()).collect();
    let distinct: BTreeSet<i64> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "duplicate NodePorts: {allocations:?}");
}

fn service_manifest(name: &str, spec: &str) -> String {
    format!(r#"{{"apiVersion":"v1","kind":"Service","metadata":{{"name":"{name}"}},"spec":{spec}}}"#)
}

#[test]
fn allocations_survive_restart_and_free_on_delete() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    let manifests: Vec<String> = (0..24)
        .map(|i| {
            let kind = if i % 3 == 0 { "NodePort" } else { "ClusterIP" };
            format!("apiVersion: v1\nkind: Service\nmetadata: {{name: many-{i}}}\nspec:\n  type: {kind}\n  selector: {{app: many-{i}}}\n  ports: [{{port: 80}}]\n")
        })
        .collect();
    cluster.apply(&manifests.join("---\n"));
    let before = allocations(&cluster);
    assert_eq!(before.len(), 25, "24 services and kubernetes: {before:?}");
    assert_eq!(before["kubernetes"].0, cluster.service_ip(1));
    assert_eq!(before.values().filter(|(_, ports)| !ports.is_empty()).count(), 8);
    assert_distinct(&before);

    // A restart keeps every address, and new Services avoid the old ones.
    cluster.stop();
    cluster.restart();
    assert_eq!(allocations(&cluster), before, "allocations changed across the restart");
    let more: Vec<String> = (0..6)
        .map(|i| format!("apiVersion: v1\nkind: Service\nmetadata: {{name: more-{i}}}\nspec:\n  type: NodePort\n  ports: [{{port: 80}}]\n"))
        .collect();
    cluster.apply(&more.join("---\n"));
    let after = allocations(&cluster);
    assert_eq!(after.len(), 31);
    assert_distinct(&after);

    // A taken address is refused; once its Service is deleted it can be asked for again.
    let (taken_ip, taken_ports) = after["many-3"].clone();
    let spec = format!(r#"{{"type":"NodePort","clusterIP":"{taken_ip}","ports":[{{"port":80,"nodePort":{}}}]}}"#, taken_ports[0]);
    let (code, body) = cluster.request("POST", SERVICES, "application/json", &service_manifest("reuse", &spec));
    assert_eq!(code, 422, "taken ClusterIP accepted: {body}");
    assert!(body.contains("spec.clusterIPs[0]"), "{body}");
    assert!(body.contains("already allocated"), "{body}");
    cluster.kubectl(&["delete", "service", "many-3"]);
    let (code, body) = cluster.request("POST", SERVICES, "application/json", &service_manifest("reuse", &spec));
    assert_eq!(code, 201, "freed ClusterIP and NodePort refused: {body}");
    let reused = allocations(&cluster);
    assert_eq!(reused["reuse"], (taken_ip, taken_ports));
}

/// Posts an invalid Service and checks the 422 Status names `field`.
fn assert_invalid(cluster: &Cluster, name: &str, spec: &str, field: &str) {
    let (code, body) = cluster.request("POST", SERVICES, "application/json", &service_manifest(name, spec));
    assert_eq!(code, 422, "{name} was not rejected: {body}");
    let status: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: body is not JSON ({e}): {body}"));
    assert_eq!(status["kind"], "Status", "{body}");
    assert_eq!(status["reason"], "Invalid", "{body}");
    assert_eq!(status["details"]["kind"], "Service", "{body}");
    let fields: Vec<&str> = status["details"]["causes"].as_array().into_iter().flatten().filter_map(|c| c["field"].as_str()).collect();
    assert!(fields.contains(&field), "{name}: causes {fields:?} lack {field}: {body}");
    assert!(cluster.try_kubectl(&["get", "service", name]).is_err(), "{name} was stored");
}

#[test]
fn bad_services_are_rejected_without_leaks() {
    let cluster = Cluster::start(ClusterOptions::default());
    let (code, body) = cluster.request("POST", SERVICES, "application/json", &service_manifest(
        "holder",
        r#"{"type":"NodePort","ports":[{"port":80,"nodePort":31000}]}"#,
    ));
    assert_eq!(code, 201, "{body}");

    assert_invalid(&cluster, "dup-ports", r#"{"ports":[{"name":"a","port":80},{"name":"b","port":80}]}"#, "spec.ports[1]");
    assert_invalid(&cluster, "big-port", r#"{"ports":[{"port":70000}]}"#, "spec.ports[0].port");
    assert_invalid(&cluster, "1web", r#"{"ports":[{"port":80}]}"#, "metadata.name");
    assert_invalid(&cluster, "far-ip", r#"{"clusterIP":"192.168.7.7","ports":[{"port":80}]}"#, "spec.clusterIPs[0]");
    // Each of these requests a free ClusterIP that must be released when the port fails.
    assert_invalid(
        &cluster,
        "port-in-use",
        &format!(r#"{{"type":"NodePort","clusterIP":"{}","ports":[{{"port":80,"nodePort":31000}}]}}"#, cluster.service_ip(77)),
        "spec.ports[0].nodePort",
    );
    assert_invalid(
        &cluster,
        "port-outside",
        &format!(r#"{{"type":"NodePort","clusterIP":"{}","ports":[{{"port":80,"nodePort":20000}}]}}"#, cluster.service_ip(78)),
        "spec.ports[0].nodePort",
    );
    assert_invalid(
        &cluster,
        "second-port-taken",
        &format!(
            r#"{{"type":"NodePort","clusterIP":"{}","ports":[{{"name":"a","port":80,"nodePort":31001}},{{"name":"b","port":81,"nodePort":31000}}]}}"#,
            cluster.service_ip(79)
        ),
        "spec.ports[1].nodePort",
    );

    // Nothing leaked: the addresses and ports of the rejected requests are free.
    for (name, host, port) in [("after-1", 77, 31001), ("after-2", 78, 31002), ("after-3", 79, 31003)] {
        let ip = cluster.service_ip(host);
        let spec = format!(r#"{{"type":"NodePort","clusterIP":"{ip}","ports":[{{"port":80,"nodePort":{port}}}]}}"#);
        let (code, body) = cluster.request("POST", SERVICES, "application/json", &service_manifest(name, &spec));
        assert_eq!(code, 201, "{ip}:{port} leaked by a rejected request: {body}");
    }

    // kubectl users see the field path too, and an update to a taken port keeps the old one.
    let rejected = cluster
        .kubectl_stdin(&["create", "-f", "-"], &service_manifest("2web", r#"{"ports":[{"port":80}]}"#))
        .expect_err("kubectl create accepted an invalid name");
    assert!(rejected.contains(r#"The Service "2web" is invalid"#), "{rejected}");
    assert!(rejected.contains("metadata.name"), "{rejected}");
    let patch = r#"{"spec":{"ports":[{"port":80,"nodePort":31000}]}}"#;
    let rejected = cluster.try_kubectl(&["patch", "service", "after-1", "--type=merge", "-p", patch]).expect_err("patch to a taken port");
    assert!(rejected.contains("spec.ports[0].nodePort"), "{rejected}");
    assert!(rejected.contains("already allocated"), "{rejected}");
    assert_eq!(allocations(&cluster)["after-1"].1, vec![31001], "the failed update changed the port");
}

#[test]
fn get_svc_shows_kubectl_columns() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  type: NodePort
  selector: {app: front}
  ports: [{name: http, port: 80, nodePort: 31234}, {name: admin, port: 9000, protocol: UDP}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: search}
spec:
  type: ExternalName
  externalName: search.example.com
"#,
    );
    let table = cluster.kubectl(&["get", "svc"]);
    let rows: BTreeMap<&str, Vec<&str>> = table
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter_map(|cells| Some((*cells.first()?, cells)))
        .collect();
    assert_eq!(rows["NAME"], ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{table}");
    let front = &rows["front"];
    assert_eq!(front[1], "NodePort", "{table}");
    let network = cluster.service_ip(0);
    let range_prefix = network.strip_suffix('0').unwrap_or(&network);
    assert!(front[2].starts_with(range_prefix), "{table}");
    assert_eq!(front[3], "<none>", "{table}");
    let admin_port = allocations(&cluster)["front"].1[1];
    assert_eq!(front[4], format!("80:31234/TCP,9000:{admin_port}/UDP"), "{table}");
    assert_eq!(rows["db"][1..5], ["ClusterIP", "None", "<none>", "5432/TCP"], "{table}");
    assert_eq!(rows["search"][1..5], ["ExternalName", "<none>", "search.example.com", "<none>"], "{table}");
    let kubernetes_ip = cluster.service_ip(1);
    assert_eq!(rows["kubernetes"][1..5], ["ClusterIP", kubernetes_ip.as_str(), "<none>", "443/TCP"], "{table}");
}

#[test]
fn pods_see_service_variables() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(
        r#"
apiVersion: v1
kind: Service
metadata: {name: redis-primary}
spec:
  selector: {app: redis}
  ports: [{name: redis, port: 6379}, {name: metrics, port: 9121}]
"#,
    );
    let ip = allocations(&cluster)["redis-primary"].0.clone();
    let pod = |name: &str, links: bool| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  enableServiceLinks: {links}\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: host\n    command: [sh, -c, 'env | sort']\n"
        )
    };
    cluster.apply(&pod("env-linked", true));
    cluster.apply(&pod("env-unlinked", false));
    for name in ["env-linked", "env-unlinked"] {
        cluster.wait_until("pod finished", Duration::from_secs(30), || {
            cluster.get_json(&["get", "pod", name]).is_ok_and(|p| p["status"]["phase"] == "Succeeded")
        });
    }

    let logs = cluster.kubectl(&["logs", "env-linked"]);
    let variables: BTreeMap<&str, &str> = logs.lines().filter_map(|line| line.split_once('=')).collect();
    let expected = [
        ("REDIS_PRIMARY_SERVICE_HOST", ip.clone()),
        ("REDIS_PRIMARY_SERVICE_PORT", "6379".to_string()),
        ("REDIS_PRIMARY_SERVICE_PORT_REDIS", "6379".to_string()),
        ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121".to_string()),
        ("REDIS_PRIMARY_PORT", format!("tcp://{ip}:6379")),
        ("REDIS_PRIMARY_PORT_6379_TCP", format!("tcp://{ip}:6379")),
        ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp".to_string()),
        ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379".to_string()),
        ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", ip.clone()),
        ("REDIS_PRIMARY_PORT_9121_TCP_ADDR", ip.clone()),
        ("KUBERNETES_SERVICE_HOST", cluster.service_ip(1)),
        ("KUBERNETES_SERVICE_PORT", "443".to_string()),
        ("KUBERNETES_SERVICE_PORT_HTTPS", "443".to_string()),
    ];
    for (name, value) in &expected {
        assert_eq!(variables.get(name), Some(&value.as_str()), "{name} in the pod's environment:\n{logs}");
    }

    let logs = cluster.kubectl(&["logs", "env-unlinked"]);
    let kubernetes_host = format!("KUBERNETES_SERVICE_HOST={}", cluster.service_ip(1));
    assert!(logs.contains(&kubernetes_host), "the kubernetes Service is always injected:\n{logs}");
    assert!(!logs.contains("REDIS_PRIMARY_"), "enableServiceLinks: false still injected links:\n{logs}");
}
