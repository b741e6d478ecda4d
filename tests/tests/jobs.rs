//! batch/v1 Jobs on the process runtime, driven by the real kubectl. A parallel Job runs
//! to completion, and failing Jobs stop at their backoff limit or deadline. A suspended
//! Job waits, invalid Jobs are rejected with the bad field, and deleting a Job deletes
//! its pods.

use std::time::Duration;

use capstan_e2e::{Cluster, ClusterOptions, conditions_true};
use serde_json::Value;

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

fn job_manifest(name: &str, spec: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: host\n        command: {command}\n"
    )
}

fn job_pods(cluster: &Cluster, job: &str) -> Vec<Value> {
    cluster.pods(&format!("batch.kubernetes.io/job-name={job}"))
}

#[test]
fn parallel_job_completes() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&job_manifest(
        "counter",
        "  completions: 3\n  parallelism: 2\n",
        "[sh, -c, 'echo finished work']",
    ));

    let waited = cluster.try_kubectl(&["wait", "--for=condition=complete", "job/counter", "--timeout=90s"]);
    assert!(waited.is_ok(), "kubectl wait failed: {waited:?}\n{}", cluster.log());

    let job = cluster.get_json(&["get", "job", "counter"]).unwrap();
    assert_eq!(job["status"]["succeeded"], 3, "status: {}", job["status"]);
    assert!(conditions_true(&job, "SuccessCriteriaMet"), "status: {}", job["status"]);
    assert!(job["status"]["completionTime"].is_string(), "status: {}", job["status"]);
    assert!(job["status"]["startTime"].is_string(), "status: {}", job["status"]);
    assert!(job["status"].get("active").is_none_or(|a| a == 0), "status: {}", job["status"]);

    // kubectl's table shows the 1.33 columns.
    let table = cluster.kubectl(&["get", "job", "counter"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["counter", "Complete", "3/3"], "{table}");

    // Exactly three pods ran, each Completed, owned by the Job, with readable logs.
    let pods = job_pods(&cluster, "counter");
    assert_eq!(pods.len(), 3, "pods: {pods:?}");
    let listing = cluster.kubectl(&["get", "pods", "-l", "batch.kubernetes.io/job-name=counter"]);
    assert_eq!(listing.matches("Completed").count(), 3, "{listing}");
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("counter-"), "{name}");
        assert_eq!(pod["status"]["phase"], "Succeeded");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["controller"], true);
        assert_eq!(owner["uid"], job["metadata"]["uid"]);
        let logs = cluster.kubectl(&["logs", name]);
        assert_eq!(logs.trim(), "finished work", "logs of {name}");
    }
    let job_logs = cluster.kubectl(&["logs", "job/counter"]);
    assert!(job_logs.contains("finished"), "{job_logs:?}");

    // kubectl describe reads the status and the Job's events.
    let described = cluster.kubectl(&["describe", "job", "counter"]);
    assert!(described.contains("0 Active (0 Ready) / 3 Succeeded / 0 Failed"), "{described}");
    assert!(described.contains("SuccessfulCreate"), "{described}");
    assert!(described.contains("Completed"), "{described}");
}

