//! `capstan image load`: imports an image archive into the node's containerd, for nodes
//! without a registry.

use std::path::PathBuf;

use anyhow::Context;

use crate::{containerd, runtimes, up};

#[derive(clap::Subcommand)]
pub enum ImageCommand {
    /// Import a docker-archive (`docker save`) or OCI image layout archive into the
    /// containerd of `capstan up --runtime cri`, where CRI pods find it.
    Load {
        /// The archive to import.
        #[arg(short = 'i', long = "input")]
        input: PathBuf,
        /// Data directory of the cluster whose containerd receives the image.
        #[arg(long, env = "CAPSTAN_DATA_DIR", default_value_os_t = up::default_data_dir())]
        data_dir: PathBuf,
        /// containerd socket to import into, instead of the one under the data directory.
        #[arg(long)]
        containerd_socket: Option<PathBuf>,
    },
}

pub async fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Load { input, data_dir, containerd_socket } => {
            let socket = containerd_socket.unwrap_or_else(|| runtimes::containerd_socket(&data_dir));
            if !input.is_file() {
                anyhow::bail!("image archive {} not found", input.display());
            }
            if tokio::net::UnixStream::connect(&socket).await.is_err() {
                anyhow::bail!(
                    "no containerd is listening on {}: start `capstan up --runtime cri --data-dir {}` first, \
                     or put the archive into {} to import it at the next start",
                    socket.display(),
                    data_dir.display(),
                    runtimes::images_dir(&data_dir).display()
                );
            }
            let output = containerd::import_image(&socket, &input)
                .await
                .with_context(|| format!("failed to load {}", input.display()))?;
            print!("{output}");
            Ok(())
        }
    }
}
