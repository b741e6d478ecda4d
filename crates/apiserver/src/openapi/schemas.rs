//! `components.schemas` of a group-version document: k8s-openapi's `schemars` schemas in the
//! OpenAPI 3.0 dialect, plus the extensions kubectl reads and k8s-openapi does not emit.

use capstan_api::patch::keys::{FIELD_RULES, schema_name};
use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, node, policy, rbac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// Schema name of the untyped patch body, as upstream names it.
pub(super) const PATCH_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(super) const DELETE_OPTIONS_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const STATUS_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const LIST_META_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Collects schemas for kinds and finishes them into `components.schemas`.
pub(super) struct SchemaSet {
    generator: SchemaGenerator,
    /// (group, version, kind) of every top-level kind added, for the kind extension.
    kinds: Vec<(String, String, String)>,
    lists: Vec<(String, String, String)>,
}

impl SchemaSet {
    pub(super) fn new() -> Self {
        let mut generator = SchemaSettings::openapi3().into_generator();
        generator.subschema_for::<meta::DeleteOptions>();
        generator.subschema_for::<meta::Status>();
        generator.subschema_for::<meta::ListMeta>();
        SchemaSet { generator, kinds: Vec::new(), lists: Vec::new() }
    }

    /// Adds the schema of a kind. Returns false for a kind without a compiled-in type. The
    /// document then refers to no schema for that kind, so kubectl falls back to its own types.
    pub(super) fn add_kind(&mut self, group: &str, version: &str, kind: &str) -> bool {
        if !add_typed(&mut self.generator, group, kind) {
            return false;
        }
        let gvk = (group.to_string(), version.to_string(), kind.to_string());
        if !self.kinds.contains(&gvk) {
            self.kinds.push(gvk);
        }
        true
    }

    /// Adds a kind and its `<Kind>List` schema.
    pub(super) fn add_kind_with_list(&mut self, group: &str, version: &str, kind: &str) -> bool {
        let added = self.add_kind(group, version, kind);
        let gvk = (group.to_string(), version.to_string(), kind.to_string());
        if added && !self.lists.contains(&gvk) {
            self.lists.push(gvk);
        }
        added
    }

    /// Returns the finished `components.schemas` map.
    pub(super) fn finish(mut self) -> Map<String, Value> {
        let mut schemas = self.generator.take_definitions(true);
        for (group, version, kind) in &self.lists {
            let item = schema_name(group, version, kind);
            let list = json!({
                "type": "object",
                "description": format!("A list of {kind} objects."),
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"allOf": [{"$ref": format!("#/components/schemas/{LIST_META_SCHEMA}")}]},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}},
                },
            });
            schemas.insert(format!("{item}List"), list);
            self.kinds.push((group.clone(), version.clone(), format!("{kind}List")));
        }
        schemas.insert(
            PATCH_SCHEMA.to_string(),
            json!({"type": "object", "description": "A patch body in one of the PATCH content types."}),
        );
        for (group, version, kind) in &self.kinds {
            if let Some(Value::Object(schema)) = schemas.get_mut(&schema_name(group, version, kind)) {
                let gvk = json!([{"group": group, "version": version, "kind": kind}]);
                schema.insert("x-kubernetes-group-version-kind".into(), gvk);
            }
        }
        add_patch_extensions(&mut schemas);
        schemas
    }
}

