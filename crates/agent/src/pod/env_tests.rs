use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, PodSpec,
    ResourceRequirements, Secret, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::api::RecordingPodApi;

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-abc".into()),
            namespace: Some("default".into()),
            uid: Some("uid-1".into()),
            labels: Some(BTreeMap::from([("app".into(), "web".into())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec::default()),
        status: None,
    }
}

fn context(pod: &Pod) -> EnvContext<'_> {
    EnvContext {
        pod,
        node_name: "node-1",
        host_ip: "192.0.2.10",
        pod_ip: Some("10.88.0.5"),
        node_cpu_millis: 4000,
        node_memory_bytes: 8 << 30,
    }
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(source),
    }
}

fn lookup(name: &str) -> Option<String> {
    match name {
        "A" => Some("alpha".into()),
        "B" => Some("beta".into()),
        _ => None,
    }
}

#[test]
fn expand_cases() {
    let cases = [
        ("$(A)", "alpha"),
        ("x-$(A)-$(B)", "x-alpha-beta"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("cost $5", "cost $5"),
        ("$(A", "$(A"),
        ("end$", "end$"),
        ("ü$(A)ü", "üalphaü"),
    ];
    for (input, expected) in cases {
        assert_eq!(expand(input, lookup), expected, "input {input:?}");
    }
}

#[tokio::test]
async fn env_expands_earlier_variables() {
    let api = RecordingPodApi::new();
    let pod = pod();
    let container = Container {
        name: "web".into(),
        env: Some(vec![
            literal("A", "one"),
            literal("B", "$(A)-two"),
            literal("C", "$(D)"),
        ]),
        command: Some(vec!["echo".into(), "$(B)".into()]),
        args: Some(vec!["$$(A)".into()]),
        ..Container::default()
    };
    let env = resolve_env(&api, &context(&pod), &container)
        .await
        .expect("env resolves");
    assert_eq!(env[1], ("B".to_string(), "one-two".to_string()));
    assert_eq!(env[2], ("C".to_string(), "$(D)".to_string()));
    assert_eq!(
        command_line(&container, &env),
        vec!["echo", "one-two", "$(A)"]
    );
}

#[tokio::test]
async fn env_reads_config_map_and_secret() {
    let api = RecordingPodApi::new();
    api.insert_config_map(
        "default",
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("settings".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                ("mode".into(), "fast".into()),
                ("level".into(), "3".into()),
            ])),
            ..ConfigMap::default()
        },
    );
    api.insert_secret(
        "default",
        Secret {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(b"hunter2".to_vec()),
            )])),
            ..Secret::default()
        },
    );
    let pod = pod();
    let container = Container {
        name: "web".into(),
        env_from: Some(vec![EnvFromSource {
            prefix: Some("CFG_".into()),
            config_map_ref: Some(ConfigMapEnvSource {
                name: "settings".into(),
                optional: None,
            }),
            secret_ref: None,
        }]),
        env: Some(vec![
            from(
                "PASSWORD",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..EnvVarSource::default()
                },
            ),
            literal("CFG_mode", "override"),
        ]),
        ..Container::default()
    };
    let env = resolve_env(&api, &context(&pod), &container)
        .await
        .expect("env resolves");
    let map: BTreeMap<_, _> = env.into_iter().collect();
    assert_eq!(map["CFG_level"], "3");
    assert_eq!(map["CFG_mode"], "override");
    assert_eq!(map["PASSWORD"], "hunter2");
}

#[tokio::test]
async fn missing_config_map_is_config_error() {
    let api = RecordingPodApi::new();
    let pod = pod();
    let selector = |optional| EnvVarSource {
        config_map_key_ref: Some(ConfigMapKeySelector {
            name: "x".into(),
            key: "k".into(),
            optional,
        }),
        ..EnvVarSource::default()
    };
    let required = Container {
        env: Some(vec![from("V", selector(None))]),
        ..Container::default()
    };
    let error = resolve_env(&api, &context(&pod), &required)
        .await
        .expect_err("configmap missing");
    assert_eq!(error.to_string(), "configmap \"x\" not found");

    let optional = Container {
        env: Some(vec![from("V", selector(Some(true)))]),
        ..Container::default()
    };
    let env = resolve_env(&api, &context(&pod), &optional)
        .await
        .expect("optional source");
    assert!(env.is_empty());
}

