//! Measures the embedded store: write throughput and latency at several numbers of
//! concurrent writers, and watch fan-out to many watchers.
//!
//! Run with `cargo run --release -p capstan-bench-store`; results are recorded in
//! `bench/RESULTS.md`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use capstan_store::{EmbeddedOptions, EmbeddedStore, Store};
use clap::Parser;
use futures::StreamExt;

#[derive(Parser, Debug)]
#[command(about = "Benchmark the embedded store's writes and watch fan-out")]
struct Args {
    /// Creates per write scenario, shared among its writers.
    #[arg(long, default_value_t = 4000)]
    writes: usize,
    /// Numbers of concurrent writers, one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    writers: Vec<usize>,
    /// Watchers in the fan-out scenario.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Creates in the fan-out scenario, written by 16 concurrent writers.
    #[arg(long, default_value_t = 4000)]
    fanout_writes: usize,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 512)]
    value_size: usize,
    /// Directory for the store files; a temporary directory when absent.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// Latency percentiles of a set of samples.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Runs `total` creates from `writers` tasks and returns each create's latency.
async fn run_writers(
    store: Arc<EmbeddedStore>,
    prefix: &str,
    writers: usize,
    total: usize,
    value: Vec<u8>,
) -> anyhow::Result<Vec<Duration>> {
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (store, value, prefix) = (store.clone(), value.clone(), prefix.to_string());
        let count = total / writers + usize::from(writer < total % writers);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count);
            for i in 0..count {
                let started = Instant::now();
                store.create(&format!("{prefix}{writer}/{i}"), value.clone()).await?;
                latencies.push(started.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(latencies)
}

async fn bench_writers(dir: &Path, args: &Args, writers: usize) -> anyhow::Result<()> {
    let path = dir.join(format!("writers-{writers}.redb"));
    let store = Arc::new(EmbeddedStore::open(&path, EmbeddedOptions::default())?);
    let value = vec![b'x'; args.value_size];

    let started = Instant::now();
    let mut latencies = run_writers(store.clone(), "/bench/", writers, args.writes, value).await?;
    let elapsed = started.elapsed();
    latencies.sort_unstable();

    println!(
        "writers={writers:<3} writes={} writes/s={:.0} p50={:.2}ms p99={:.2}ms commits={} writes/commit={:.1}",
        args.writes,
        args.writes as f64 / elapsed.as_secs_f64(),
        millis(percentile(&latencies, 0.50)),
        millis(percentile(&latencies, 0.99)),
        store.commit_count(),
        args.writes as f64 / store.commit_count().max(1) as f64,
    );
    Ok(())
}

/// Counts the events under `/fan/` as one watcher and measures the delay from each
/// write's start, which the writer stores in the value as nanoseconds since `base`.
async fn watch_all(
    store: Arc<EmbeddedStore>,
    expected: usize,
    base: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut stream = store.watch("/fan/", 0).await?;
    let mut delays = Vec::with_capacity(expected);
    while delays.len() < expected {
        let event = stream.next().await.context("watch ended early")??;
        let capstan_store::Event::Put { kv, .. } = event else { continue };
        let sent: [u8; 8] = kv.value[..8].try_into()?;
        let sent = Duration::from_nanos(u64::from_le_bytes(sent));
        delays.push(base.elapsed().saturating_sub(sent));
    }
    Ok(delays)
}

async fn bench_fanout(dir: &Path, args: &Args) -> anyhow::Result<()> {
    let store =
        Arc::new(EmbeddedStore::open(&dir.join("fanout.redb"), EmbeddedOptions::default())?);
    let base = Instant::now();
    let watchers: Vec<_> = (0..args.watchers)
        .map(|_| tokio::spawn(watch_all(store.clone(), args.fanout_writes, base)))
        .collect();

    let started = Instant::now();
    let writers: Vec<_> = (0..16)
        .map(|writer| {
            let store = store.clone();
            let (count, size) = (
                args.fanout_writes / 16 + usize::from(writer < args.fanout_writes % 16),
                args.value_size.max(8),
            );
            tokio::spawn(async move {
                for i in 0..count {
                    let mut value = vec![b'x'; size];
                    let sent = base.elapsed().as_nanos() as u64;
                    value[..8].copy_from_slice(&sent.to_le_bytes());
                    store.create(&format!("/fan/{writer}/{i}"), value).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let mut delays = Vec::new();
    for watcher in watchers {
        delays.extend(watcher.await??);
    }
    let elapsed = started.elapsed();
    delays.sort_unstable();

    println!(
        "fan-out watchers={} writes={} events delivered/s={:.0} delay p50={:.2}ms p99={:.2}ms",
        args.watchers,
        args.fanout_writes,
        delays.len() as f64 / elapsed.as_secs_f64(),
        millis(percentile(&delays, 0.50)),
        millis(percentile(&delays, 0.99)),
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    println!("store files in {}, value size {} bytes", dir.display(), args.value_size);

    for &writers in &args.writers {
        anyhow::ensure!(writers > 0, "--writers must list positive numbers, got 0");
        bench_writers(&dir, &args, writers).await?;
    }
    bench_fanout(&dir, &args).await
}
