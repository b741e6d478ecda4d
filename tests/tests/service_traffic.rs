//! Service traffic on one node: ClusterIP and NodePort load balancing through the proxy,
//! cluster DNS names from the host and from inside pods, headless Services, SRV records
//! and UDP.
//!
//! The Services here have no selector and the tests write their EndpointSlices with
//! kubectl, pointing at the pods of a real Deployment. That way each test controls which
//! endpoints are ready.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, http_get, pod_ready};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use serde_json::{Value, json};

const WEB: &str = include_str!("../../examples/web.yaml");

/// Prints the pod's resolv.conf, then fetches the web Service by its full name 300 times
/// and by its short name 3 times, one connection each, printing how often each body came.
const CLIENT_SCRIPT: &str = r#"
import collections, json, urllib.request
print(open('/etc/resolv.conf').read())
def fetch(url, count):
    counts = collections.Counter()
    for _ in range(count):
        with urllib.request.urlopen(url, timeout=5) as response:
            counts[response.read().decode().strip()] += 1
    return counts
print('BY-NAME ' + json.dumps(fetch('http://web.default.svc.cluster.local/', 300)))
print('SHORT ' + json.dumps(fetch('http://web/', 3)))
"#;

/// Serves "hello from <pod>" on 8080 and fetches the URL in argv[1] until it answers,
/// printing `HAIRPIN <body>`: the pod reaching itself through its Service.
const HAIRPIN_SCRIPT: &str = r#"
import functools, http.server, os, sys, threading, time, urllib.request
root = '/tmp/capstan-hairpin-' + os.environ['POD_NAME']
os.makedirs(root, exist_ok=True)
open(root + '/index.html', 'w').write('hello from ' + os.environ['POD_NAME'] + '\n')
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(('', 8080), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
for _ in range(240):
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            print('HAIRPIN ' + response.read().decode().strip(), flush=True)
            break
    except Exception:
        time.sleep(0.5)
time.sleep(100000)
"#;

/// Builds a process pod that runs `python3 -c script args…`, with its name in `POD_NAME`.
fn python_pod(name: &str, restart: &str, script: &str, args: &[&str]) -> String {
    let mut command = vec!["python3", "-c", script];
    command.extend(args);
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart,
            "containers": [{
                "name": "main", "image": "host", "command": command,
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "PYTHONUNBUFFERED", "value": "1"}]
            }]
        }
    })
    .to_string()
}

/// Waits for pod `name` to succeed and returns its log.
fn completed_log(cluster: &Cluster, name: &str) -> String {
    cluster.wait_until(&format!("pod {name} completed"), Duration::from_secs(120), || {
        let phase = cluster.get_json(&["get", "pod", name]).map(|pod| pod["status"]["phase"].clone());
        match phase.as_ref().ok().and_then(Value::as_str) {
            Some("Failed") => panic!("pod {name} failed:\n{}", cluster.try_kubectl(&["logs", name]).unwrap_or_default()),
            Some("Succeeded") => true,
            _ => false,
        }
    });
    cluster.kubectl(&["logs", name])
}

/// Parses the JSON after `prefix` on the log line that starts with it.
fn counts_line(log: &str, prefix: &str) -> BTreeMap<String, usize> {
    let line = log.lines().find_map(|line| line.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix} line in:\n{log}"));
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("bad {prefix} line {line:?}: {e}"))
}

/// Waits for the web Deployment's three ready pods and returns them as (name, IP), sorted by name.
fn web_pods(cluster: &Cluster) -> Vec<(String, String)> {
    cluster.wait_until("three ready web pods", Duration::from_secs(90), || {
        let pods = cluster.pods("app=web");
        pods.len() == 3 && pods.iter().all(pod_ready)
    });
    let mut pods: Vec<(String, String)> = cluster
        .pods("app=web")
        .iter()
        .map(|pod| {
            let name = pod["metadata"]["name"].as_str().unwrap().to_string();
            let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
            (name, ip)
        })
        .collect();
    pods.sort();
    pods
}

fn wait_for_pod(cluster: &Cluster, name: &str) {
    cluster.wait_until(&format!("pod {name} ready"), Duration::from_secs(60), || {
        cluster.get_json(&["get", "pod", name]).is_ok_and(|pod| pod_ready(&pod))
    });
}

