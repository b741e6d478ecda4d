//! Crash safety of the embedded store: a writer killed with SIGKILL mid-burst loses no
//! acknowledged write and leaves no gap in the revisions.
//!
//! The parent test re-runs this test binary as the child, selecting the ignored test
//! `crash_child_entry` and passing the store path in `CAPSTAN_STORE_CRASH_CHILD`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use capstan_store::{EmbeddedOptions, EmbeddedStore, Revision, Store};

const CHILD_ENV: &str = "CAPSTAN_STORE_CRASH_CHILD";
const WRITERS: usize = 16;
/// Acknowledged writes the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 300;

/// Runs the child: creates keys from many tasks until it is killed, printing each
/// acknowledged key and revision as `ack <key> <revision>`.
#[test]
#[ignore = "run by embedded_store_survives_sigkill as its child process"]
fn crash_child_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        eprintln!("{CHILD_ENV} is not set, so there is no store to write to");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async move {
        let store = EmbeddedStore::open(path.as_ref(), EmbeddedOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/crash/{writer}/{i}");
                    let kv = store.create(&key, vec![b'x'; 64]).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {key} {}", kv.mod_revision).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[test]
fn embedded_store_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child test process");

    // Read the child's output on a thread, so that a silent child fails the test by timeout.
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acked: BTreeMap<String, Revision> = BTreeMap::new();
    let mut record = |line: String| {
        if let Some(rest) = line.strip_prefix("ack ") {
            let (key, revision) = rest.split_once(' ').expect("ack line has a key and a revision");
            acked.insert(key.to_string(), revision.parse().expect("revision is a number"));
        }
    };
    let mut count = 0;
    while count < ACKS_BEFORE_KILL {
        let line =
            lines.recv_timeout(Duration::from_secs(60)).expect("child acknowledged too few writes");
        count += usize::from(line.starts_with("ack "));
        record(line);
    }

    // SIGKILL mid-burst; lines already in the pipe were acknowledged before the kill.
    child.kill().expect("kill the child");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().unwrap();
    for line in lines.try_iter() {
        record(line);
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(&path, EmbeddedOptions::default()).unwrap();
        let current = store.current_revision().await.unwrap();
        eprintln!(
            "{} writes acknowledged before the kill, store reopened at revision {current}",
            acked.len()
        );
        assert!(
            current as usize >= acked.len(),
            "revision {current} < {} acknowledged writes",
            acked.len()
        );

        for (key, revision) in &acked {
            let kv = store.get(key).await.unwrap();
            let kv =
                kv.unwrap_or_else(|| panic!("acknowledged key {key} is missing after the crash"));
            assert_eq!(kv.mod_revision, *revision, "revision of {key}");
        }

        // Only creates ran, so the keys' revisions must be exactly 1..=current.
        let listed = store.list("/crash/", None).await.unwrap();
        let mut revisions: Vec<Revision> = listed.items.iter().map(|kv| kv.mod_revision).collect();
        revisions.sort_unstable();
        let expected: Vec<Revision> = (1..=current).collect();
        assert_eq!(revisions, expected, "revisions have gaps or duplicates");
    });
}
