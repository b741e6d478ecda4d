use capstan_api::resources::lookup_kind;

use super::*;

fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(block),
    }
}

fn object(kind: &str, name: &str, uid: &str, owners: Vec<OwnerReference>) -> ObjectNode {
    let group = if kind == "Pod" { "" } else { "apps" };
    ObjectNode {
        resource: lookup_kind(group, kind).unwrap(),
        namespace: Some("default".into()),
        name: name.into(),
        uid: uid.into(),
        resource_version: Some("1".into()),
        owners,
        finalizers: Vec::new(),
        deleting: false,
    }
}

fn deleting(mut node: ObjectNode, finalizer: &str) -> ObjectNode {
    node.deleting = true;
    node.finalizers = vec![finalizer.to_string()];
    node
}

#[test]
fn dependent_of_live_owner_stays() {
    let mut graph = Graph::default();
    graph.upsert(object("ReplicaSet", "web", "rs1", vec![]));
    graph.upsert(object("Pod", "web-a", "p1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]));
    assert_eq!(graph.plan("p1"), vec![]);
}

#[test]
fn owner_removal_marks_dependents_orphaned() {
    let mut graph = Graph::default();
    graph.upsert(object("ReplicaSet", "web", "rs1", vec![]));
    graph.upsert(object("Pod", "web-a", "p1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]));
    let dirty = graph.remove("rs1");
    assert!(dirty.contains(&"p1".to_string()));
    assert_eq!(graph.plan("p1"), vec![GcAction::DeleteIfOrphaned { uid: "p1".into() }]);
}

#[test]
fn owner_is_matched_by_uid_not_name() {
    let mut graph = Graph::default();
    // A new ReplicaSet with the old one's name does not adopt the old pods.
    graph.upsert(object("ReplicaSet", "web", "rs2", vec![]));
    graph.upsert(object("Pod", "web-a", "p1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]));
    assert_eq!(graph.plan("p1"), vec![GcAction::DeleteIfOrphaned { uid: "p1".into() }]);
}

#[test]
fn one_live_owner_keeps_dependent() {
    let mut graph = Graph::default();
    graph.upsert(object("ReplicaSet", "a", "rs1", vec![]));
    let owners = vec![owner_ref("ReplicaSet", "a", "rs1", false), owner_ref("ReplicaSet", "b", "rs-gone", false)];
    graph.upsert(object("Pod", "shared", "p1", owners));
    assert_eq!(graph.plan("p1"), vec![]);
}

#[test]
fn foreground_owner_waits_for_blocking_dependents() {
    let mut graph = Graph::default();
    graph.upsert(deleting(object("Deployment", "web", "d1", vec![]), FOREGROUND_FINALIZER));
    graph.upsert(object("ReplicaSet", "web-1", "rs1", vec![owner_ref("Deployment", "web", "d1", true)]));
    graph.upsert(object("ReplicaSet", "web-2", "rs2", vec![owner_ref("Deployment", "web", "d1", false)]));
    assert_eq!(
        graph.plan("d1"),
        vec![GcAction::DeleteDependent { uid: "rs1".into() }, GcAction::DeleteDependent { uid: "rs2".into() }]
    );

    // The non-blocking dependent does not hold the owner back.
    let dirty = graph.remove("rs1");
    assert!(dirty.contains(&"d1".to_string()));
    assert_eq!(
        graph.plan("d1"),
        vec![
            GcAction::DeleteDependent { uid: "rs2".into() },
            GcAction::RemoveFinalizer { uid: "d1".into(), finalizer: FOREGROUND_FINALIZER },
        ]
    );
}

#[test]
fn foreground_skips_dependents_already_deleting() {
    let mut graph = Graph::default();
    graph.upsert(deleting(object("Deployment", "web", "d1", vec![]), FOREGROUND_FINALIZER));
    let dependent = object("ReplicaSet", "web-1", "rs1", vec![owner_ref("Deployment", "web", "d1", true)]);
    graph.upsert(deleting(dependent, FOREGROUND_FINALIZER));
    assert_eq!(graph.plan("d1"), vec![]);
}

#[test]
fn orphan_owner_releases_dependents_then_itself() {
    let mut graph = Graph::default();
    graph.upsert(deleting(object("ReplicaSet", "web", "rs1", vec![]), ORPHAN_FINALIZER));
    graph.upsert(object("Pod", "web-a", "p1", vec![owner_ref("ReplicaSet", "web", "rs1", true)]));
    assert_eq!(
        graph.plan("rs1"),
        vec![
            GcAction::RemoveOwnerReference { uid: "p1".into(), owner_uid: "rs1".into() },
            GcAction::RemoveFinalizer { uid: "rs1".into(), finalizer: ORPHAN_FINALIZER },
        ]
    );
}

#[test]
fn relist_drops_objects_not_listed() {
    let mut graph = Graph::default();
    graph.upsert(object("ReplicaSet", "old", "rs1", vec![]));
    graph.upsert(object("Pod", "web-a", "p1", vec![owner_ref("ReplicaSet", "old", "rs1", true)]));
    let resource = lookup_kind("apps", "ReplicaSet").unwrap();
    let dirty = graph.replace_resource(resource, vec![object("ReplicaSet", "new", "rs2", vec![])]);
    assert!(graph.get("rs1").is_none());
    assert!(dirty.contains(&"p1".to_string()));
    assert_eq!(graph.len(), 2);
}