/// Builds an EndpointSlice for `service` with one endpoint per (IP, ready) pair.
fn endpoint_slice(cluster: &Cluster, service: &str, port: (&str, u16, &str), endpoints: &[(&str, bool)]) -> String {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|(ip, ready)| json!({"addresses": [ip], "conditions": {"ready": ready}, "nodeName": cluster.node_name}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-manual"), "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": port.0, "port": port.1, "protocol": port.2}],
        "endpoints": endpoints,
    })
    .to_string()
}

fn service_json(cluster: &Cluster, name: &str) -> Value {
    cluster.get_json(&["get", "service", name]).expect("the Service exists")
}

/// Sends `count` requests to `ip:port` from the host and counts the answering pods.
fn answers_from_host(ip: &str, port: u16, count: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..count {
        let body = http_get(ip, port, "/").unwrap_or_else(|| "(no answer)".to_string());
        *counts.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    counts
}

fn hello(pod: &str) -> String {
    format!("hello from {pod}")
}

/// Creates the NodePort Service `web` without a selector and its EndpointSlice with
/// `endpoints`, waits until the ClusterIP answers, and returns the ClusterIP and NodePort.
fn web_node_port_service(cluster: &Cluster, endpoints: &[(&str, bool)]) -> (String, u16) {
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  type: NodePort\n  ports: [{name: http, port: 80, targetPort: 8080}]\n",
    );
    cluster.apply(&endpoint_slice(cluster, "web", ("http", 8080, "TCP"), endpoints));
    let service = service_json(cluster, "web");
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
    cluster.wait_until("the ClusterIP answers", Duration::from_secs(30), || {
        http_get(&cluster_ip, 80, "/").is_some()
    });
    (cluster_ip, node_port)
}

