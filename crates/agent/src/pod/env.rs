//! Container environment: Service variables, `envFrom`, `env` with `valueFrom` sources, the
//! downward API, and `$(VAR)` expansion in values, commands and arguments.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, ObjectFieldSelector, Pod, ResourceFieldSelector,
};

use super::service_env::service_variables;
use crate::api::{ApiError, PodApi};

/// A container's environment could not be built. The message is what Kubernetes shows in
/// the `CreateContainerConfigError` waiting state.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound { name: String },
    #[error("secret \"{name}\" not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldPath: {path}")]
    UnsupportedField { path: String },
    #[error("unsupported resource {resource} in resourceFieldRef of env {variable}")]
    UnsupportedResource { variable: String, resource: String },
    #[error("invalid quantity {value:?} in resourceFieldRef of env {variable}")]
    InvalidQuantity { variable: String, value: String },
    #[error(transparent)]
    Api(Box<ApiError>),
}

impl From<ApiError> for EnvError {
    fn from(error: ApiError) -> Self {
        EnvError::Api(Box::new(error))
    }
}

/// What the downward API and resource references read besides the pod itself.
#[derive(Clone, Debug)]
pub struct EnvContext<'a> {
    pub pod: &'a Pod,
    pub node_name: &'a str,
    pub host_ip: &'a str,
    pub pod_ip: Option<&'a str>,
    /// Node allocatable CPU, the value of `limits.cpu` for a container without a limit.
    pub node_cpu_millis: i64,
    /// Node allocatable memory, the value of `limits.memory` for a container without one.
    pub node_memory_bytes: i64,
}

/// An ordered environment in which a later definition replaces the value of an earlier one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Environment {
    entries: Vec<(String, String)>,
}

impl Environment {
    fn set(&mut self, name: &str, value: String) {
        match self
            .entries
            .iter_mut()
            .find(|(existing, _)| existing == name)
        {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_string(), value)),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Builds the container's environment: first the Service variables, then every `envFrom`
/// source, then `env` in order. Later definitions replace earlier ones, and each `env`
/// value may refer to variables defined before it with `$(NAME)`.
pub async fn resolve_env(
    api: &dyn PodApi,
    context: &EnvContext<'_>,
    container: &Container,
) -> Result<Vec<(String, String)>, EnvError> {
    let namespace = context
        .pod
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let mut environment = Environment::default();

    // Service variables come first, so the pod's own definitions win over them.
    for (name, value) in service_variables(api, context.pod).await? {
        environment.set(&name, value);
    }

    // envFrom: whole ConfigMaps and Secrets, each key with the optional prefix.
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        let pairs = if let Some(reference) = &source.config_map_ref {
            let optional = reference.optional.unwrap_or(false);
            config_map_pairs(api, namespace, &reference.name, optional).await?
        } else if let Some(reference) = &source.secret_ref {
            let optional = reference.optional.unwrap_or(false);
            secret_pairs(api, namespace, &reference.name, optional).await?
        } else {
            Vec::new()
        };
        for (key, value) in pairs {
            // NOTE: kubelet also skips keys that are not valid variable names; it
            // additionally reports them in an Event, which capstan does not.
            if key.is_empty() || key.contains('=') {
                continue;
            }
            environment.set(&format!("{prefix}{key}"), value);
        }
    }

    // env: literal values expand earlier variables; valueFrom reads a source.
    for variable in container.env.iter().flatten() {
        if let Some(value) =
            resolve_variable(api, context, container, namespace, variable, &environment).await?
        {
            environment.set(&variable.name, value);
        }
    }
    Ok(environment.entries)
}

