//! The strategic merge table: which list fields merge by which key, and which structs drop
//! the keys that a patch does not list.
//!
//! The entries mirror the `patchStrategy` and `patchMergeKey` struct tags of the upstream Go
//! types (k8s.io/api core/v1 and apps/v1, apimachinery meta/v1). The strategic merge engine
//! walks objects with it, and the OpenAPI generator turns it into the
//! `x-kubernetes-patch-merge-key` and `x-kubernetes-patch-strategy` schema extensions, so the
//! server and kubectl merge the same way.

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
const POD_SPEC: &str = "io.k8s.api.core.v1.PodSpec";
const POD_TEMPLATE: &str = "io.k8s.api.core.v1.PodTemplateSpec";
const CONTAINER: &str = "io.k8s.api.core.v1.Container";
const EPHEMERAL: &str = "io.k8s.api.core.v1.EphemeralContainer";

/// One field of one schema, named as the upstream OpenAPI documents name schemas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldRule {
    /// Schema that contains the field (`io.k8s.api.core.v1.PodSpec`).
    pub schema: &'static str,
    pub field: &'static str,
    /// Schema of the field's value, or of its elements for a list. None for primitives.
    pub child: Option<&'static str>,
    /// Merge key of a merged list of objects.
    pub merge_key: Option<&'static str>,
    /// `merge`, `retainKeys` or `merge,retainKeys`; None when the field is only a path to
    /// deeper rules and is replaced or merged by the default rules.
    pub strategy: Option<&'static str>,
}

const fn path(schema: &'static str, field: &'static str, child: &'static str) -> FieldRule {
    FieldRule { schema, field, child: Some(child), merge_key: None, strategy: None }
}

const fn keyed(schema: &'static str, field: &'static str, child: &'static str, key: &'static str) -> FieldRule {
    FieldRule { schema, field, child: Some(child), merge_key: Some(key), strategy: Some("merge") }
}

