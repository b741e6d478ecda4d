use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::*;
use crate::directory::{ContainerLogs, PodLogs};

const LOG: &str = "\
2026-01-01T00:00:01.000000000Z stdout F hi
2026-01-01T00:00:02.000000000Z stdout F there
";

struct Fixture {
    _dir: tempfile::TempDir,
    directory: PodDirectory,
    current: PathBuf,
    client: reqwest::Client,
    base: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let current = dir.path().join("1.log");
    let previous = dir.path().join("0.log");
    std::fs::write(&current, LOG).expect("write log");
    std::fs::write(
        &previous,
        "2026-01-01T00:00:00.000000000Z stdout F old run\n",
    )
    .expect("write log");
    let directory = PodDirectory::new();
    let mut containers = BTreeMap::new();
    containers.insert(
        "web".to_string(),
        ContainerLogs {
            current: Some(current.clone()),
            previous: Some(previous),
            running: false,
        },
    );
    containers.insert(
        "side".to_string(),
        ContainerLogs {
            current: Some(current.clone()),
            previous: None,
            running: false,
        },
    );
    directory.publish(
        "default",
        "web-abc",
        PodLogs {
            uid: "u1".into(),
            containers,
        },
    );

    let authority =
        capstan_pki::Authority::load_or_create(&dir.path().join("pki")).expect("authority");
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let serving = authority
        .issue_server("node-1", &[], &[localhost])
        .expect("serving cert");
    let server = KubeletServer::bind(
        (localhost, 0).into(),
        &serving,
        authority.ca_cert_pem(),
        directory.clone(),
    )
    .await
    .expect("bind");
    let address = server.local_addr().expect("address");
    tokio::spawn(server.serve());

    let identity = authority
        .issue_client("kube-apiserver", &[])
        .expect("client cert");
    let tls =
        capstan_pki::client_config(&identity, authority.ca_cert_pem()).expect("client config");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .expect("client");
    Fixture {
        _dir: dir,
        directory,
        current,
        client,
        base: format!("https://{address}"),
    }
}

async fn get(fixture: &Fixture, path: &str) -> (u16, String) {
    let response = fixture
        .client
        .get(format!("{}{path}", fixture.base))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn logs_over_tls() {
    let fixture = fixture().await;
    assert_eq!(get(&fixture, "/healthz").await, (200, "ok".to_string()));
    assert_eq!(
        get(&fixture, "/containerLogs/default/web-abc/web").await,
        (200, "hi\nthere\n".to_string())
    );
    assert_eq!(
        get(
            &fixture,
            "/containerLogs/default/web-abc/web?tailLines=1&timestamps=true"
        )
        .await,
        (200, "2026-01-01T00:00:02.000000000Z there\n".to_string())
    );
    assert_eq!(
        get(&fixture, "/containerLogs/default/web-abc/web?previous=true").await,
        (200, "old run\n".to_string())
    );
    assert_eq!(
        get(&fixture, "/containerLogs/default/web-abc/web?limitBytes=4").await,
        (200, "hi\nt".to_string())
    );
}

#[tokio::test]
async fn log_errors_are_plain_text() {
    let fixture = fixture().await;
    let (status, _) = get(&fixture, "/containerLogs/default/nope/web").await;
    assert_eq!(status, 404);
    let (status, _) = get(&fixture, "/containerLogs/default/web-abc/nope").await;
    assert_eq!(status, 404);
    let (status, body) = get(
        &fixture,
        "/containerLogs/default/web-abc/side?previous=true",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        "previous terminated container \"side\" in pod \"web-abc\" not found"
    );
    let (status, _) = get(&fixture, "/containerLogs/default/web-abc/web?tailLines=-1").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn follow_ends_when_container_stops() {
    let fixture = fixture().await;
    let mut logs = fixture.directory.pod("default", "web-abc").expect("pod");
    logs.containers.get_mut("web").expect("web").running = true;
    fixture
        .directory
        .publish("default", "web-abc", logs.clone());

    let url = format!(
        "{}/containerLogs/default/web-abc/web?follow=true",
        fixture.base
    );
    let response = fixture.client.get(url).send().await.expect("request");
    let mut stream = response.bytes_stream();
    use futures::StreamExt;
    let mut output = Vec::new();
    while !output.ends_with(b"there\n") {
        let chunk = stream
            .next()
            .await
            .expect("a chunk before the end")
            .expect("bytes");
        output.extend_from_slice(&chunk);
    }

    // a line appended while following arrives, then the stream ends once the container stops
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&fixture.current)
        .expect("open log");
    std::io::Write::write_all(
        &mut file,
        b"2026-01-01T00:00:05.000000000Z stdout F later\n",
    )
    .expect("append");
    logs.containers.get_mut("web").expect("web").running = false;
    fixture.directory.publish("default", "web-abc", logs);
    let collect = async {
        while let Some(chunk) = stream.next().await {
            output.extend_from_slice(&chunk.expect("bytes"));
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), collect)
        .await
        .expect("stream ends");
    assert_eq!(String::from_utf8_lossy(&output), "hi\nthere\nlater\n");
}

#[tokio::test]
async fn client_without_certificate_rejected() {
    let fixture = fixture().await;
    let anonymous = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let result = anonymous
        .get(format!("{}/healthz", fixture.base))
        .send()
        .await;
    assert!(
        result.is_err(),
        "a client without a certificate must fail the handshake"
    );
}
