//! Pod volumes as host directories, and a container's `volumeMounts` resolved to them.
//!
//! Each volume gets `<data-dir>/pods/<uid>/volumes/<name>`, except `hostPath`, which is
//! the host path itself. `configMap`, `secret` and `downwardAPI` volumes are written as
//! files there before every container start, so a restarted container sees current data.
//! The CRI runtime bind-mounts these paths into the container; the process runtime
//! shares the host's file system and does not apply mounts.
//!
//! NOTE: `emptyDir` with `medium: Memory` is a plain directory (no tmpfs), and
//! `sizeLimit` is not enforced.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeSource, HostPathVolumeSource, KeyToPath, Pod, Volume,
};

use super::env::{EnvContext, EnvError, field_value};
use crate::api::PodApi;
use crate::runtime::Mount;

/// Default file mode of projected files (`defaultMode`), as in Kubernetes.
const DEFAULT_FILE_MODE: u32 = 0o644;

/// A volume could not be prepared or mounted. The message is shown in the container's
/// `CreateContainerConfigError` waiting state.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("volumeMount {mount:?} names no volume of the pod")]
    UnknownVolume { mount: String },
    #[error("volume {volume:?} has a source this node does not support (use emptyDir, hostPath, configMap, secret or downwardAPI)")]
    UnsupportedSource { volume: String },
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType { path: String, expected: String },
    #[error("invalid path {path:?} in volume {volume:?}: it must be relative and must not contain '..'")]
    InvalidPath { volume: String, path: String },
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in {kind} {name} for volume {volume:?}")]
    KeyNotFound { kind: &'static str, name: String, key: String, volume: String },
    #[error("failed to prepare volume {volume:?} at {path}: {source}")]
    Io {
        volume: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Env(#[from] EnvError),
}

/// Returns the directory that contains the pod's volumes.
pub fn volumes_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes")
}

/// Prepares every volume that `container` mounts and returns its mounts.
pub async fn container_mounts(
    api: &dyn PodApi,
    context: &EnvContext<'_>,
    pod_dir: &Path,
    container: &Container,
) -> Result<Vec<Mount>, VolumeError> {
    let volumes: BTreeMap<&str, &Volume> = context
        .pod
        .spec
        .as_ref()
        .and_then(|spec| spec.volumes.as_ref())
        .map(|list| list.iter().map(|v| (v.name.as_str(), v)).collect())
        .unwrap_or_default();
    let mut mounts = Vec::new();
    for volume_mount in container.volume_mounts.as_deref().unwrap_or_default() {
        let Some(volume) = volumes.get(volume_mount.name.as_str()) else {
            return Err(VolumeError::UnknownVolume { mount: volume_mount.name.clone() });
        };
        let mut host_path = prepare(api, context, pod_dir, volume).await?;
        if let Some(sub_path) = volume_mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            host_path = host_path.join(relative(&volume.name, sub_path)?);
            create_dir(&volume.name, &host_path)?;
        }
        mounts.push(Mount {
            host_path,
            container_path: PathBuf::from(&volume_mount.mount_path),
            read_only: volume_mount.read_only.unwrap_or(false),
        });
    }
    Ok(mounts)
}

