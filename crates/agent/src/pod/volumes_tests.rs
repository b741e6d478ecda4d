use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    EmptyDirVolumeSource, HostPathVolumeSource, ObjectFieldSelector, PodSpec, Secret,
    SecretVolumeSource, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::api::RecordingPodApi;

fn pod(volumes: Vec<Volume>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec { volumes: Some(volumes), ..Default::default() }),
        status: None,
    }
}

fn context(pod: &Pod) -> EnvContext<'_> {
    EnvContext {
        pod,
        node_name: "node1",
        host_ip: "192.0.2.1",
        pod_ip: Some("10.245.0.2"),
        node_cpu_millis: 2000,
        node_memory_bytes: 1 << 30,
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.into(), mount_path: path.into(), ..Default::default() }
}

fn container(mounts: Vec<VolumeMount>) -> Container {
    Container { name: "app".into(), volume_mounts: Some(mounts), ..Default::default() }
}

#[tokio::test]
async fn empty_dir_is_shared_by_name_under_the_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pod = pod(vec![Volume { name: "scratch".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }]);
    let api = RecordingPodApi::new();
    let writer = container(vec![mount("scratch", "/out")]);
    let mut reader_mount = mount("scratch", "/in");
    reader_mount.read_only = Some(true);
    let reader = container(vec![reader_mount]);

    let first = container_mounts(&api, &context(&pod), dir.path(), &writer).await.expect("mounts");
    let second = container_mounts(&api, &context(&pod), dir.path(), &reader).await.expect("mounts");

    assert_eq!(first[0].host_path, dir.path().join("volumes/scratch"));
    assert_eq!(first[0].host_path, second[0].host_path);
    assert!(first[0].host_path.is_dir());
    assert!(!first[0].read_only);
    assert!(second[0].read_only);
    assert_eq!(second[0].container_path, PathBuf::from("/in"));
}

#[tokio::test]
async fn config_map_and_secret_keys_become_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = RecordingPodApi::new();
    api.insert_config_map(
        "default",
        ConfigMap {
            metadata: ObjectMeta { name: Some("settings".into()), ..Default::default() },
            data: Some(BTreeMap::from([("mode".to_string(), "fast".to_string()), ("level".to_string(), "3".to_string())])),
            ..Default::default()
        },
    );
    api.insert_secret(
        "default",
        Secret {
            metadata: ObjectMeta { name: Some("token".into()), ..Default::default() },
            data: Some(BTreeMap::from([("password".to_string(), ByteString(b"s3cret".to_vec()))])),
            ..Default::default()
        },
    );
    let pod = pod(vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "settings".into(),
                items: Some(vec![KeyToPath { key: "mode".into(), path: "conf/mode.txt".into(), mode: None }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some("token".into()),
                default_mode: Some(0o400),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]);
    let app = container(vec![mount("config", "/etc/app"), mount("creds", "/run/creds")]);

    let mounts = container_mounts(&api, &context(&pod), dir.path(), &app).await.expect("mounts");

    let mode = std::fs::read_to_string(mounts[0].host_path.join("conf/mode.txt")).expect("projected key");
    assert_eq!(mode, "fast");
    assert!(!mounts[0].host_path.join("level").exists(), "only listed items are projected");
    let password = mounts[1].host_path.join("password");
    assert_eq!(std::fs::read(&password).expect("secret file"), b"s3cret");
    let permissions = std::fs::metadata(&password).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(permissions, 0o400);
}

#[tokio::test]
async fn missing_config_map_is_an_error_unless_optional() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = RecordingPodApi::new();
    let source = ConfigMapVolumeSource { name: "absent".into(), ..Default::default() };
    let required = pod(vec![Volume { name: "config".into(), config_map: Some(source.clone()), ..Default::default() }]);
    let app = container(vec![mount("config", "/etc/app")]);

    let error = container_mounts(&api, &context(&required), dir.path(), &app).await.expect_err("missing");
    assert_eq!(error.to_string(), "configmap \"absent\" not found");

    let optional_source = ConfigMapVolumeSource { optional: Some(true), ..source };
    let optional = pod(vec![Volume { name: "config".into(), config_map: Some(optional_source), ..Default::default() }]);
    let mounts = container_mounts(&api, &context(&optional), dir.path(), &app).await.expect("optional");
    assert!(mounts[0].host_path.is_dir());
}

#[tokio::test]
async fn host_path_types_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = RecordingPodApi::new();
    let created = dir.path().join("made/here");
    let volume = |name: &str, path: &Path, kind: &str| Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.display().to_string(), type_: Some(kind.into()) }),
        ..Default::default()
    };
    let pod = pod(vec![volume("made", &created, "DirectoryOrCreate"), volume("absent", &dir.path().join("nope"), "Directory")]);

    let mounts = container_mounts(&api, &context(&pod), dir.path(), &container(vec![mount("made", "/data")]))
        .await
        .expect("created");
    assert_eq!(mounts[0].host_path, created);
    assert!(created.is_dir());

    let error = container_mounts(&api, &context(&pod), dir.path(), &container(vec![mount("absent", "/data")]))
        .await
        .expect_err("not a directory");
    assert!(matches!(error, VolumeError::HostPathType { .. }), "{error}");
}

#[tokio::test]
async fn downward_api_files_and_bad_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let api = RecordingPodApi::new();
    let file = |path: &str, field: &str| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector { field_path: field.into(), api_version: None }),
        ..Default::default()
    };
    let source = DownwardAPIVolumeSource {
        items: Some(vec![file("name", "metadata.name"), file("labels", "metadata.labels")]),
        ..Default::default()
    };
    let pod = pod(vec![Volume { name: "info".into(), downward_api: Some(source), ..Default::default() }]);
    let mounts = container_mounts(&api, &context(&pod), dir.path(), &container(vec![mount("info", "/etc/podinfo")]))
        .await
        .expect("downward API");
    assert_eq!(std::fs::read_to_string(mounts[0].host_path.join("name")).expect("name"), "web");
    assert_eq!(std::fs::read_to_string(mounts[0].host_path.join("labels")).expect("labels"), "app=\"web\"\n");

    let mut escaping = mount("info", "/etc/podinfo");
    escaping.sub_path = Some("../../etc".into());
    let error = container_mounts(&api, &context(&pod), dir.path(), &container(vec![escaping]))
        .await
        .expect_err("sub path leaves the volume");
    assert!(matches!(error, VolumeError::InvalidPath { .. }), "{error}");

    let error = container_mounts(&api, &context(&pod), dir.path(), &container(vec![mount("missing", "/x")]))
        .await
        .expect_err("unknown volume");
    assert!(error.to_string().contains("\"missing\""), "{error}");
}