/// Every rule. Fields not listed follow the defaults: maps merge, lists are replaced whole.
pub static FIELD_RULES: &[FieldRule] = &[
    // Object metadata.
    keyed(META, "ownerReferences", "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference", "uid"),
    FieldRule { schema: META, field: "finalizers", child: None, merge_key: None, strategy: Some("merge") },
    // Workload specs lead to the pod template.
    path("io.k8s.api.apps.v1.DeploymentSpec", "template", POD_TEMPLATE),
    path("io.k8s.api.apps.v1.ReplicaSetSpec", "template", POD_TEMPLATE),
    path("io.k8s.api.apps.v1.StatefulSetSpec", "template", POD_TEMPLATE),
    path("io.k8s.api.apps.v1.DaemonSetSpec", "template", POD_TEMPLATE),
    path("io.k8s.api.batch.v1.JobSpec", "template", POD_TEMPLATE),
    FieldRule {
        schema: "io.k8s.api.apps.v1.DeploymentSpec",
        field: "strategy",
        child: Some("io.k8s.api.apps.v1.DeploymentStrategy"),
        merge_key: None,
        strategy: Some("retainKeys"),
    },
    path(POD_TEMPLATE, "metadata", META),
    path(POD_TEMPLATE, "spec", POD_SPEC),
    // Pod spec.
    keyed(POD_SPEC, "containers", CONTAINER, "name"),
    keyed(POD_SPEC, "initContainers", CONTAINER, "name"),
    keyed(POD_SPEC, "ephemeralContainers", EPHEMERAL, "name"),
    FieldRule {
        schema: POD_SPEC,
        field: "volumes",
        child: Some("io.k8s.api.core.v1.Volume"),
        merge_key: Some("name"),
        strategy: Some("merge,retainKeys"),
    },
    keyed(POD_SPEC, "imagePullSecrets", "io.k8s.api.core.v1.LocalObjectReference", "name"),
    keyed(POD_SPEC, "hostAliases", "io.k8s.api.core.v1.HostAlias", "ip"),
    keyed(POD_SPEC, "topologySpreadConstraints", "io.k8s.api.core.v1.TopologySpreadConstraint", "topologyKey"),
    keyed(POD_SPEC, "schedulingGates", "io.k8s.api.core.v1.PodSchedulingGate", "name"),
    FieldRule {
        schema: POD_SPEC,
        field: "resourceClaims",
        child: Some("io.k8s.api.core.v1.PodResourceClaim"),
        merge_key: Some("name"),
        strategy: Some("merge,retainKeys"),
    },
    // Containers, regular and ephemeral.
    keyed(CONTAINER, "ports", "io.k8s.api.core.v1.ContainerPort", "containerPort"),
    keyed(CONTAINER, "env", "io.k8s.api.core.v1.EnvVar", "name"),
    keyed(CONTAINER, "volumeMounts", "io.k8s.api.core.v1.VolumeMount", "mountPath"),
    keyed(CONTAINER, "volumeDevices", "io.k8s.api.core.v1.VolumeDevice", "devicePath"),
    keyed(EPHEMERAL, "ports", "io.k8s.api.core.v1.ContainerPort", "containerPort"),
    keyed(EPHEMERAL, "env", "io.k8s.api.core.v1.EnvVar", "name"),
    keyed(EPHEMERAL, "volumeMounts", "io.k8s.api.core.v1.VolumeMount", "mountPath"),
    keyed(EPHEMERAL, "volumeDevices", "io.k8s.api.core.v1.VolumeDevice", "devicePath"),
    // Status lists.
    keyed("io.k8s.api.core.v1.PodStatus", "conditions", "io.k8s.api.core.v1.PodCondition", "type"),
    keyed("io.k8s.api.core.v1.PodStatus", "podIPs", "io.k8s.api.core.v1.PodIP", "ip"),
    keyed("io.k8s.api.core.v1.PodStatus", "hostIPs", "io.k8s.api.core.v1.HostIP", "ip"),
    keyed("io.k8s.api.core.v1.NodeStatus", "conditions", "io.k8s.api.core.v1.NodeCondition", "type"),
    keyed("io.k8s.api.core.v1.NodeStatus", "addresses", "io.k8s.api.core.v1.NodeAddress", "type"),
    keyed("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "io.k8s.api.apps.v1.DeploymentCondition", "type"),
    keyed("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "io.k8s.api.apps.v1.ReplicaSetCondition", "type"),
    keyed("io.k8s.api.batch.v1.JobStatus", "conditions", "io.k8s.api.batch.v1.JobCondition", "type"),
    keyed("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "io.k8s.api.apps.v1.StatefulSetCondition", "type"),
    keyed("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "io.k8s.api.apps.v1.DaemonSetCondition", "type"),
    // Services.
    keyed("io.k8s.api.core.v1.ServiceSpec", "ports", "io.k8s.api.core.v1.ServicePort", "port"),
];

/// Looks up the rule of `field` in `schema`.
pub fn field_rule(schema: &str, field: &str) -> Option<&'static FieldRule> {
    FIELD_RULES.iter().find(|rule| rule.schema == schema && rule.field == field)
}

/// Builds the upstream schema name of a kind (`io.k8s.api.apps.v1.Deployment`).
pub fn schema_name(group: &str, version: &str, kind: &str) -> String {
    // Upstream packages are named by the group's first label: `coordination.k8s.io` lives in
    // `io.k8s.api.coordination.v1`, the core group in `io.k8s.api.core.v1`.
    let package = match group.split('.').next() {
        Some("") | None => "core",
        Some(first) => first,
    };
    format!("io.k8s.api.{package}.{version}.{kind}")
}

/// Returns the schema of a top-level field (`metadata`, `spec`, `status`) of a kind's schema.
pub fn root_child(kind_schema: &str, field: &str) -> Option<String> {
    match field {
        "metadata" => Some(META.to_string()),
        "spec" => Some(format!("{kind_schema}Spec")),
        "status" => Some(format!("{kind_schema}Status")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name() {
        let rule = field_rule(POD_SPEC, "containers").unwrap();
        assert_eq!(rule.merge_key, Some("name"));
        assert_eq!(rule.child, Some(CONTAINER));
    }

    #[test]
    fn schema_names_follow_upstream_packages() {
        assert_eq!(schema_name("apps", "v1", "Deployment"), "io.k8s.api.apps.v1.Deployment");
        assert_eq!(schema_name("", "v1", "Pod"), "io.k8s.api.core.v1.Pod");
        assert_eq!(schema_name("coordination.k8s.io", "v1", "Lease"), "io.k8s.api.coordination.v1.Lease");
    }

    #[test]
    fn every_child_with_rules_is_reachable() {
        // A rule on a schema that no path leads to would never apply.
        for rule in FIELD_RULES {
            let reachable = rule.schema == META
                || rule.schema.ends_with("Spec")
                || rule.schema.ends_with("Status")
                || FIELD_RULES.iter().any(|other| other.child == Some(rule.schema));
            assert!(reachable, "no path reaches {}", rule.schema);
        }
    }
}
