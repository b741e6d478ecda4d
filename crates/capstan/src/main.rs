//! The `capstan` binary: every role of the cluster in one program.
//!
//! `up` runs a whole one-node cluster (API server, scheduler, controllers and a node agent)
//! in this process; `kubeconfig` prints where `up` wrote the administrator's kubeconfig;
//! `shim` is the per-container supervisor that the process runtime starts.

mod containerd;
mod image;
mod kubeconfig;
mod node;
mod runtimes;
mod up;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "capstan", version, about = "A container orchestrator in one binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a one-node cluster (API server, scheduler, controllers and node agent) on the
    /// embedded store and the process runtime (and containerd with `--runtime cri`), and
    /// run the example web service.
    Up(up::UpArgs),
    /// Manage the container images of the node's containerd.
    Image {
        #[command(subcommand)]
        command: image::ImageCommand,
    },
    /// Print the path of the administrator kubeconfig written by `capstan up`.
    Kubeconfig {
        /// Data directory of the cluster.
        #[arg(long, env = "CAPSTAN_DATA_DIR", default_value_os_t = up::default_data_dir())]
        data_dir: PathBuf,
    },
    /// Supervise one container of the process runtime (started by the agent, not by users).
    #[command(hide = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Shim { args } => capstan_agent::runtime::process::shim_main(args),
        Command::Kubeconfig { data_dir } => print_kubeconfig(&data_dir),
        Command::Up(args) => run_async(up::run(args)),
        Command::Image { command } => run_async(image::run(command)),
    };
    std::process::exit(code);
}

fn print_kubeconfig(data_dir: &std::path::Path) -> i32 {
    let path = data_dir.join(kubeconfig::ADMIN_KUBECONFIG);
    if path.exists() {
        println!("{}", path.display());
        0
    } else {
        eprintln!(
            "error: no kubeconfig at {}: start the cluster with `capstan up --data-dir {}` first",
            path.display(),
            data_dir.display()
        );
        1
    }
}

fn run_async(future: impl std::future::Future<Output = anyhow::Result<()>>) -> i32 {
    init_tracing();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(future) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error:#}");
            1
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,hyper=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