async fn resolve_variable(
    api: &dyn PodApi,
    context: &EnvContext<'_>,
    container: &Container,
    namespace: &str,
    variable: &EnvVar,
    environment: &Environment,
) -> Result<Option<String>, EnvError> {
    let Some(source) = &variable.value_from else {
        let raw = variable.value.as_deref().unwrap_or("");
        return Ok(Some(expand(raw, |name| {
            environment.get(name).map(str::to_string)
        })));
    };
    if let Some(selector) = &source.config_map_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let pairs = config_map_pairs(api, namespace, &selector.name, optional).await?;
        return pick_key(pairs, &selector.key, optional, || {
            EnvError::ConfigMapKeyNotFound {
                namespace: namespace.to_string(),
                name: selector.name.clone(),
                key: selector.key.clone(),
            }
        });
    }
    if let Some(selector) = &source.secret_key_ref {
        let optional = selector.optional.unwrap_or(false);
        let pairs = secret_pairs(api, namespace, &selector.name, optional).await?;
        return pick_key(pairs, &selector.key, optional, || {
            EnvError::SecretKeyNotFound {
                namespace: namespace.to_string(),
                name: selector.name.clone(),
                key: selector.key.clone(),
            }
        });
    }
    if let Some(selector) = &source.field_ref {
        return field_value(context, selector).map(Some);
    }
    if let Some(selector) = &source.resource_field_ref {
        return resource_value(context, container, &variable.name, selector).map(Some);
    }
    Ok(None)
}

fn pick_key(
    pairs: Vec<(String, String)>,
    key: &str,
    optional: bool,
    missing: impl FnOnce() -> EnvError,
) -> Result<Option<String>, EnvError> {
    match pairs.into_iter().find(|(k, _)| k == key) {
        Some((_, value)) => Ok(Some(value)),
        None if optional => Ok(None),
        None => Err(missing()),
    }
}

async fn config_map_pairs(
    api: &dyn PodApi,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Vec<(String, String)>, EnvError> {
    match api.config_map(namespace, name).await? {
        Some(config_map) => {
            let mut pairs: Vec<(String, String)> =
                config_map.data.unwrap_or_default().into_iter().collect();
            let binary = config_map.binary_data.unwrap_or_default();
            pairs.extend(
                binary
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())),
            );
            Ok(pairs)
        }
        None if optional => Ok(Vec::new()),
        None => Err(EnvError::ConfigMapNotFound {
            name: name.to_string(),
        }),
    }
}

async fn secret_pairs(
    api: &dyn PodApi,
    namespace: &str,
    name: &str,
    optional: bool,
) -> Result<Vec<(String, String)>, EnvError> {
    match api.secret(namespace, name).await? {
        Some(secret) => {
            let mut pairs: BTreeMap<String, String> = secret.string_data.unwrap_or_default();
            for (key, value) in secret.data.unwrap_or_default() {
                pairs.insert(key, String::from_utf8_lossy(&value.0).into_owned());
            }
            Ok(pairs.into_iter().collect())
        }
        None if optional => Ok(Vec::new()),
        None => Err(EnvError::SecretNotFound {
            name: name.to_string(),
        }),
    }
}

