//! Protobuf field tables for the kinds that kubectl's generators send (`kubectl create
//! configmap|secret|namespace|deployment|job|service|serviceaccount`, `kubectl run`,
//! `kubectl expose`, evictions from `kubectl drain`).
//!
//! Field numbers are those of the `generated.proto` files of k8s.io/api and
//! k8s.io/apimachinery. Fields that the generators never set are left out, so a body that
//! uses one fails with a clear error rather than losing data.

/// The wire encoding of one field and its JSON rendering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    /// Any varint integer (int32 or int64).
    Int,
    Bool,
    /// A nested message, by name in [`MESSAGES`].
    Msg(&'static str),
    /// `metav1.Time` (seconds and nanos), rendered as RFC 3339.
    Time,
    /// `intstr.IntOrString`, rendered as a number or a string.
    IntOrString,
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>`, values rendered as base64.
    MapBytes,
    /// `map<string, Quantity>`.
    MapQuantity,
    /// A field the server resets anyway (the status of a new object): read and dropped.
    Skip,
}

/// One field of a message.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub number: u64,
    pub name: &'static str,
    pub ty: Ty,
    pub repeated: bool,
    /// Whether the Go field is a pointer, so a zero value is meaningful. Other scalar
    /// fields are written even when zero, and a zero there means "unset".
    pub pointer: bool,
}

const fn field(number: u64, name: &'static str, ty: Ty) -> Field {
    Field { number, name, ty, repeated: false, pointer: false }
}

const fn pointer(number: u64, name: &'static str, ty: Ty) -> Field {
    Field { number, name, ty, repeated: false, pointer: true }
}

const fn repeated(number: u64, name: &'static str, ty: Ty) -> Field {
    Field { number, name, ty, repeated: true, pointer: false }
}

use Ty::*;

/// Every message the decoder handles, by name.
pub static MESSAGES: &[(&str, &[Field])] = &[
    ("TypeMeta", &[field(1, "apiVersion", Str), field(2, "kind", Str)]),
    ("ObjectMeta", &[
        field(1, "name", Str),
        field(2, "generateName", Str),
        field(3, "namespace", Str),
        field(4, "selfLink", Str),
        field(5, "uid", Str),
        field(6, "resourceVersion", Str),
        field(7, "generation", Int),
        field(8, "creationTimestamp", Time),
        field(9, "deletionTimestamp", Time),
        pointer(10, "deletionGracePeriodSeconds", Int),
        field(11, "labels", MapStr),
        field(12, "annotations", MapStr),
        repeated(13, "ownerReferences", Msg("OwnerReference")),
        repeated(14, "finalizers", Str),
    ]),
    ("OwnerReference", &[
        field(1, "kind", Str),
        field(3, "name", Str),
        field(4, "uid", Str),
        field(5, "apiVersion", Str),
        pointer(6, "controller", Bool),
        pointer(7, "blockOwnerDeletion", Bool),
    ]),
    ("LabelSelector", &[field(1, "matchLabels", MapStr), repeated(2, "matchExpressions", Msg("LabelSelectorRequirement"))]),
    ("LabelSelectorRequirement", &[field(1, "key", Str), field(2, "operator", Str), repeated(3, "values", Str)]),
    ("DeleteOptions", &[
        pointer(1, "gracePeriodSeconds", Int),
        field(2, "preconditions", Msg("Preconditions")),
        pointer(3, "orphanDependents", Bool),
        pointer(4, "propagationPolicy", Str),
        repeated(5, "dryRun", Str),
    ]),
    ("Preconditions", &[pointer(1, "uid", Str), pointer(2, "resourceVersion", Str)]),
    // core/v1
    ("ConfigMap", &[
        field(1, "metadata", Msg("ObjectMeta")),
        field(2, "data", MapStr),
        field(3, "binaryData", MapBytes),
        pointer(4, "immutable", Bool),
    ]),
    ("Secret", &[
        field(1, "metadata", Msg("ObjectMeta")),
        field(2, "data", MapBytes),
        field(3, "type", Str),
        field(4, "stringData", MapStr),
        pointer(5, "immutable", Bool),
    ]),
    ("Namespace", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "spec", Msg("NamespaceSpec")), field(3, "status", Skip)]),
    ("NamespaceSpec", &[repeated(1, "finalizers", Str)]),
    ("ServiceAccount", &[
        field(1, "metadata", Msg("ObjectMeta")),
        repeated(2, "secrets", Msg("ObjectReference")),
        repeated(3, "imagePullSecrets", Msg("LocalObjectReference")),
        pointer(4, "automountServiceAccountToken", Bool),
    ]),
    ("ObjectReference", &[
        field(1, "kind", Str),
        field(2, "namespace", Str),
        field(3, "name", Str),
        field(4, "uid", Str),
        field(5, "apiVersion", Str),
        field(6, "resourceVersion", Str),
        field(7, "fieldPath", Str),
    ]),
    ("LocalObjectReference", &[field(1, "name", Str)]),
    ("Service", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "spec", Msg("ServiceSpec")), field(3, "status", Skip)]),
    ("ServiceSpec", &[
        repeated(1, "ports", Msg("ServicePort")),
        field(2, "selector", MapStr),
        field(3, "clusterIP", Str),
        field(4, "type", Str),
        repeated(5, "externalIPs", Str),
        field(7, "sessionAffinity", Str),
        field(8, "loadBalancerIP", Str),
        repeated(9, "loadBalancerSourceRanges", Str),
        field(10, "externalName", Str),
        field(11, "externalTrafficPolicy", Str),
        field(12, "healthCheckNodePort", Int),
        field(13, "publishNotReadyAddresses", Bool),
        pointer(17, "ipFamilyPolicy", Str),
        repeated(18, "clusterIPs", Str),
        repeated(19, "ipFamilies", Str),
        pointer(22, "internalTrafficPolicy", Str),
    ]),
    ("ServicePort", &[
        field(1, "name", Str),
        field(2, "protocol", Str),
        field(3, "port", Int),
        field(4, "targetPort", IntOrString),
        field(5, "nodePort", Int),
        pointer(6, "appProtocol", Str),
    ]),
    ("Pod", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "spec", Msg("PodSpec")), field(3, "status", Skip)]),
    ("PodTemplateSpec", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "spec", Msg("PodSpec"))]),
    ("PodSpec", &[
        repeated(2, "containers", Msg("Container")),
        field(3, "restartPolicy", Str),
        pointer(4, "terminationGracePeriodSeconds", Int),
        pointer(5, "activeDeadlineSeconds", Int),
        field(6, "dnsPolicy", Str),
        field(7, "nodeSelector", MapStr),
        field(8, "serviceAccountName", Str),
        field(9, "serviceAccount", Str),
        field(10, "nodeName", Str),
        field(11, "hostNetwork", Bool),
        field(12, "hostPID", Bool),
        field(13, "hostIPC", Bool),
        repeated(15, "imagePullSecrets", Msg("LocalObjectReference")),
        field(16, "hostname", Str),
        field(17, "subdomain", Str),
        field(19, "schedulerName", Str),
        repeated(20, "initContainers", Msg("Container")),
        field(24, "priorityClassName", Str),
        pointer(29, "runtimeClassName", Str),
    ]),
    ("Container", &[
        field(1, "name", Str),
        field(2, "image", Str),
        repeated(3, "command", Str),
        repeated(4, "args", Str),
        field(5, "workingDir", Str),
        repeated(6, "ports", Msg("ContainerPort")),
        repeated(7, "env", Msg("EnvVar")),
        field(8, "resources", Msg("ResourceRequirements")),
        field(13, "terminationMessagePath", Str),
        field(14, "imagePullPolicy", Str),
        field(16, "stdin", Bool),
        field(17, "stdinOnce", Bool),
        field(18, "tty", Bool),
        field(20, "terminationMessagePolicy", Str),
    ]),
    ("ContainerPort", &[
        field(1, "name", Str),
        field(2, "hostPort", Int),
        field(3, "containerPort", Int),
        field(4, "protocol", Str),
        field(5, "hostIP", Str),
    ]),
    ("EnvVar", &[field(1, "name", Str), field(2, "value", Str)]),
    ("ResourceRequirements", &[field(1, "limits", MapQuantity), field(2, "requests", MapQuantity)]),
    // apps/v1
    ("Deployment", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "spec", Msg("DeploymentSpec")), field(3, "status", Skip)]),
    ("DeploymentSpec", &[
        pointer(1, "replicas", Int),
        field(2, "selector", Msg("LabelSelector")),
        field(3, "template", Msg("PodTemplateSpec")),
        field(4, "strategy", Msg("DeploymentStrategy")),
        field(5, "minReadySeconds", Int),
        pointer(6, "revisionHistoryLimit", Int),
        field(7, "paused", Bool),
        pointer(9, "progressDeadlineSeconds", Int),
    ]),
    ("DeploymentStrategy", &[field(1, "type", Str), field(2, "rollingUpdate", Msg("RollingUpdateDeployment"))]),
    ("RollingUpdateDeployment", &[field(1, "maxUnavailable", IntOrString), field(2, "maxSurge", IntOrString)]),
    // batch/v1
    ("Job", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "spec", Msg("JobSpec")), field(3, "status", Skip)]),
    ("JobSpec", &[
        pointer(1, "parallelism", Int),
        pointer(2, "completions", Int),
        pointer(3, "activeDeadlineSeconds", Int),
        field(4, "selector", Msg("LabelSelector")),
        pointer(5, "manualSelector", Bool),
        field(6, "template", Msg("PodTemplateSpec")),
        pointer(7, "backoffLimit", Int),
        pointer(8, "ttlSecondsAfterFinished", Int),
        pointer(9, "completionMode", Str),
        pointer(10, "suspend", Bool),
        pointer(14, "podReplacementPolicy", Str),
    ]),
    // policy/v1
    ("Eviction", &[field(1, "metadata", Msg("ObjectMeta")), field(2, "deleteOptions", Msg("DeleteOptions"))]),
];

/// Returns the top-level message of a kind, by apiVersion and kind.
pub fn root(api_version: &str, kind: &str) -> Option<&'static str> {
    let name = match (api_version, kind) {
        ("v1", "ConfigMap" | "Secret" | "Namespace" | "ServiceAccount" | "Service" | "Pod") => kind,
        ("apps/v1", "Deployment") => "Deployment",
        ("batch/v1", "Job") => "Job",
        ("policy/v1", "Eviction") => "Eviction",
        ("meta.k8s.io/v1" | "v1", "DeleteOptions") => "DeleteOptions",
        _ => return None,
    };
    MESSAGES.iter().find(|(n, _)| *n == name).map(|(n, _)| *n)
}

/// Returns the fields of a message.
pub fn fields(message: &str) -> Option<&'static [Field]> {
    MESSAGES.iter().find(|(n, _)| *n == message).map(|(_, f)| *f)
}
