//! The garbage collector and the namespace controller against a real API server.

mod common;

use std::time::Duration;

use capstan_scheduler::snapshot::fixtures;
use common::{eventually, start_server};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::{DeleteParams, PostParams};

const WAIT: Duration = Duration::from_secs(20);

fn replica_set(name: &str) -> ReplicaSet {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "host"}]}
            }
        }
    }))
    .expect("replica set JSON")
}

#[tokio::test]
async fn orphaned_pod_is_collected() {
    let server = start_server().await;
    let client = server.client.clone();
    tokio::spawn(capstan_controllers::gc::run_garbage_collector(client.clone()));
    let post = PostParams::default();
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // A pod owned by a ReplicaSet, and one whose owner uid matches nothing.
    let owner = sets.create(&post, &replica_set("web")).await.expect("create replica set");
    let owner_ref = |uid: &str| OwnerReference {
        api_version: "apps/v1".into(),
        kind: "ReplicaSet".into(),
        name: "web".into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut owned = fixtures::pod("web-a", "", "", "");
    owned.metadata.owner_references = Some(vec![owner_ref(owner.metadata.uid.as_deref().unwrap_or_default())]);
    pods.create(&post, &owned).await.expect("create owned pod");
    let mut stale = fixtures::pod("web-stale", "", "", "");
    stale.metadata.owner_references = Some(vec![owner_ref("00000000-0000-0000-0000-000000000000")]);
    pods.create(&post, &stale).await.expect("create pod with stale owner");

    // The pod whose owner uid matches nothing goes, even though an owner has its name.
    eventually("web-stale to be deleted", WAIT, || async { pods.get_opt("web-stale").await.ok()?.is_none().then_some(()) }).await;
    assert!(pods.get_opt("web-a").await.expect("get web-a").is_some(), "pod with a live owner was deleted");

    // Deleting the owner in the background deletes the dependent.
    sets.delete("web", &DeleteParams::background()).await.expect("delete replica set");
    eventually("web-a to be deleted", WAIT, || async { pods.get_opt("web-a").await.ok()?.is_none().then_some(()) }).await;
}

#[tokio::test]
async fn namespace_deletion_empties_it() {
    let server = start_server().await;
    let client = server.client.clone();
    tokio::spawn(capstan_controllers::namespace::run_namespace_controller(client.clone()));
    let post = PostParams::default();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta { name: Some("shop".into()), ..ObjectMeta::default() },
        ..Namespace::default()
    };
    namespaces.create(&post, &namespace).await.expect("create namespace");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "shop");
    let config = ConfigMap {
        metadata: ObjectMeta { name: Some("settings".into()), ..ObjectMeta::default() },
        ..ConfigMap::default()
    };
    config_maps.create(&post, &config).await.expect("create config map");

    namespaces.delete("shop", &DeleteParams::default()).await.expect("delete namespace");
    eventually("namespace shop to disappear", WAIT, || async {
        namespaces.get_opt("shop").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(config_maps.get_opt("settings").await.expect("get config map").is_none());
}