#[test]
fn failing_job_hits_backoff_limit() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&job_manifest("doomed", "  backoffLimit: 1\n", "[sh, -c, 'echo trying; exit 3']"));

    let waited = cluster.try_kubectl(&["wait", "--for=condition=failed", "job/doomed", "--timeout=90s"]);
    assert!(waited.is_ok(), "kubectl wait failed: {waited:?}\n{}", cluster.log());
    let job = cluster.get_json(&["get", "job", "doomed"]).unwrap();
    let conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let failed = conditions.iter().find(|c| c["type"] == "Failed").expect("Failed condition");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(failed["message"], "Job has reached the specified backoff limit");
    assert!(conditions.iter().any(|c| c["type"] == "FailureTarget"), "{conditions:?}");
    assert_eq!(job["status"]["failed"], 2, "status: {}", job["status"]);

    // backoffLimit + 1 pods, all Failed with the container's exit code, and no more later.
    let pods = job_pods(&cluster, "doomed");
    assert_eq!(pods.len(), 2, "pods: {pods:?}");
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Failed");
        assert_eq!(pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 3);
    }
    let row = cluster.kubectl(&["get", "job", "doomed", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("Failed"), "{row}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(job_pods(&cluster, "doomed").len(), 2, "a failed Job must start no more pods");
}

#[test]
fn invalid_jobs_rejected_with_field() {
    let cluster = Cluster::start(ClusterOptions::default());
    let template = |policy: &str| {
        format!(r#"{{"spec":{{"restartPolicy":"{policy}","containers":[{{"name":"main","image":"host","command":["true"]}}]}}}}"#)
    };
    let cases = [
        ("always", format!(r#"{{"template":{}}}"#, template("Always")), "spec.template.spec.restartPolicy"),
        ("negative", format!(r#"{{"completions":-1,"template":{}}}"#, template("Never")), "spec.completions"),
        ("negative-backoff", format!(r#"{{"backoffLimit":-2,"template":{}}}"#, template("OnFailure")), "spec.backoffLimit"),
    ];
    for (name, spec, field) in cases {
        let body = format!(r#"{{"apiVersion":"batch/v1","kind":"Job","metadata":{{"name":"{name}"}},"spec":{spec}}}"#);
        let (code, reply) = cluster.request("POST", JOBS, "application/json", &body);
        assert_eq!(code, 422, "{name}: {reply}");
        let status: Value = serde_json::from_str(&reply).expect("a Status body");
        assert_eq!(status["kind"], "Status", "{name}");
        assert_eq!(status["reason"], "Invalid", "{name}");
        let causes = status["details"]["causes"].as_array().cloned().unwrap_or_default();
        assert!(causes.iter().any(|c| c["field"] == field), "{name}: causes {causes:?}");
    }

    // kubectl shows the same rejection, and nothing was stored.
    let manifest = job_manifest("always", "", "[\"true\"]").replace("Never", "Always");
    let error = cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest).expect_err("restartPolicy Always must fail");
    assert!(error.contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\""), "{error}");
    let listed = cluster.kubectl(&["get", "jobs", "-o", "name"]);
    assert_eq!(listed.trim(), "", "no Job may be stored: {listed}");

    // Strict field validation, the default of kubectl apply, checks against the Job schema.
    let manifest = job_manifest("typo", "  completion: 2\n", "[\"true\"]");
    let error = cluster.kubectl_stdin(&["apply", "-f", "-"], &manifest).expect_err("an unknown field must fail");
    assert!(error.contains("unknown field \"spec.completion\""), "{error}");

    // The OpenAPI document describes Jobs, so kubectl explain works.
    let explained = cluster.kubectl(&["explain", "job.spec.backoffLimit"]);
    assert!(explained.contains("GROUP:      batch"), "{explained}");
    assert!(explained.contains("backoffLimit"), "{explained}");
}

#[test]
fn created_job_runs_and_deletion_removes_pods() {
    let cluster = Cluster::start(ClusterOptions::default());
    // `kubectl create job` builds the Job itself, and `--image=host` runs on the process runtime.
    cluster.kubectl(&["create", "job", "hello", "--image=host", "--", "echo", "hi"]);
    let waited = cluster.try_kubectl(&["wait", "--for=condition=complete", "job/hello", "--timeout=60s"]);
    assert!(waited.is_ok(), "kubectl wait failed: {waited:?}\n{}", cluster.log());
    assert_eq!(cluster.kubectl(&["logs", "job/hello"]).trim(), "hi");

    let job = cluster.get_json(&["get", "job", "hello"]).unwrap();
    let uid = job["metadata"]["uid"].as_str().unwrap();
    assert_eq!(job["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid);
    assert_eq!(job["spec"]["backoffLimit"], 6);
    assert_eq!(job["spec"]["completionMode"], "NonIndexed");
    let all = cluster.kubectl(&["get", "all", "-o", "name"]);
    assert!(all.lines().any(|line| line == "job.batch/hello"), "kubectl get all: {all}");

    // A long-running Job: deleting it deletes its running pod too.
    cluster.apply(&job_manifest("sleeper", "", "[sleep, '600']"));
    cluster.wait_until("sleeper pod running", Duration::from_secs(30), || {
        job_pods(&cluster, "sleeper").iter().any(|p| p["status"]["phase"] == "Running")
    });
    cluster.kubectl(&["delete", "job", "sleeper"]);
    cluster.wait_until("sleeper pods deleted", Duration::from_secs(60), || job_pods(&cluster, "sleeper").is_empty());
    assert_eq!(job_pods(&cluster, "hello").len(), 1, "the other Job's pod stays");
}

#[test]
fn deadline_and_ttl_end_job() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&job_manifest(
        "slow",
        "  activeDeadlineSeconds: 3\n  ttlSecondsAfterFinished: 2\n",
        "[sleep, '600']",
    ));
    cluster.wait_until("DeadlineExceeded", Duration::from_secs(30), || {
        cluster.get_json(&["get", "job", "slow"]).is_ok_and(|job| {
            job["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed" && c["reason"] == "DeadlineExceeded"))
        })
    });
    assert!(job_pods(&cluster, "slow").iter().all(|p| p["status"]["phase"] != "Running"));
    cluster.wait_until("job deleted after its TTL", Duration::from_secs(30), || {
        cluster.try_kubectl(&["get", "job", "slow"]).is_err()
    });
}

#[test]
fn on_failure_restarts_count_toward_limit() {
    let cluster = Cluster::start(ClusterOptions::default());
    // Under OnFailure the agent restarts the container in place, and each restart counts
    // as a failure against backoffLimit.
    let manifest = job_manifest("flaky", "  backoffLimit: 2\n", "[sh, -c, 'exit 1']").replace("Never", "OnFailure");
    cluster.apply(&manifest);

    let waited = cluster.try_kubectl(&["wait", "--for=condition=failed", "job/flaky", "--timeout=90s"]);
    assert!(waited.is_ok(), "kubectl wait failed: {waited:?}\n{}", cluster.log());
    let job = cluster.get_json(&["get", "job", "flaky"]).unwrap();
    let conditions = job["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let failed = conditions.iter().find(|c| c["type"] == "Failed").expect("Failed condition");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");

    // One pod was restarted rather than replaced, and the failed Job deleted it.
    let created = cluster.kubectl(&["get", "events", "--field-selector", "reason=SuccessfulCreate,involvedObject.name=flaky", "--no-headers"]);
    assert_eq!(created.lines().count(), 1, "one pod created: {created}");
    cluster.wait_until("flaky pod deleted", Duration::from_secs(30), || job_pods(&cluster, "flaky").is_empty());
}

#[test]
fn suspended_job_starts_on_resume() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.apply(&job_manifest("later", "  suspend: true\n", "[sh, -c, 'echo resumed']"));
    cluster.wait_until("Suspended condition", Duration::from_secs(30), || {
        cluster.get_json(&["get", "job", "later"]).is_ok_and(|job| conditions_true(&job, "Suspended"))
    });
    let row = cluster.kubectl(&["get", "job", "later", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("Suspended"), "{row}");
    assert!(job_pods(&cluster, "later").is_empty(), "a suspended Job runs no pods");

    cluster.kubectl(&["patch", "job", "later", "--type=merge", "-p", r#"{"spec":{"suspend":false}}"#]);
    let waited = cluster.try_kubectl(&["wait", "--for=condition=complete", "job/later", "--timeout=60s"]);
    assert!(waited.is_ok(), "kubectl wait failed: {waited:?}\n{}", cluster.log());
    let job = cluster.get_json(&["get", "job", "later"]).unwrap();
    assert!(!conditions_true(&job, "Suspended"), "status: {}", job["status"]);
    assert_eq!(cluster.kubectl(&["logs", "job/later"]).trim(), "resumed");
}
