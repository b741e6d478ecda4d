//! Liveness, readiness and startup probe rules.

use serde_json::Value;

use super::container::check_port_number;
use super::{FieldError, Path, array_field, check_enum, check_min, field};
use crate::meta;

/// Which of a container's probes is being validated; the rules differ slightly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

const HANDLERS: &[&str] = &["exec", "httpGet", "tcpSocket", "grpc"];

/// Validates one probe at `path` (`spec.containers[0].livenessProbe`).
pub(super) fn validate_probe(probe: &Value, kind: ProbeKind, path: &Path, errors: &mut Vec<FieldError>) {
    let probe = Some(probe);

    // Exactly one handler.
    let handlers: Vec<&str> = HANDLERS.iter().copied().filter(|h| field(probe, h).is_some()).collect();
    match handlers.as_slice() {
        [] => errors.push(FieldError::required(path.clone(), "must specify a handler type")),
        [handler] => validate_handler(handler, field(probe, handler), &path.child(handler), errors),
        [first, rest @ ..] => {
            validate_handler(first, field(probe, first), &path.child(first), errors);
            for extra in rest {
                let detail = "may not specify more than 1 handler type";
                errors.push(FieldError::forbidden(path.child(extra), detail));
            }
        }
    }

    // Timing fields; defaulting has replaced zero values by then, so only negatives fail.
    for name in ["initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"] {
        check_min(probe, name, 0, path, errors);
    }
    if let Some(success) = field(probe, "successThreshold") {
        if kind != ProbeKind::Readiness && success.as_i64() != Some(1) {
            errors.push(FieldError::invalid(path.child("successThreshold"), success.clone(), "must be 1"));
        }
    }
    if let Some(grace) = field(probe, "terminationGracePeriodSeconds") {
        if kind == ProbeKind::Readiness {
            let detail = "must not be set for readinessProbes";
            errors.push(FieldError::invalid(path.child("terminationGracePeriodSeconds"), grace.clone(), detail));
        } else if !grace.as_i64().is_some_and(|g| g > 0) {
            let detail = "must be greater than 0";
            errors.push(FieldError::invalid(path.child("terminationGracePeriodSeconds"), grace.clone(), detail));
        }
    }
}

fn validate_handler(name: &str, handler: Option<&Value>, path: &Path, errors: &mut Vec<FieldError>) {
    match name {
        "exec" => {
            if array_field(handler, "command").is_empty() {
                errors.push(FieldError::required(path.child("command"), ""));
            }
        }
        "httpGet" => {
            if field(handler, "path").and_then(Value::as_str).is_none_or(str::is_empty) {
                errors.push(FieldError::required(path.child("path"), ""));
            }
            check_port_number_or_name(field(handler, "port"), path.child("port"), errors);
            check_enum(handler, "scheme", &["HTTP", "HTTPS"], path, errors);
        }
        "tcpSocket" => check_port_number_or_name(field(handler, "port"), path.child("port"), errors),
        "grpc" => match field(handler, "port") {
            None => errors.push(FieldError::required(path.child("port"), "")),
            Some(port) => check_port_number(port, path.child("port"), errors),
        },
        _ => {}
    }
}

/// Validates an IntOrString port: a number from 1 to 65535 or a port name.
fn check_port_number_or_name(port: Option<&Value>, path: Path, errors: &mut Vec<FieldError>) {
    match port {
        None => errors.push(FieldError::required(path, "")),
        Some(Value::String(name)) if name.is_empty() => errors.push(FieldError::required(path, "")),
        Some(Value::String(name)) => {
            for problem in meta::port_name(name) {
                errors.push(FieldError::invalid(path.clone(), Value::from(name.as_str()), problem));
            }
        }
        Some(number) => check_port_number(number, path, errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(probe: Value, kind: ProbeKind) -> Vec<String> {
        let mut errors = Vec::new();
        validate_probe(&probe, kind, &Path::root().child("p"), &mut errors);
        errors.iter().map(FieldError::message).collect()
    }

    #[test]
    fn probe_rules() {
        let http = json!({"path": "/", "port": 8080, "scheme": "HTTP"});
        let cases: Vec<(Value, ProbeKind, Vec<&str>)> = vec![
            (json!({"httpGet": http, "successThreshold": 1}), ProbeKind::Liveness, vec![]),
            (json!({"periodSeconds": 10}), ProbeKind::Liveness, vec!["p: Required value: must specify a handler type"]),
            (
                json!({"httpGet": http, "tcpSocket": {"port": 80}}),
                ProbeKind::Readiness,
                vec!["p.tcpSocket: Forbidden: may not specify more than 1 handler type"],
            ),
            (json!({"exec": {"command": []}}), ProbeKind::Readiness, vec!["p.exec.command: Required value"]),
            (json!({"tcpSocket": {"port": "web"}}), ProbeKind::Readiness, vec![]),
            (
                json!({"tcpSocket": {"port": 70000}}),
                ProbeKind::Readiness,
                vec!["p.tcpSocket.port: Invalid value: 70000: must be between 1 and 65535, inclusive"],
            ),
            (
                json!({"httpGet": {"path": "/", "port": 80, "scheme": "FTP"}}),
                ProbeKind::Readiness,
                vec!["p.httpGet.scheme: Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\""],
            ),
            (
                json!({"httpGet": http, "successThreshold": 2}),
                ProbeKind::Startup,
                vec!["p.successThreshold: Invalid value: 2: must be 1"],
            ),
            (json!({"httpGet": http, "successThreshold": 2}), ProbeKind::Readiness, vec![]),
            (
                json!({"httpGet": http, "periodSeconds": -5}),
                ProbeKind::Readiness,
                vec!["p.periodSeconds: Invalid value: -5: must be greater than or equal to 0"],
            ),
            (
                json!({"httpGet": http, "terminationGracePeriodSeconds": 5}),
                ProbeKind::Readiness,
                vec!["p.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes"],
            ),
        ];
        for (probe, kind, expected) in cases {
            assert_eq!(messages(probe.clone(), kind), expected, "{kind:?} probe {probe}");
        }
    }
}
