//! The scheduler against a real API server: binding, FailedScheduling reports and retry
//! when a node is added.

mod common;

use std::time::Duration;

use capstan_scheduler::SchedulerConfig;
use capstan_scheduler::snapshot::fixtures;
use common::{eventually, start_server};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};

const WAIT: Duration = Duration::from_secs(20);

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    let pod = pods.get(name).await.ok()?;
    pod.spec?.node_name.filter(|node| !node.is_empty())
}

#[tokio::test]
async fn scheduler_binds_and_reports() {
    let server = start_server().await;
    let client = server.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let post = PostParams::default();
    nodes.create(&post, &fixtures::node("small", "1", "2Gi", "10")).await.expect("create node small");
    nodes.create(&post, &fixtures::node("big", "4", "8Gi", "10")).await.expect("create node big");
    tokio::spawn(capstan_scheduler::run(client.clone(), SchedulerConfig::default()));

    // A pod that fits only the big node lands there.
    pods.create(&post, &fixtures::pod("fits", "", "2", "1Gi")).await.expect("create pod fits");
    let node = eventually("pod fits to be bound", WAIT, || node_of(&pods, "fits")).await;
    assert_eq!(node, "big");

    // A pod too large for every node stays pending and says why.
    pods.create(&post, &fixtures::pod("huge", "", "8", "")).await.expect("create pod huge");
    let expected = "0/2 nodes are available: 2 Insufficient cpu. preemption: not eligible.";
    let condition = eventually("PodScheduled=False on huge", WAIT, || async {
        let pod = pods.get("huge").await.ok()?;
        let conditions = pod.status?.conditions?;
        conditions.into_iter().find(|c| c.type_ == "PodScheduled" && c.status == "False")
    })
    .await;
    assert_eq!(condition.reason.as_deref(), Some("Unschedulable"));
    assert_eq!(condition.message.as_deref(), Some(expected));
    let event = eventually("FailedScheduling event for huge", WAIT, || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|event| {
            event.reason.as_deref() == Some("FailedScheduling")
                && event.involved_object.name.as_deref() == Some("huge")
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.message.as_deref(), Some(expected));
    assert_eq!(node_of(&pods, "huge").await, None);

    // A new node large enough makes the pending pod fit.
    nodes.create(&post, &fixtures::node("huge-node", "16", "32Gi", "10")).await.expect("create node huge-node");
    let node = eventually("pod huge to be bound after a node joined", WAIT, || node_of(&pods, "huge")).await;
    assert_eq!(node, "huge-node");
}