/// Reads a downward API field path such as `metadata.labels['app']`.
pub fn field_value(
    context: &EnvContext<'_>,
    selector: &ObjectFieldSelector,
) -> Result<String, EnvError> {
    let pod = context.pod;
    let path = selector.field_path.as_str();
    let spec = pod.spec.as_ref();
    let value = match path {
        "metadata.name" => pod.metadata.name.clone().unwrap_or_default(),
        "metadata.namespace" => pod.metadata.namespace.clone().unwrap_or_default(),
        "metadata.uid" => pod.metadata.uid.clone().unwrap_or_default(),
        "spec.nodeName" => context.node_name.to_string(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".to_string()),
        "status.hostIP" | "status.hostIPs" => context.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => context.pod_ip.unwrap_or_default().to_string(),
        _ => {
            let (map, key) = if let Some(key) = subscript(path, "metadata.labels") {
                (pod.metadata.labels.as_ref(), key)
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                (pod.metadata.annotations.as_ref(), key)
            } else {
                return Err(EnvError::UnsupportedField {
                    path: path.to_string(),
                });
            };
            map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
        }
    };
    Ok(value)
}

/// Returns `k` from `<prefix>['k']`.
fn subscript<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

fn resource_value(
    context: &EnvContext<'_>,
    container: &Container,
    variable: &str,
    selector: &ResourceFieldSelector,
) -> Result<String, EnvError> {
    let invalid = |value: &str| EnvError::InvalidQuantity {
        variable: variable.to_string(),
        value: value.to_string(),
    };
    let resources = container.resources.as_ref();
    let quantity = |kind: &str, name: &str| {
        let map = match kind {
            "limits" => resources.and_then(|r| r.limits.as_ref()),
            _ => resources.and_then(|r| r.requests.as_ref()),
        };
        map.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let divisor = selector
        .divisor
        .as_ref()
        .map(|q| q.0.as_str())
        .unwrap_or("1");
    let (kind, name) = selector.resource.split_once('.').unwrap_or(("", ""));
    match (kind, name) {
        ("limits" | "requests", "cpu") => {
            let millis = match quantity(kind, "cpu") {
                Some(text) => {
                    capstan_api::quantity::parse_millis(&text).map_err(|_| invalid(&text))?
                }
                None if kind == "limits" => context.node_cpu_millis,
                None => 0,
            };
            let divisor_millis =
                capstan_api::quantity::parse_millis(divisor).map_err(|_| invalid(divisor))?;
            Ok(ceil_div(millis, divisor_millis).to_string())
        }
        ("limits" | "requests", "memory" | "ephemeral-storage") => {
            let bytes = match quantity(kind, name) {
                Some(text) => {
                    capstan_api::quantity::parse_units(&text).map_err(|_| invalid(&text))?
                }
                None if kind == "limits" && name == "memory" => context.node_memory_bytes,
                None => 0,
            };
            let divisor_bytes =
                capstan_api::quantity::parse_units(divisor).map_err(|_| invalid(divisor))?;
            Ok(ceil_div(bytes, divisor_bytes).to_string())
        }
        _ => Err(EnvError::UnsupportedResource {
            variable: variable.to_string(),
            resource: selector.resource.clone(),
        }),
    }
}

fn ceil_div(value: i64, divisor: i64) -> i64 {
    if divisor <= 0 {
        return value;
    }
    (value + divisor - 1).div_euclid(divisor)
}

/// Expands `$(NAME)` references the way Kubernetes does: `$$` is a literal `$`, and a
/// reference to an unknown name or one without its closing parenthesis stays as written.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let chars: Vec<char> = input.chars().collect();
    let mut output = String::with_capacity(input.len());
    let mut cursor = 0;
    while cursor < chars.len() {
        let current = chars[cursor];
        if current != '$' || cursor + 1 >= chars.len() {
            output.push(current);
            cursor += 1;
            continue;
        }
        match chars[cursor + 1] {
            '$' => {
                output.push('$');
                cursor += 2;
            }
            '(' => {
                let close = chars[cursor + 2..].iter().position(|&c| c == ')');
                match close {
                    Some(offset) => {
                        let name: String = chars[cursor + 2..cursor + 2 + offset].iter().collect();
                        match lookup(&name) {
                            Some(value) => output.push_str(&value),
                            None => output.push_str(&format!("$({name})")),
                        }
                        cursor += offset + 3;
                    }
                    None => {
                        output.push_str("$(");
                        cursor += 2;
                    }
                }
            }
            _ => {
                output.push('$');
                cursor += 1;
            }
        }
    }
    output
}

/// Builds the command line from `command` and `args`, expanding `$(NAME)` from `env`.
pub fn command_line(container: &Container, env: &[(String, String)]) -> Vec<String> {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let command = container.command.iter().flatten();
    let args = container.args.iter().flatten();
    command
        .chain(args)
        .map(|part| expand(part, lookup))
        .collect()
}

#[cfg(test)]
#[path = "env_tests.rs"]
mod tests;