#[test]
fn clusterip_balances_and_follows_endpoints() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(WEB);
    let pods = web_pods(&cluster);

    let all: Vec<(&str, bool)> = pods.iter().map(|(_, ip)| (ip.as_str(), true)).collect();
    let (cluster_ip, node_port) = web_node_port_service(&cluster, &all);

    // From the host: 300 connections reach every replica.
    let counts = answers_from_host(&cluster_ip, 80, 300);
    for (name, _) in &pods {
        assert!(counts.get(&hello(name)).copied().unwrap_or(0) > 30, "replica {name} got too few of 300: {counts:?}");
    }
    assert_eq!(counts.values().sum::<usize>(), 300);

    // From a pod, by name: the pod's resolv.conf points at the cluster DNS.
    cluster.apply(&python_pod("client", "Never", CLIENT_SCRIPT, &[]));
    let log = completed_log(&cluster, "client");
    assert!(log.contains(&format!("nameserver {}", cluster.gateway())), "resolv.conf:\n{log}");
    assert!(log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"), "resolv.conf:\n{log}");
    assert!(log.contains("options ndots:5"), "resolv.conf:\n{log}");
    let counts = counts_line(&log, "BY-NAME ");
    for (name, _) in &pods {
        assert!(counts.get(&hello(name)).copied().unwrap_or(0) > 30, "replica {name} got too few of 300 from a pod: {counts:?}");
    }
    // The short name works through the search list.
    let short = counts_line(&log, "SHORT ");
    assert_eq!(short.values().sum::<usize>(), 3, "short name: {short:?}");

    // NodePort from the host: on loopback and on the bridge gateway.
    for address in ["127.0.0.1".to_string(), cluster.gateway()] {
        let counts = answers_from_host(&address, node_port, 30);
        assert_eq!(counts.len(), 3, "NodePort on {address} reached {counts:?}");
    }

    // Session affinity keeps one client on one replica.
    cluster.kubectl(&["patch", "service", "web", "-p", r#"{"spec":{"sessionAffinity":"ClientIP"}}"#]);
    cluster.wait_until("affinity applied", Duration::from_secs(30), || answers_from_host(&cluster_ip, 80, 20).len() == 1);
    assert_eq!(answers_from_host(&cluster_ip, 80, 50).len(), 1, "affinity let a client move");
    cluster.kubectl(&["patch", "service", "web", "-p", r#"{"spec":{"sessionAffinity":"None","sessionAffinityConfig":null}}"#]);

    // An endpoint that is not ready gets no new connections.
    let first = &pods[0];
    let mut marked = all.clone();
    marked[0].1 = false;
    cluster.apply(&endpoint_slice(&cluster, "web", ("http", 8080, "TCP"), &marked));
    cluster.wait_until("not-ready endpoint drained", Duration::from_secs(30), || {
        !answers_from_host(&cluster_ip, 80, 20).contains_key(&hello(&first.0))
    });
    let counts = answers_from_host(&cluster_ip, 80, 100);
    assert!(!counts.contains_key(&hello(&first.0)), "not-ready {} still answered: {counts:?}", first.0);
    assert_eq!(counts.len(), 2, "the two ready replicas answer: {counts:?}");

    // Removing endpoints leaves only the last.
    cluster.apply(&endpoint_slice(&cluster, "web", ("http", 8080, "TCP"), &[(&pods[2].1, true)]));
    cluster.wait_until("only one endpoint left", Duration::from_secs(30), || {
        answers_from_host(&cluster_ip, 80, 20).len() == 1
    });
    let counts = answers_from_host(&cluster_ip, 80, 50);
    assert_eq!(counts.keys().collect::<Vec<_>>(), [&hello(&pods[2].0)], "after removal: {counts:?}");
}

#[test]
fn pod_reaches_itself_through_service() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: selfie}\nspec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n");
    let cluster_ip = service_json(&cluster, "selfie")["spec"]["clusterIP"].as_str().unwrap().to_string();
    let url = format!("http://{cluster_ip}/");
    cluster.apply(&python_pod("selfie", "Always", HAIRPIN_SCRIPT, &[&url]));
    cluster.wait_until("pod selfie running", Duration::from_secs(60), || {
        cluster.get_json(&["get", "pod", "selfie"]).is_ok_and(|pod| pod["status"]["podIP"].is_string())
    });
    let pod_ip = cluster.get_json(&["get", "pod", "selfie"]).unwrap()["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply(&endpoint_slice(&cluster, "selfie", ("http", 8080, "TCP"), &[(&pod_ip, true)]));
    cluster.wait_until("the pod reached itself", Duration::from_secs(60), || {
        cluster.try_kubectl(&["logs", "selfie"]).is_ok_and(|log| log.contains("HAIRPIN"))
    });
    let log = cluster.kubectl(&["logs", "selfie"]);
    assert!(log.contains("HAIRPIN hello from selfie"), "log:\n{log}");
}

/// Starts a DNS server on loopback that answers every A question with 192.0.2.77, standing
/// in for the upstream resolvers.
fn start_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the upstream DNS server");
    let address = socket.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok((length, client)) = socket.recv_from(&mut buffer) {
            let Ok(query) = Message::from_vec(&buffer[..length]) else { continue };
            let mut response = Message::response(query.metadata.id, query.metadata.op_code);
            response.add_queries(query.queries.clone());
            for question in &query.queries {
                let data = RData::A(hickory_proto::rr::rdata::A([192, 0, 2, 77].into()));
                response.add_answer(hickory_proto::rr::Record::from_rdata(question.name().clone(), 60, data));
            }
            let _ = socket.send_to(&response.to_vec().unwrap(), client);
        }
    });
    address
}

/// Asks the DNS server at `server` one question over UDP.
fn dns_query(server: &str, name: &str, kind: RecordType) -> Message {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    socket.send_to(&query.to_vec().unwrap(), (server, 53)).unwrap();
    let mut buffer = [0u8; 4096];
    let (length, _) = socket.recv_from(&mut buffer).unwrap_or_else(|e| panic!("no DNS answer for {name}: {e}"));
    Message::from_vec(&buffer[..length]).unwrap()
}

fn answer_data(message: &Message) -> Vec<String> {
    let mut data: Vec<String> = message.answers.iter().map(|record| record.data.to_string()).collect();
    data.sort();
    data
}