/// Makes one volume present on the host and returns its path.
async fn prepare(
    api: &dyn PodApi,
    context: &EnvContext<'_>,
    pod_dir: &Path,
    volume: &Volume,
) -> Result<PathBuf, VolumeError> {
    if let Some(source) = &volume.host_path {
        return host_path(&volume.name, source);
    }
    let dir = volumes_dir(pod_dir).join(&volume.name);
    create_dir(&volume.name, &dir)?;
    let namespace = context.pod.metadata.namespace.as_deref().unwrap_or("default");
    if volume.empty_dir.is_some() {
        return Ok(dir);
    }
    if let Some(source) = &volume.config_map {
        let files = match api.config_map(namespace, &source.name).await.map_err(EnvError::from)? {
            Some(config_map) => {
                let mut files: BTreeMap<String, Vec<u8>> =
                    config_map.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                files.extend(config_map.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                files
            }
            None if source.optional == Some(true) => BTreeMap::new(),
            None => return Err(VolumeError::ConfigMapNotFound { name: source.name.clone() }),
        };
        let selected = select(&volume.name, "ConfigMap", &source.name, files, source.items.as_deref(), source.optional)?;
        write_files(&volume.name, &dir, &selected, source.default_mode)?;
        return Ok(dir);
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let files = match api.secret(namespace, &name).await.map_err(EnvError::from)? {
            Some(secret) => {
                let mut files: BTreeMap<String, Vec<u8>> =
                    secret.string_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
                files.extend(secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
                files
            }
            None if source.optional == Some(true) => BTreeMap::new(),
            None => return Err(VolumeError::SecretNotFound { name }),
        };
        let selected = select(&volume.name, "Secret", &name, files, source.items.as_deref(), source.optional)?;
        write_files(&volume.name, &dir, &selected, source.default_mode)?;
        return Ok(dir);
    }
    if let Some(source) = &volume.downward_api {
        let files = downward_files(&volume.name, context, source)?;
        write_files(&volume.name, &dir, &files, source.default_mode)?;
        return Ok(dir);
    }
    Err(VolumeError::UnsupportedSource { volume: volume.name.clone() })
}

/// Checks or creates a hostPath by its `type`, as kubelet does.
fn host_path(volume: &str, source: &HostPathVolumeSource) -> Result<PathBuf, VolumeError> {
    let path = PathBuf::from(&source.path);
    let mismatch = |expected: &str| VolumeError::HostPathType { path: source.path.clone(), expected: expected.to_string() };
    match source.type_.as_deref().unwrap_or_default() {
        "" => {}
        "DirectoryOrCreate" => create_dir(volume, &path)?,
        "Directory" if !path.is_dir() => return Err(mismatch("directory")),
        "FileOrCreate" if !path.exists() => {
            if let Some(parent) = path.parent() {
                create_dir(volume, parent)?;
            }
            std::fs::write(&path, b"").map_err(|source| VolumeError::Io { volume: volume.to_string(), path: path.clone(), source })?;
        }
        "File" if !path.is_file() => return Err(mismatch("file")),
        "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => return Err(mismatch(source.type_.as_deref().unwrap_or_default())),
        _ => {}
    }
    Ok(path)
}

/// The files to project: every key, or only `items` renamed to their paths. A missing
/// key in `items` is an error unless the source is optional.
fn select(
    volume: &str,
    kind: &'static str,
    name: &str,
    mut files: BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>, Option<i32>)>, VolumeError> {
    let Some(items) = items else {
        return Ok(files.into_iter().map(|(key, data)| (key, data, None)).collect());
    };
    let mut selected = Vec::new();
    for item in items {
        match files.remove(&item.key) {
            Some(data) => selected.push((item.path.clone(), data, item.mode)),
            None if optional == Some(true) => {}
            None => {
                return Err(VolumeError::KeyNotFound {
                    kind,
                    name: name.to_string(),
                    key: item.key.clone(),
                    volume: volume.to_string(),
                });
            }
        }
    }
    Ok(selected)
}

fn downward_files(
    volume: &str,
    context: &EnvContext<'_>,
    source: &DownwardAPIVolumeSource,
) -> Result<Vec<(String, Vec<u8>, Option<i32>)>, VolumeError> {
    let mut files = Vec::new();
    for item in source.items.as_deref().unwrap_or_default() {
        let value = match &item.field_ref {
            Some(selector) if selector.field_path == "metadata.labels" || selector.field_path == "metadata.annotations" => {
                let map = if selector.field_path == "metadata.labels" {
                    context.pod.metadata.labels.clone()
                } else {
                    context.pod.metadata.annotations.clone()
                };
                map.unwrap_or_default().iter().map(|(k, v)| format!("{k}={v:?}\n")).collect::<String>()
            }
            Some(selector) => field_value(context, selector)?,
            None => {
                return Err(VolumeError::UnsupportedSource { volume: volume.to_string() });
            }
        };
        files.push((item.path.clone(), value.into_bytes(), item.mode));
    }
    Ok(files)
}

/// Writes each file atomically (temporary file, then rename) and removes files that are
/// no longer projected.
fn write_files(
    volume: &str,
    dir: &Path,
    files: &[(String, Vec<u8>, Option<i32>)],
    default_mode: Option<i32>,
) -> Result<(), VolumeError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| VolumeError::Io { volume: volume.to_string(), path, source }
    };
    let mut wanted = Vec::new();
    for (name, data, mode) in files {
        let relative_path = relative(volume, name)?;
        let path = dir.join(&relative_path);
        if let Some(parent) = path.parent() {
            create_dir(volume, parent)?;
        }
        let staging = path.with_file_name(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
        std::fs::write(&staging, data).map_err(io(&staging))?;
        let mode = mode.or(default_mode).map(|m| m as u32 & 0o777).unwrap_or(DEFAULT_FILE_MODE);
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(mode)).map_err(io(&staging))?;
        std::fs::rename(&staging, &path).map_err(io(&path))?;
        wanted.push(relative_path);
    }
    // top-level entries that no key names any more (a key removed from the ConfigMap)
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries.flatten() {
        let name = PathBuf::from(entry.file_name());
        let kept = wanted.iter().any(|w| w.components().next() == name.components().next());
        if !kept {
            let path = entry.path();
            let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        }
    }
    Ok(())
}

/// Checks that `path` stays inside the volume.
fn relative(volume: &str, path: &str) -> Result<PathBuf, VolumeError> {
    let candidate = PathBuf::from(path);
    let inside = !path.is_empty() && candidate.components().all(|c| matches!(c, Component::Normal(_)));
    if inside {
        Ok(candidate)
    } else {
        Err(VolumeError::InvalidPath { volume: volume.to_string(), path: path.to_string() })
    }
}

fn create_dir(volume: &str, path: &Path) -> Result<(), VolumeError> {
    std::fs::create_dir_all(path).map_err(|source| VolumeError::Io { volume: volume.to_string(), path: path.to_path_buf(), source })
}

/// Removes the pod's volume directories (not hostPaths, which live elsewhere).
pub fn remove_pod_volumes(pod_dir: &Path) {
    let dir = volumes_dir(pod_dir);
    if let Err(error) = std::fs::remove_dir_all(&dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), %error, "failed to remove the pod's volumes");
    }
}

/// Returns the pod's data directory, `<data-dir>/pods/<uid>`.
pub fn pod_dir(data_dir: &Path, pod: &Pod) -> PathBuf {
    data_dir.join("pods").join(pod.metadata.uid.as_deref().unwrap_or_default())
}

#[cfg(test)]
#[path = "volumes_tests.rs"]
mod tests;
