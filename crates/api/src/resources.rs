//! The table of served resources.
//!
//! Discovery, the OpenAPI documents, routing and storage keys are all derived from this one
//! table, so they cannot disagree.

/// A subresource such as `pods/status` or `deployments/scale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    /// Group, version and kind of the subresource's request and response body.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// One served resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Plural resource name used in URLs (`deployments`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Whether the main resource ignores `status` on writes (status changes only through
    /// the status subresource).
    pub status_subresource: bool,
}

impl ResourceInfo {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of this resource (`DeploymentList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The storage key prefix for this resource, ending with `/`. Namespaced resources
    /// append `<namespace>/`; every object key then ends with its name.
    pub fn key_prefix(&self) -> String {
        let group = if self.group.is_empty() { "core" } else { self.group };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

const CRUD: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const READ_UPDATE: &[&str] = &["get", "patch", "update"];

const fn status(group: &'static str, kind: &'static str) -> Subresource {
    Subresource { name: "status", group, version: "v1", kind, verbs: READ_UPDATE }
}

const fn scale() -> Subresource {
    Subresource { name: "scale", group: "autoscaling", version: "v1", kind: "Scale", verbs: READ_UPDATE }
}

/// Every resource the API server serves.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "", version: "v1", kind: "Namespace", plural: "namespaces", singular: "namespace",
        namespaced: false, short_names: &["ns"], categories: &[],
        verbs: &["create", "delete", "get", "list", "patch", "update", "watch"],
        subresources: &[status("", "Namespace")], status_subresource: true,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "Node", plural: "nodes", singular: "node",
        namespaced: false, short_names: &["no"], categories: &[], verbs: CRUD,
        subresources: &[status("", "Node")], status_subresource: true,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "Pod", plural: "pods", singular: "pod",
        namespaced: true, short_names: &["po"], categories: &["all"], verbs: CRUD,
        subresources: &[
            status("", "Pod"),
            Subresource { name: "binding", group: "", version: "v1", kind: "Binding", verbs: &["create"] },
            Subresource { name: "log", group: "", version: "v1", kind: "Pod", verbs: &["get"] },
            Subresource { name: "attach", group: "", version: "v1", kind: "PodAttachOptions", verbs: &["create", "get"] },
            Subresource { name: "exec", group: "", version: "v1", kind: "PodExecOptions", verbs: &["create", "get"] },
            Subresource { name: "portforward", group: "", version: "v1", kind: "PodPortForwardOptions", verbs: &["create", "get"] },
            Subresource { name: "eviction", group: "policy", version: "v1", kind: "Eviction", verbs: &["create"] },
        ],
        status_subresource: true,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "Service", plural: "services", singular: "service",
        namespaced: true, short_names: &["svc"], categories: &["all"],
        verbs: &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        subresources: &[status("", "Service")], status_subresource: true,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "Endpoints", plural: "endpoints", singular: "endpoints",
        namespaced: true, short_names: &["ep"], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", singular: "configmap",
        namespaced: true, short_names: &["cm"], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "Secret", plural: "secrets", singular: "secret",
        namespaced: true, short_names: &[], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "Event", plural: "events", singular: "event",
        namespaced: true, short_names: &["ev"], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "", version: "v1", kind: "ServiceAccount", plural: "serviceaccounts", singular: "serviceaccount",
        namespaced: true, short_names: &["sa"], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", singular: "lease",
        namespaced: true, short_names: &[], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "node.k8s.io", version: "v1", kind: "RuntimeClass", plural: "runtimeclasses", singular: "runtimeclass",
        namespaced: false, short_names: &[], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "discovery.k8s.io", version: "v1", kind: "EndpointSlice", plural: "endpointslices",
        singular: "endpointslice", namespaced: true, short_names: &[], categories: &[], verbs: CRUD,
        subresources: &[], status_subresource: false,
    },
    ResourceInfo {
        group: "apps", version: "v1", kind: "Deployment", plural: "deployments", singular: "deployment",
        namespaced: true, short_names: &["deploy"], categories: &["all"], verbs: CRUD,
        subresources: &[status("apps", "Deployment"), scale()], status_subresource: true,
    },
    ResourceInfo {
        group: "apps", version: "v1", kind: "ReplicaSet", plural: "replicasets", singular: "replicaset",
        namespaced: true, short_names: &["rs"], categories: &["all"], verbs: CRUD,
        subresources: &[status("apps", "ReplicaSet"), scale()], status_subresource: true,
    },
    ResourceInfo {
        group: "batch", version: "v1", kind: "Job", plural: "jobs", singular: "job",
        namespaced: true, short_names: &[], categories: &["all"], verbs: CRUD,
        subresources: &[status("batch", "Job")], status_subresource: true,
    },
];

/// Finds a resource by group, version and plural name.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds a resource by group and kind.
pub fn lookup_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.kind == kind)
}

/// The served group-versions, core first, each once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut seen: Vec<(&'static str, &'static str)> = Vec::new();
    for resource in RESOURCES {
        let pair = (resource.group, resource.version);
        if !seen.contains(&pair) {
            seen.push(pair);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_namespaces() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "web"), "/registry/core/pods/default/web");
        let nodes = lookup("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/core/nodes/n1");
    }

    #[test]
    fn scale_subresource_names_autoscaling() {
        let deployments = lookup_kind("apps", "Deployment").unwrap();
        let scale = deployments.subresource("scale").unwrap();
        assert_eq!((scale.group, scale.kind), ("autoscaling", "Scale"));
    }

    #[test]
    fn group_versions_list_core_first() {
        let versions = group_versions();
        assert_eq!(versions[0], ("", "v1"));
        assert!(versions.contains(&("apps", "v1")));
        assert!(versions.contains(&("discovery.k8s.io", "v1")));
    }

    #[test]
    fn endpoint_slice_key_uses_discovery_group() {
        let slices = lookup("discovery.k8s.io", "v1", "endpointslices").unwrap();
        assert_eq!(slices.key(Some("default"), "web-abc"), "/registry/discovery.k8s.io/endpointslices/default/web-abc");
    }
}
