use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, TCPSocketAction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::fake::FakeRuntime;

fn probe(failure: i32, success: i32) -> Probe {
    Probe {
        failure_threshold: Some(failure),
        success_threshold: Some(success),
        period_seconds: Some(5),
        initial_delay_seconds: Some(3),
        ..Probe::default()
    }
}

#[test]
fn liveness_flips_after_failure_threshold() {
    let start = Instant::now();
    let mut tracker = ProbeTracker::new(ProbeKind::Liveness, probe(3, 1), start);
    assert!(tracker.passing());
    assert!(!tracker.due(start));
    assert!(tracker.due(start + Duration::from_secs(3)));
    assert_eq!(tracker.record(false, start), None);
    assert_eq!(tracker.record(false, start), None);
    assert_eq!(tracker.record(true, start), None);
    assert_eq!(tracker.record(false, start), None);
    assert_eq!(tracker.record(false, start), None);
    assert_eq!(tracker.record(false, start), Some(false));
    assert!(!tracker.passing());
    assert_eq!(tracker.next_run(), start + Duration::from_secs(5));
}

#[test]
fn readiness_needs_success_threshold() {
    let start = Instant::now();
    let mut tracker = ProbeTracker::new(ProbeKind::Readiness, probe(1, 2), start);
    assert!(!tracker.passing());
    assert_eq!(tracker.record(true, start), None);
    assert_eq!(tracker.record(true, start), Some(true));
    assert!(tracker.passing());
    assert_eq!(tracker.record(false, start), Some(false));
    assert!(!tracker.passing());
}

#[test]
fn startup_reports_giving_up() {
    let start = Instant::now();
    let mut tracker = ProbeTracker::new(ProbeKind::Startup, probe(2, 1), start);
    assert_eq!(tracker.record(false, start), None);
    assert_eq!(tracker.record(false, start), Some(false));
}

#[test]
fn named_port_resolves() {
    let ports = vec![ContainerPort {
        name: Some("http".into()),
        container_port: 8080,
        ..ContainerPort::default()
    }];
    assert_eq!(
        resolve_port(&IntOrString::String("http".into()), &ports),
        Ok(8080)
    );
    assert_eq!(resolve_port(&IntOrString::Int(81), &ports), Ok(81));
    assert!(resolve_port(&IntOrString::String("grpc".into()), &ports).is_err());
}

fn target(ports: Vec<ContainerPort>) -> ProbeTarget {
    ProbeTarget {
        container_id: "c1".into(),
        pod_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        ports,
    }
}

/// Serves one HTTP response with `status` to each connection and returns the port.
async fn serve_status(status: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let response =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    port
}

fn http_probe_on(port: IntOrString) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port,
            ..HTTPGetAction::default()
        }),
        ..Probe::default()
    }
}

#[tokio::test]
async fn http_probe_reads_status() {
    let runtime = FakeRuntime::new();
    let healthy = serve_status(204).await;
    let outcome = run_probe(
        &runtime,
        &http_probe_on(IntOrString::Int(healthy.into())),
        &target(vec![]),
    )
    .await;
    assert!(outcome.success, "{}", outcome.message);

    let broken = serve_status(500).await;
    let ports = vec![ContainerPort {
        name: Some("web".into()),
        container_port: broken.into(),
        ..ContainerPort::default()
    }];
    let outcome = run_probe(
        &runtime,
        &http_probe_on(IntOrString::String("web".into())),
        &target(ports),
    )
    .await;
    assert!(!outcome.success);
    assert_eq!(outcome.message, "HTTP probe failed with statuscode: 500");
}

#[tokio::test]
async fn tcp_probe_connects() {
    let runtime = FakeRuntime::new();
    let open = serve_status(200).await;
    let tcp = |port: u16| Probe {
        tcp_socket: Some(TCPSocketAction {
            host: None,
            port: IntOrString::Int(port.into()),
        }),
        ..Probe::default()
    };
    assert!(
        run_probe(&runtime, &tcp(open), &target(vec![]))
            .await
            .success
    );

    let closed = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let closed_port = closed.local_addr().expect("address").port();
    drop(closed);
    assert!(
        !run_probe(&runtime, &tcp(closed_port), &target(vec![]))
            .await
            .success
    );
}

#[tokio::test]
async fn exec_probe_uses_exit_code() {
    let runtime = FakeRuntime::new();
    let exec = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["cat".into(), "/tmp/ok".into()]),
        }),
        ..Probe::default()
    };
    assert!(run_probe(&runtime, &exec, &target(vec![])).await.success);
    runtime.set_exec_exit_code(1);
    assert!(!run_probe(&runtime, &exec, &target(vec![])).await.success);
    assert_eq!(
        runtime.calls_starting_with("exec_sync"),
        vec!["exec_sync c1 cat /tmp/ok"; 2]
    );
}