#[test]
fn dns_headless_srv_and_udp() {
    let upstream = start_upstream();
    let options = ClusterOptions { dns_upstream: upstream.to_string(), ..ClusterOptions::default() };
    let cluster = Cluster::start(options);
    cluster.apply(WEB);
    let pods = web_pods(&cluster);
    let dns = cluster.gateway();

    // Headless: every ready address.
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  clusterIP: None\n  ports: [{name: http, port: 8080}]\n");
    let all: Vec<(&str, bool)> = pods.iter().map(|(_, ip)| (ip.as_str(), true)).collect();
    cluster.apply(&endpoint_slice(&cluster, "web", ("http", 8080, "TCP"), &all));
    let mut expected: Vec<String> = pods.iter().map(|(_, ip)| ip.clone()).collect();
    expected.sort();
    cluster.wait_until("headless A records", Duration::from_secs(30), || {
        answer_data(&dns_query(&dns, "web.default.svc.cluster.local.", RecordType::A)) == expected
    });
    let mut marked = all.clone();
    marked[0].1 = false;
    cluster.apply(&endpoint_slice(&cluster, "web", ("http", 8080, "TCP"), &marked));
    cluster.wait_until("not-ready address left out", Duration::from_secs(30), || {
        answer_data(&dns_query(&dns, "web.default.svc.cluster.local.", RecordType::A)) == expected[1..]
            || !answer_data(&dns_query(&dns, "web.default.svc.cluster.local.", RecordType::A)).contains(&pods[0].1)
    });
    let answer = answer_data(&dns_query(&dns, "web.default.svc.cluster.local.", RecordType::A));
    assert!(!answer.contains(&pods[0].1), "not-ready {} is still listed: {answer:?}", pods[0].1);
    assert_eq!(answer.len(), 2, "{answer:?}");

    // SRV for the named port of a ClusterIP Service.
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n");
    cluster.wait_until("the api Service in DNS", Duration::from_secs(30), || {
        !dns_query(&dns, "_http._tcp.api.default.svc.cluster.local.", RecordType::SRV).answers.is_empty()
    });
    let srv = dns_query(&dns, "_http._tcp.api.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(answer_data(&srv), ["0 100 80 api.default.svc.cluster.local."]);
    let cluster_ip = service_json(&cluster, "api")["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(answer_data(&dns_query(&dns, "api.default.svc.cluster.local.", RecordType::A)), [cluster_ip]);

    // Pod names, unknown names and forwarded names.
    let (pod_ip, _) = (&pods[1].1, ());
    let pod_name = format!("{}.default.pod.cluster.local.", pod_ip.replace('.', "-"));
    assert_eq!(answer_data(&dns_query(&dns, &pod_name, RecordType::A)), [pod_ip.clone()]);
    let missing = dns_query(&dns, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    let forwarded = dns_query(&dns, "www.example.org.", RecordType::A);
    assert_eq!(forwarded.metadata.response_code, ResponseCode::NoError);
    assert_eq!(answer_data(&forwarded), ["192.0.2.77"], "the loopback upstream answers other names");

    // UDP through a ClusterIP: an echo pod returns each datagram with an `echo:` prefix.
    cluster.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: echo}
spec:
  containers:
  - name: echo
    image: host
    command: ["python3", "-c", "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5300))\nwhile True:\n  d,a=s.recvfrom(512)\n  s.sendto(b'echo:'+d,a)\n"]
"#,
    );
    wait_for_pod(&cluster, "echo");
    let echo_ip = cluster.get_json(&["get", "pod", "echo"]).unwrap()["status"]["podIP"].as_str().unwrap().to_string();
    cluster.apply("apiVersion: v1\nkind: Service\nmetadata: {name: echo}\nspec:\n  ports: [{name: dgram, port: 53, targetPort: 5300, protocol: UDP}]\n");
    cluster.apply(&endpoint_slice(&cluster, "echo", ("dgram", 5300, "UDP"), &[(&echo_ip, true)]));
    let echo_service_ip = service_json(&cluster, "echo")["spec"]["clusterIP"].as_str().unwrap().to_string();
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut reply = String::new();
    cluster.wait_until("a UDP reply through the ClusterIP", Duration::from_secs(30), || {
        let _ = socket.send_to(b"ping", (echo_service_ip.as_str(), 53));
        let mut buffer = [0u8; 512];
        match socket.recv_from(&mut buffer) {
            Ok((length, _)) => {
                reply = String::from_utf8_lossy(&buffer[..length]).into_owned();
                true
            }
            Err(_) => false,
        }
    });
    assert_eq!(reply, "echo:ping");
    let srv = dns_query(&dns, "_dgram._udp.echo.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(answer_data(&srv), ["0 100 53 echo.default.svc.cluster.local."]);
}

#[test]
fn userspace_mode_balances_without_nftables() {
    let options = ClusterOptions {
        extra_args: vec!["--proxy-mode".into(), "userspace".into()],
        ..ClusterOptions::default()
    };
    let cluster = Cluster::start(options);
    cluster.apply(WEB);
    let pods = web_pods(&cluster);
    let all: Vec<(&str, bool)> = pods.iter().map(|(_, ip)| (ip.as_str(), true)).collect();
    let (cluster_ip, node_port) = web_node_port_service(&cluster, &all);

    let table = format!("capstan_{}", cluster.proxy_suffix);
    let listed = std::process::Command::new("nft").args(["list", "table", "ip", &table]).output().unwrap();
    assert!(!listed.status.success(), "userspace mode must not program nftables");

    for (address, port) in [(cluster_ip.as_str(), 80), ("127.0.0.1", node_port)] {
        let counts = answers_from_host(address, port, 60);
        let expected: Vec<String> = pods.iter().map(|(name, _)| hello(name)).collect();
        assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), expected, "{address}:{port} reached {counts:?}");
        assert_eq!(counts.values().sum::<usize>(), 60);
    }

    // Marking an endpoint not ready takes it out of the rotation.
    let mut marked = all.clone();
    marked[1].1 = false;
    cluster.apply(&endpoint_slice(&cluster, "web", ("http", 8080, "TCP"), &marked));
    cluster.wait_until("not-ready endpoint drained", Duration::from_secs(30), || {
        !answers_from_host(&cluster_ip, 80, 12).contains_key(&hello(&pods[1].0))
    });
    assert_eq!(answers_from_host(&cluster_ip, 80, 30).len(), 2);
}

