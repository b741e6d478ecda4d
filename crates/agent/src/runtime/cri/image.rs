//! Image status and pulls through CRI's `ImageService`.
//!
//! The agent decides by the pull policy whether to pull (see `pod::start`); these calls
//! only ask containerd whether an image is present and pull it.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

use crate::runtime::RuntimeError;

/// Returns the image's identity when it is present: its registry digest
/// (`host/name@sha256:…`), or its id (`sha256:…`) for an image that came from an archive.
pub async fn status(images: &mut ImageServiceClient<Channel>, name: &str) -> Result<Option<String>, RuntimeError> {
    let spec = cri::ImageSpec { image: name.to_string(), ..Default::default() };
    let request = cri::ImageStatusRequest { image: Some(spec), verbose: false };
    let response = images.image_status(request).await.map_err(|status| pull_error(name, status.message()))?;
    Ok(response.into_inner().image.map(|image| image.repo_digests.first().cloned().unwrap_or(image.id)))
}

/// Pulls the image for a pod and returns the image id containerd gives it (`sha256:…`).
pub async fn pull(
    images: &mut ImageServiceClient<Channel>,
    name: &str,
    sandbox: &cri::PodSandboxConfig,
) -> Result<String, RuntimeError> {
    tracing::info!(image = %name, "pulling image");
    let spec = cri::ImageSpec { image: name.to_string(), ..Default::default() };
    let request = cri::PullImageRequest { image: Some(spec), auth: None, sandbox_config: Some(sandbox.clone()) };
    let pulled = images.pull_image(request).await.map_err(|status| pull_error(name, status.message()))?;
    Ok(pulled.into_inner().image_ref)
}

fn pull_error(image: &str, message: &str) -> RuntimeError {
    RuntimeError::ImagePull {
        reason: "ErrImagePull".to_string(),
        message: format!("failed to pull image \"{image}\": {message}"),
    }
}
