use super::*;
use crate::model::build_services;
use crate::model::tests::{service, web_service, web_slice};

fn view() -> Vec<ServiceEntry> {
    let headless = service(serde_json::json!({
        "metadata": {"namespace": "default", "name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}
    }));
    let mut db_slice = web_slice();
    db_slice.metadata.labels = Some([(crate::model::SERVICE_NAME_LABEL.to_string(), "db".to_string())].into());
    db_slice.endpoints[0].hostname = Some("db-0".to_string());
    let external = service(serde_json::json!({
        "metadata": {"namespace": "prod", "name": "mail"},
        "spec": {"type": "ExternalName", "externalName": "smtp.example.org"}
    }));
    build_services(&[web_service(), headless, external], &[web_slice(), db_slice])
}

fn lookup(name: &str, kind: RecordType) -> Outcome {
    let services = view();
    Zone { domain: "cluster.local", services: &services }.lookup(name, kind)
}

fn answers(outcome: Outcome) -> Vec<String> {
    match outcome {
        Outcome::Answer { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn service_name_returns_cluster_ip() {
    let outcome = lookup("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(outcome), ["10.96.0.10"]);
}

#[test]
fn names_are_case_insensitive() {
    let outcome = lookup("WEB.Default.svc.Cluster.Local", RecordType::A);
    assert_eq!(answers(outcome), ["10.96.0.10"]);
}

#[test]
fn headless_returns_every_ready_address() {
    let outcome = lookup("db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(outcome), ["10.244.0.5", "10.244.0.7"]);
}

#[test]
fn headless_hostname_resolves() {
    let outcome = lookup("db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(outcome), ["10.244.0.7"]);
    let dashed = lookup("10-244-0-5.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(dashed), ["10.244.0.5"]);
}

#[test]
fn aaaa_for_existing_name_is_empty() {
    let outcome = lookup("web.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(answers(outcome), Vec::<String>::new());
}

#[test]
fn srv_names_the_port() {
    let outcome = lookup("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(answers(outcome), ["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(lookup("_http._udp.web.default.svc.cluster.local.", RecordType::SRV), Outcome::NxDomain);
}

#[test]
fn headless_srv_lists_endpoints() {
    let outcome = lookup("_http._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    let mut records = answers(outcome);
    records.sort();
    assert_eq!(
        records,
        [
            "0 100 8080 10-244-0-5.db.default.svc.cluster.local.",
            "0 100 8080 db-0.db.default.svc.cluster.local."
        ]
    );
}

#[test]
fn pod_name_returns_its_address() {
    let outcome = lookup("10-244-3-4.default.pod.cluster.local.", RecordType::A);
    assert_eq!(answers(outcome), ["10.244.3.4"]);
    assert_eq!(lookup("bogus.default.pod.cluster.local.", RecordType::A), Outcome::NxDomain);
}

#[test]
fn unknown_cluster_names_are_nxdomain() {
    for name in ["nope.default.svc.cluster.local.", "web.other.svc.cluster.local.", "x.y.cluster.local."] {
        assert_eq!(lookup(name, RecordType::A), Outcome::NxDomain, "{name}");
    }
}

#[test]
fn other_names_are_forwarded() {
    assert_eq!(lookup("example.org.", RecordType::A), Outcome::Forward);
    assert_eq!(lookup("notcluster.local.", RecordType::A), Outcome::Forward);
    assert_eq!(lookup("1.2.3.4.in-addr.arpa.", RecordType::PTR), Outcome::Forward);
}

#[test]
fn external_name_is_cname() {
    let outcome = lookup("mail.prod.svc.cluster.local.", RecordType::A);
    assert_eq!(answers(outcome), ["smtp.example.org."]);
}

#[test]
fn ptr_names_the_service() {
    let outcome = lookup("10.0.96.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(answers(outcome), ["web.default.svc.cluster.local."]);
}