#[test]
fn deployment_service_end_to_end() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(WEB);
    let pods = web_pods(&cluster);
    cluster.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n",
    );
    let cluster_ip = service_json(&cluster, "web")["spec"]["clusterIP"].as_str().unwrap().to_string();
    cluster.wait_until("every replica behind the ClusterIP", Duration::from_secs(60), || {
        answers_from_host(&cluster_ip, 80, 30).len() == 3
    });
    let counts = answers_from_host(&cluster_ip, 80, 300);
    for (name, _) in &pods {
        assert!(counts.contains_key(&hello(name)), "replica {name} never answered: {counts:?}");
    }
    let names = answer_data(&dns_query(&cluster.gateway(), "web.default.svc.cluster.local.", RecordType::A));
    assert_eq!(names, [cluster_ip.clone()]);

    // a client pod reaches every replica by the Service's name
    cluster.apply(&python_pod("client", "Never", CLIENT_SCRIPT, &[]));
    let counts = counts_line(&completed_log(&cluster, "client"), "BY-NAME ");
    for (name, _) in &pods {
        assert!(counts.contains_key(&hello(name)), "replica {name} never answered the pod: {counts:?}");
    }

    // a replica that fails its readiness probe (its page directory is gone) gets no requests
    let (broken, _) = &pods[0];
    std::fs::remove_dir_all(format!("/tmp/capstan-web/{broken}")).unwrap();
    cluster.wait_until("the broken replica not ready", Duration::from_secs(30), || {
        cluster.get_json(&["get", "pod", broken]).is_ok_and(|pod| !pod_ready(&pod))
    });
    cluster.wait_until("the broken replica out of rotation", Duration::from_secs(30), || {
        answers_from_host(&cluster_ip, 80, 20).len() == 2
    });
    let counts = answers_from_host(&cluster_ip, 80, 100);
    assert_eq!(counts.values().sum::<usize>(), 100, "{counts:?}");
    assert!(!counts.contains_key(&hello(broken)) && counts.len() == 2, "only the ready replicas answer: {counts:?}");
    cluster.kubectl(&["delete", "pod", broken]);

    // scaling to one replica moves all traffic to it within seconds, and back to three
    cluster.kubectl(&["scale", "deploy/web", "--replicas=1"]);
    cluster.wait_until("traffic only to the remaining replica", Duration::from_secs(30), || {
        answers_from_host(&cluster_ip, 80, 30).len() == 1
    });
    cluster.kubectl(&["scale", "deploy/web", "--replicas=3"]);
    cluster.wait_until("traffic to three replicas again", Duration::from_secs(60), || {
        answers_from_host(&cluster_ip, 80, 60).len() == 3
    });
}