/// Puts the strategic merge table on the schema properties, where kubectl's apply reads it.
fn add_patch_extensions(schemas: &mut Map<String, Value>) {
    for rule in FIELD_RULES {
        let Some(strategy) = rule.strategy else { continue };
        let Some(property) = schemas.get_mut(rule.schema).and_then(|s| s.pointer_mut(&format!("/properties/{}", rule.field)))
        else {
            continue;
        };
        let Value::Object(property) = property else { continue };
        // A bare $ref cannot carry siblings in OpenAPI 3.0, so wrap it as upstream does.
        if let Some(reference) = property.remove("$ref") {
            property.insert("allOf".into(), json!([{"$ref": reference}]));
        }
        property.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
        if let Some(key) = rule.merge_key {
            property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
}

/// Adds the schema of a compiled-in kind to `generator`.
fn add_typed(generator: &mut SchemaGenerator, group: &str, kind: &str) -> bool {
    macro_rules! typed {
        ($(($g:literal, $k:literal) => $t:ty),* $(,)?) => {
            match (group, kind) {
                $(($g, $k) => { generator.subschema_for::<$t>(); true })*
                _ => false,
            }
        };
    }
    typed! {
        ("", "Namespace") => core::v1::Namespace,
        ("", "Node") => core::v1::Node,
        ("", "Pod") => core::v1::Pod,
        ("", "Binding") => core::v1::Binding,
        ("", "Service") => core::v1::Service,
        ("", "Endpoints") => core::v1::Endpoints,
        ("", "ConfigMap") => core::v1::ConfigMap,
        ("", "Secret") => core::v1::Secret,
        ("", "Event") => core::v1::Event,
        ("", "ServiceAccount") => core::v1::ServiceAccount,
        ("", "PersistentVolumeClaim") => core::v1::PersistentVolumeClaim,
        ("", "PersistentVolume") => core::v1::PersistentVolume,
        ("", "ResourceQuota") => core::v1::ResourceQuota,
        ("", "LimitRange") => core::v1::LimitRange,
        ("apps", "Deployment") => apps::v1::Deployment,
        ("apps", "ReplicaSet") => apps::v1::ReplicaSet,
        ("apps", "StatefulSet") => apps::v1::StatefulSet,
        ("apps", "DaemonSet") => apps::v1::DaemonSet,
        ("apps", "ControllerRevision") => apps::v1::ControllerRevision,
        ("batch", "Job") => batch::v1::Job,
        ("batch", "CronJob") => batch::v1::CronJob,
        ("autoscaling", "Scale") => autoscaling::v1::Scale,
        ("autoscaling", "HorizontalPodAutoscaler") => autoscaling::v1::HorizontalPodAutoscaler,
        ("policy", "Eviction") => policy::v1::Eviction,
        ("policy", "PodDisruptionBudget") => policy::v1::PodDisruptionBudget,
        ("coordination.k8s.io", "Lease") => coordination::v1::Lease,
        ("discovery.k8s.io", "EndpointSlice") => discovery::v1::EndpointSlice,
        ("node.k8s.io", "RuntimeClass") => node::v1::RuntimeClass,
        ("rbac.authorization.k8s.io", "Role") => rbac::v1::Role,
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac::v1::ClusterRole,
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac::v1::RoleBinding,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac::v1::ClusterRoleBinding,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment_schemas() -> Map<String, Value> {
        let mut set = SchemaSet::new();
        assert!(set.add_kind_with_list("apps", "v1", "Deployment"));
        set.finish()
    }

    #[test]
    fn kind_schema_carries_gvk_array() {
        let schemas = deployment_schemas();
        let gvk = &schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"];
        assert_eq!(gvk, &json!([{"group": "apps", "version": "v1", "kind": "Deployment"}]));
        let list_gvk = &schemas["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"];
        assert_eq!(list_gvk, "DeploymentList");
    }

    #[test]
    fn containers_carry_merge_key() {
        let schemas = deployment_schemas();
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(strategy["x-kubernetes-patch-strategy"], "retainKeys");
        assert!(strategy.get("$ref").is_none(), "a $ref with siblings is wrapped in allOf");
    }

    #[test]
    fn refs_point_into_components() {
        let schemas = deployment_schemas();
        let text = Value::Object(schemas.clone()).to_string();
        assert!(text.contains("#/components/schemas/io.k8s.api.core.v1.PodSpec"));
        assert!(!text.contains("#/$defs/"));
        for name in [DELETE_OPTIONS_SCHEMA, STATUS_SCHEMA, PATCH_SCHEMA, "io.k8s.api.core.v1.Container"] {
            assert!(schemas.contains_key(name), "missing {name}");
        }
    }

    #[test]
    fn unknown_kind_adds_nothing() {
        let mut set = SchemaSet::new();
        assert!(!set.add_kind("example.com", "v1", "Widget"));
    }
}
