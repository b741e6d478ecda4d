//! Making a container's image present before `CreateContainer`, per its pull policy.
//!
//! An image that is already present is used as is, also under the policy `Always`:
//! capstan nodes usually have no registry to ask (images come from `capstan image load`),
//! and kubelet's `Always` pull of a present image only re-checks its digest. An absent
//! image is pulled through CRI `PullImage` unless the policy is `Never`.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use tonic::transport::Channel;

use crate::runtime::{ContainerConfig, PullPolicy, RuntimeError};

/// Returns the image reference to create the container from (the image id).
pub async fn ensure_image(
    images: &mut ImageServiceClient<Channel>,
    config: &ContainerConfig,
    sandbox: &cri::PodSandboxConfig,
) -> Result<String, RuntimeError> {
    let name = config.image.trim();
    if name.is_empty() {
        return Err(RuntimeError::ImagePull {
            reason: "InvalidImageName".to_string(),
            message: format!("container {} has no image", config.name),
        });
    }
    let spec = cri::ImageSpec { image: name.to_string(), ..Default::default() };
    let request = cri::ImageStatusRequest { image: Some(spec.clone()), verbose: false };
    let present = images
        .image_status(request)
        .await
        .map_err(|status| pull_error(name, status.message()))?
        .into_inner()
        .image;
    if let Some(image) = present {
        return Ok(image.id);
    }
    if config.image_pull_policy == PullPolicy::Never {
        return Err(RuntimeError::ImagePull {
            reason: "ErrImageNeverPull".to_string(),
            message: format!("Container image \"{name}\" is not present with pull policy of Never"),
        });
    }
    tracing::info!(image = %name, container.name = %config.name, "pulling image");
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
