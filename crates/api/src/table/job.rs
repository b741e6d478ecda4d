//! Cells of the Job printer, as kubectl 1.33 shows them: status, completions, duration.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::kinds::{created, name, template_cells};
use super::{human_duration, integer, list, text};

/// Returns whether the Job has a condition of `kind` with status True.
fn has_condition(object: &Value, kind: &str) -> bool {
    list(object, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == kind && text(c, "/status") == "True")
}

/// The STATUS cell. Final conditions win over deletion, which wins over interim ones.
fn status(object: &Value) -> &'static str {
    if has_condition(object, "Complete") {
        "Complete"
    } else if has_condition(object, "Failed") {
        "Failed"
    } else if object.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has_condition(object, "Suspended") {
        "Suspended"
    } else if has_condition(object, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(object, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// The COMPLETIONS cell: `succeeded/completions`, or for a work queue without a count
/// `succeeded/1`, with `of <parallelism>` when more than one pod runs at once.
fn completions(object: &Value) -> String {
    let succeeded = integer(object, "/status/succeeded");
    if let Some(completions) = object.pointer("/spec/completions").and_then(Value::as_i64) {
        return format!("{succeeded}/{completions}");
    }
    match object.pointer("/spec/parallelism").and_then(Value::as_i64) {
        Some(parallelism) if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        _ => format!("{succeeded}/1"),
    }
}

/// The DURATION cell: empty before the Job starts, running time until it completes.
fn duration(object: &Value, now: Timestamp) -> String {
    let Ok(start) = text(object, "/status/startTime").parse::<Timestamp>() else {
        return String::new();
    };
    let end = text(object, "/status/completionTime").parse::<Timestamp>().unwrap_or(now);
    human_duration(end.as_second() - start.as_second())
}

pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
    let mut cells = vec![
        name(object),
        json!(status(object)),
        json!(completions(object)),
        json!(duration(object, now)),
        created(object, now),
    ];
    cells.extend(template_cells(object));
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn complete_job_row() {
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "busybox"}]}}},
            "status": {"succeeded": 3, "startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:00:13Z",
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]},
        });
        let row = cells(&job, at("2026-01-01T00:05:00Z"));
        assert_eq!(row[1], "Complete");
        assert_eq!(row[2], "3/3");
        assert_eq!(row[3], "12s");
        assert_eq!(row[4], "5m");
        assert_eq!(row[5], "pi");
        assert_eq!(row[6], "busybox");
        assert_eq!(row[7], "batch.kubernetes.io/controller-uid=u");
    }

    #[test]
    fn running_and_failed_status() {
        let running = json!({"spec": {"parallelism": 4}, "status": {"startTime": "2026-01-01T00:00:00Z"}});
        assert_eq!(status(&running), "Running");
        assert_eq!(completions(&running), "0/1 of 4");
        assert_eq!(duration(&running, at("2026-01-01T00:00:30Z")), "30s");
        let failed = json!({"status": {"conditions": [{"type": "FailureTarget", "status": "True"},
                                                     {"type": "Failed", "status": "True"}]}});
        assert_eq!(status(&failed), "Failed");
        let target = json!({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}});
        assert_eq!(status(&target), "FailureTarget");
        assert_eq!(duration(&json!({}), at("2026-01-01T00:00:30Z")), "");
    }
}
