//! Pod networks on the process runtime: own IPs, same ports, exec in the namespace.

mod process_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use capstan_agent::runtime::{Runtime, RuntimeError};
use process_support::{fixture, python};

/// Sends `GET /` to `ip:8080` until a server responds or 15 s pass; returns the status line.
fn http_get(ip: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect_timeout(
            &format!("{ip}:8080").parse().unwrap(),
            Duration::from_secs(1),
        ) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            return response.lines().next().map(str::to_string);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

#[tokio::test]
async fn two_pods_share_port_8080() {
    let Some(fx) = fixture(21, true) else { return };
    let python = python();
    let mut pods = Vec::new();
    for name in ["web-a", "web-b"] {
        let sandbox = fx
            .runtime
            .run_sandbox(&fx.sandbox_config(name))
            .await
            .unwrap();
        let ip = sandbox.ip.clone().expect("a pod on the bridge has an IP");
        assert!(ip.starts_with("10.250.21."), "{ip}");
        let config =
            fx.container_config(name, &[&python, "-m", "http.server", "8080", "--bind", &ip]);
        let id = fx
            .runtime
            .create_container(&sandbox.id, &config)
            .await
            .unwrap();
        fx.runtime.start_container(&id).await.unwrap();
        pods.push((sandbox.id, id, ip));
    }
    assert_ne!(pods[0].2, pods[1].2, "two pods got one IP");

    // the node reaches both servers on their own addresses
    for (_, _, ip) in &pods {
        let answer = tokio::task::spawn_blocking({
            let ip = ip.clone();
            move || http_get(&ip)
        })
        .await
        .unwrap();
        assert_eq!(answer.as_deref(), Some("HTTP/1.0 200 OK"), "pod {ip}");
    }

    // pod A reaches pod B through the bridge
    let fetch = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{}:8080/', timeout=5).status)",
        pods[1].2
    );
    let output = fx
        .runtime
        .exec_sync(
            &pods[0].1,
            &[python.clone(), "-c".into(), fetch],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        output.exit_code,
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "200");

    // removal frees the namespace and the lease
    let (sandbox_id, _, ip) = &pods[0];
    fx.runtime.remove_sandbox(sandbox_id).await.unwrap();
    let lease = fx.state_dir.join("state/ipam").join(&fx.bridge).join(ip);
    assert!(!lease.exists(), "lease {} is still held", lease.display());
    let netns = format!("/run/netns/cst-{}", &sandbox_id[..12]);
    assert!(
        !std::path::Path::new(&netns).exists(),
        "{netns} is still there"
    );
}

#[tokio::test]
async fn exec_runs_in_pod_namespace() {
    let Some(fx) = fixture(22, true) else { return };
    let (sandbox_id, id) = fx.run("shell", &["sleep", "60"]).await;
    let ip = fx
        .runtime
        .sandbox_status(&sandbox_id)
        .await
        .unwrap()
        .ip
        .expect("pod IP");

    let output = fx
        .runtime
        .exec_sync(
            &id,
            &[
                "ip".into(),
                "-4".into(),
                "addr".into(),
                "show".into(),
                "eth0".into(),
            ],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.exit_code, 0);
    assert!(
        text.contains(&format!("inet {ip}/24")),
        "eth0 in the pod: {text}"
    );

    let started = Instant::now();
    let err = fx
        .runtime
        .exec_sync(
            &id,
            &["sleep".into(), "30".into()],
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ExecTimeout { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "timeout took {:?}",
        started.elapsed()
    );

    let missing = fx
        .runtime
        .exec_sync(&id, &["no-such-cmd-cst".into()], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(missing.exit_code, 127);
}

#[tokio::test]
async fn leases_survive_restart() {
    let Some(fx) = fixture(23, true) else { return };
    let first = fx
        .runtime
        .run_sandbox(&fx.sandbox_config("one"))
        .await
        .unwrap();
    let restarted = fx.restarted_runtime();
    let second = restarted
        .run_sandbox(&fx.sandbox_config("two"))
        .await
        .unwrap();
    assert!(first.ip.is_some());
    assert_ne!(
        first.ip, second.ip,
        "a restarted runtime handed out a leased IP"
    );
    restarted
        .stop_sandbox(&first.id, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!restarted.sandbox_status(&first.id).await.unwrap().ready);
}