#[tokio::test]
async fn missing_secret_key_is_config_error() {
    let api = RecordingPodApi::new();
    api.insert_secret(
        "default",
        Secret {
            metadata: ObjectMeta {
                name: Some("creds".into()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        },
    );
    let pod = pod();
    let container = Container {
        env: Some(vec![from(
            "V",
            EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "token".into(),
                    optional: None,
                }),
                ..EnvVarSource::default()
            },
        )]),
        ..Container::default()
    };
    let error = resolve_env(&api, &context(&pod), &container)
        .await
        .expect_err("key missing");
    assert_eq!(
        error.to_string(),
        "couldn't find key token in Secret default/creds"
    );
}

#[test]
fn downward_fields() {
    let pod = pod();
    let context = context(&pod);
    let cases = [
        ("metadata.name", "web-abc"),
        ("metadata.namespace", "default"),
        ("metadata.uid", "uid-1"),
        ("metadata.labels['app']", "web"),
        ("metadata.annotations['none']", ""),
        ("spec.nodeName", "node-1"),
        ("spec.serviceAccountName", "default"),
        ("status.hostIP", "192.0.2.10"),
        ("status.podIP", "10.88.0.5"),
    ];
    for (path, expected) in cases {
        let selector = ObjectFieldSelector {
            field_path: path.into(),
            api_version: None,
        };
        assert_eq!(
            field_value(&context, &selector).expect(path),
            expected,
            "path {path}"
        );
    }
    let unknown = ObjectFieldSelector {
        field_path: "spec.bogus".into(),
        api_version: None,
    };
    assert!(field_value(&context, &unknown).is_err());
}

#[tokio::test]
async fn resource_fields_round_up() {
    let api = RecordingPodApi::new();
    let pod = pod();
    let reference = |resource: &str, divisor: Option<&str>| {
        from(
            resource,
            EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    container_name: None,
                    resource: resource.into(),
                    divisor: divisor.map(|d| Quantity(d.into())),
                }),
                ..EnvVarSource::default()
            },
        )
    };
    let container = Container {
        resources: Some(ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
            requests: Some(BTreeMap::from([("cpu".into(), Quantity("250m".into()))])),
            ..ResourceRequirements::default()
        }),
        env: Some(vec![
            reference("limits.memory", Some("1Mi")),
            reference("requests.cpu", None),
            reference("limits.cpu", Some("1m")),
        ]),
        ..Container::default()
    };
    let env = resolve_env(&api, &context(&pod), &container)
        .await
        .expect("env resolves");
    let map: BTreeMap<_, _> = env.into_iter().collect();
    assert_eq!(map["limits.memory"], "64");
    assert_eq!(map["requests.cpu"], "1");
    assert_eq!(map["limits.cpu"], "4000");
}

fn service(namespace: &str, name: &str, cluster_ip: &str, port: i32) -> k8s_openapi::api::core::v1::Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": cluster_ip, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }))
    .expect("test Service is valid")
}

#[tokio::test]
async fn service_variables_precede_env() {
    let api = RecordingPodApi::new();
    api.insert_service(service("default", "kubernetes", "10.96.0.1", 443));
    api.insert_service(service("default", "web", "10.96.0.7", 80));
    api.insert_service(service("other", "db", "10.96.0.8", 5432));
    let pod = pod();
    let container = Container {
        name: "web".into(),
        env: Some(vec![
            literal("URL", "http://$(WEB_SERVICE_HOST):$(WEB_SERVICE_PORT)/"),
            literal("WEB_SERVICE_PORT", "8080"),
        ]),
        ..Container::default()
    };
    let env = resolve_env(&api, &context(&pod), &container).await.expect("env resolves");
    let value = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(value("KUBERNETES_SERVICE_HOST").as_deref(), Some("10.96.0.1"));
    assert_eq!(value("WEB_PORT_80_TCP_ADDR").as_deref(), Some("10.96.0.7"));
    assert_eq!(value("URL").as_deref(), Some("http://10.96.0.7:80/"), "env may refer to service variables");
    assert_eq!(value("WEB_SERVICE_PORT").as_deref(), Some("8080"), "env replaces a service variable");
    assert_eq!(value("DB_SERVICE_HOST"), None, "other namespaces stay hidden");
}

#[tokio::test]
async fn service_links_disabled_keep_master_service() {
    let api = RecordingPodApi::new();
    api.insert_service(service("default", "kubernetes", "10.96.0.1", 443));
    api.insert_service(service("default", "web", "10.96.0.7", 80));
    let mut pod = pod();
    pod.spec.as_mut().expect("spec").enable_service_links = Some(false);
    let container = Container { name: "web".into(), ..Container::default() };
    let env = resolve_env(&api, &context(&pod), &container).await.expect("env resolves");
    let names: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"KUBERNETES_SERVICE_HOST"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("WEB_")), "{names:?}");
}
