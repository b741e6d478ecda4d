//! kubectl 1.32 and later send protobuf for the objects its generators build. Each case
//! creates an object that way and checks the stored object against the same command's
//! `--dry-run=client -o json` output.

mod common;

use common::TestServer;
use serde_json::Value;

/// Removes nulls, empty strings, empty objects and empty arrays, which JSON and protobuf
/// encode differently but which mean "unset" in both.
fn normalize(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(map) => {
            let kept: serde_json::Map<String, Value> =
                map.iter().filter_map(|(k, v)| normalize(v).map(|v| (k.clone(), v))).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.iter().filter_map(normalize).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other.clone()),
    }
}

/// Checks that every leaf of `expected` appears with the same value in `actual`.
fn assert_contains(actual: &Value, expected: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (key, value) in want {
                let child = have.get(key).unwrap_or_else(|| panic!("{path}.{key} missing in {actual}"));
                assert_contains(child, value, &format!("{path}.{key}"));
            }
        }
        (Value::Array(want), Value::Array(have)) => {
            assert_eq!(want.len(), have.len(), "{path} length");
            for (index, (w, h)) in want.iter().zip(have).enumerate() {
                assert_contains(h, w, &format!("{path}[{index}]"));
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

async fn check_generator(server: &TestServer, args: &[&str]) {
    // flags go before any `--`, which starts the container command
    let with_flags = |flags: &[&'static str]| {
        let mut full = vec![args[0]];
        full.extend_from_slice(flags);
        full.extend_from_slice(&args[1..]);
        full
    };
    let client_side = with_flags(&["--dry-run=client", "-o", "json"]);
    let expected: Value = serde_json::from_str(&server.kubectl_ok(&client_side).await).expect("dry-run JSON");
    let created = with_flags(&["-o", "json"]);
    let actual: Value = serde_json::from_str(&server.kubectl_ok(&created).await).expect("created JSON");

    let mut expected = normalize(&expected).expect("non-empty object");
    if let Some(root) = expected.as_object_mut() {
        root.remove("status");
    }
    assert_contains(&actual, &expected, &args.join(" "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators_send_decodable_protobuf() {
    let server = TestServer::start().await;
    let cases: &[&[&str]] = &[
        &["create", "configmap", "settings", "--from-literal=a=1", "--from-literal=b=two"],
        &["create", "secret", "generic", "token", "--from-literal=key=value"],
        &["create", "namespace", "team"],
        &["create", "serviceaccount", "robot"],
        &["create", "deployment", "web", "--image=host", "--replicas=3", "--port=8080", "--", "sleep", "3600"],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        &["run", "once", "--image=host", "--labels=app=once,tier=job", "--env=MODE=test", "--port=9000", "--restart=Never", "--", "sleep", "5"],
        &["expose", "deployment", "web", "--name=web-public", "--port=81", "--target-port=8080"],
    ];
    for args in cases {
        check_generator(&server, args).await;
    }
}
