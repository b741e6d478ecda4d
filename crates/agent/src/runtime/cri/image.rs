//! Image status and pulls through CRI's `ImageService`.
//!
//! The agent decides by the pull policy whether to pull (see `pod::start`); these calls
//! only ask containerd whether an image is present and pull it.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

use crate::runtime::RuntimeError;
use crate::runtime::reference::repository;

/// Returns the image's identity when it is present: the digest it has in the registry
/// that `name` names (`host/name@sha256:…`), or its id (`sha256:…`) when it has none
/// there, as for an image loaded from an archive.
pub async fn status(images: &mut ImageServiceClient<Channel>, name: &str) -> Result<Option<String>, RuntimeError> {
    let spec = cri::ImageSpec { image: name.to_string(), ..Default::default() };
    let request = cri::ImageStatusRequest { image: Some(spec), verbose: false };
    let response = images.image_status(request).await.map_err(|status| pull_error(name, status.message()))?;
    Ok(response.into_inner().image.map(|image| identity(name, &image.repo_digests, &image.id)))
}

/// Picks the repo digest of `name`'s repository, or else the image id. An image with the
/// same content in two registries has a repo digest for each.
pub fn identity(name: &str, repo_digests: &[String], id: &str) -> String {
    let expected = repository(name);
    let matching = repo_digests.iter().find(|digest| digest.split('@').next().map(repository) == Some(expected.clone()));
    matching.cloned().unwrap_or_else(|| id.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_prefers_the_named_registry() {
        let digests = vec![
            "10.0.0.1:5000/far/busybox@sha256:aa".to_string(),
            "127.0.0.1:5931/team/busybox@sha256:aa".to_string(),
        ];
        assert_eq!(identity("127.0.0.1:5931/team/busybox:v1", &digests, "sha256:id"), "127.0.0.1:5931/team/busybox@sha256:aa");
        assert_eq!(identity("busybox:local", &digests, "sha256:id"), "sha256:id");
    }
}
