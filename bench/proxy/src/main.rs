//! Service traffic benchmark: HTTP requests per second and latency straight to backend
//! pods, through a Service ClusterIP in the proxy's nftables and userspace modes, and
//! through haproxy over the same pods. Then it measures cluster DNS queries per second.
//!
//! It starts `capstan up --no-example` (with the end-to-end harness: unique bridge, pod and
//! Service ranges, proxy suffix and ports, DNS upstream on the loopback discard port), runs
//! its backends as process-runtime pods whose command is this program's `serve`
//! subcommand, and removes everything when done. It needs root for the pod network
//! namespaces. The haproxy comparison needs the `haproxy` program (Debian package
//! `haproxy`), or `--no-haproxy`. Results are recorded in `bench/RESULTS.md`.

mod dns;
mod haproxy;
mod load;
mod report;
mod serve;
mod setup;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use capstan_e2e::{Cluster, ClusterOptions};
use clap::{Parser, Subcommand};

use crate::load::{Load, Mode};
use crate::report::Row;

#[derive(Parser, Debug)]
#[command(about = "Benchmark Service traffic through capstan's proxy, and its cluster DNS server")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the backend's fixed HTTP response (the command of the benchmark's pods).
    Serve {
        /// TCP port to listen on, on every address.
        #[arg(long, default_value_t = setup::BACKEND_PORT)]
        port: u16,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The capstan binary to benchmark; defaults to `$CAPSTAN_BIN`, then `capstan` next to
    /// this program.
    #[arg(long)]
    capstan: Option<PathBuf>,
    /// Seconds of load per HTTP scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Numbers of concurrent client connections; every HTTP scenario runs once with each.
    /// One connection shows the latency a proxy adds without queueing, many its throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    connections: Vec<usize>,
    /// Seconds of DNS queries.
    #[arg(long, default_value_t = 5)]
    dns_duration: u64,
    /// DNS queries in flight at once, one UDP socket each.
    #[arg(long, default_value_t = 32)]
    dns_in_flight: usize,
    /// Skip the haproxy comparison.
    #[arg(long)]
    no_haproxy: bool,
    /// Skip the second cluster run in userspace proxy mode.
    #[arg(long)]
    no_userspace: bool,
}

/// Backend pods behind the Service, and behind haproxy.
const REPLICAS: usize = 3;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Serve { port }) => serve::run(port),
        None => run(&args.run),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &RunArgs) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("failed to find this program's path")?;
    let capstan = match &args.capstan {
        Some(path) => path.clone(),
        None => std::env::var_os("CAPSTAN_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| program.with_file_name("capstan")),
    };
    let capstan = std::fs::canonicalize(&capstan).with_context(|| {
        format!("capstan binary not found at {}; build it or pass --capstan", capstan.display())
    })?;
    // SAFETY: set before any other thread starts; the harness reads it to find capstan.
    unsafe { std::env::set_var("CAPSTAN_BIN", &capstan) };
    if !args.no_haproxy && !haproxy::installed() {
        anyhow::bail!("haproxy is not installed; install it (`apt-get install haproxy`) or pass --no-haproxy");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;

    let mut rows = Vec::new();
    let dns_figures;
    {
        let cluster = start_cluster("nftables");
        let workload = setup::deploy(&cluster, &program, REPLICAS);
        eprintln!("pods {:?}, ClusterIP {}", workload.pods, workload.cluster_ip);
        runtime.block_on(load::wait_until_answers(workload.cluster_ip, Duration::from_secs(30)))?;
        let haproxy = if args.no_haproxy { None } else { Some(haproxy::Haproxy::start(&workload.pods)?) };
        if let Some(haproxy) = &haproxy {
            runtime
                .block_on(load::wait_until_answers(haproxy.address, Duration::from_secs(10)))
                .with_context(|| format!("haproxy did not respond; its log:\n{}", haproxy.log()))?;
        }

        let mut targets = vec![
            ("direct, 1 pod", vec![workload.pods[0]]),
            (report::BASELINE, workload.pods.clone()),
            ("ClusterIP, nftables", vec![workload.cluster_ip]),
        ];
        if let Some(haproxy) = &haproxy {
            targets.push(("haproxy, 3 pods", vec![haproxy.address]));
        }
        rows.extend(measure_all(&runtime, args, "nftables", &targets)?);

        let server = SocketAddr::new(cluster.gateway().parse()?, 53);
        let name = format!("{}.default.svc.cluster.local", setup::NAME);
        eprintln!("DNS: {name} at {server}");
        dns_figures = runtime.block_on(dns::run(
            server,
            &name,
            args.dns_in_flight,
            Duration::from_secs(args.dns_duration),
        ))?;
    }

    if !args.no_userspace {
        let cluster = start_cluster("userspace");
        let workload = setup::deploy(&cluster, &program, REPLICAS);
        runtime.block_on(load::wait_until_answers(workload.cluster_ip, Duration::from_secs(30)))?;
        let targets = [(report::BASELINE, workload.pods.clone()), ("ClusterIP, userspace", vec![workload.cluster_ip])];
        rows.extend(measure_all(&runtime, args, "userspace", &targets)?);
    }

    println!("{}", report::http_table(&rows));
    println!("{}", report::dns_table(&dns_figures, args.dns_in_flight));
    println!("load average after the run: {}", load_average());
    Ok(())
}

fn start_cluster(proxy_mode: &str) -> Cluster {
    eprintln!("starting capstan up --proxy-mode {proxy_mode}");
    let options = ClusterOptions {
        extra_args: vec!["--proxy-mode".to_string(), proxy_mode.to_string()],
        ..ClusterOptions::default()
    };
    Cluster::start(options)
}

/// Measures every target in both modes and with every connection count. `run` names the
/// cluster run, so each row is compared with the direct figures of the same cluster.
fn measure_all(
    runtime: &tokio::runtime::Runtime,
    args: &RunArgs,
    run: &'static str,
    targets: &[(&'static str, Vec<SocketAddr>)],
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for mode in [Mode::KeepAlive, Mode::NewConnection] {
        for &connections in &args.connections {
            for (scenario, addresses) in targets {
                eprintln!("{run} run: {scenario}, {}, {connections} connections for {} s", mode.label(), args.duration);
                let load = Load {
                    targets: addresses.clone(),
                    connections,
                    duration: Duration::from_secs(args.duration),
                    mode,
                };
                let outcome = runtime.block_on(load::run(&load))?;
                eprintln!("  {}, {} errors", outcome.summary, outcome.errors);
                rows.push(Row { run, scenario, mode, connections, outcome });
            }
        }
    }
    Ok(rows)
}

/// Returns the first three fields of `/proc/loadavg`.
fn load_average() -> String {
    let text = std::fs::read_to_string(Path::new("/proc/loadavg")).unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
