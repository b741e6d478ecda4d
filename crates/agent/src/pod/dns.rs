//! A pod's resolver settings from its `dnsPolicy` and `dnsConfig`, as kubelet computes
//! them:
//!
//! - `ClusterFirst` (the default): the cluster DNS server, searching
//!   `<namespace>.svc.<domain> svc.<domain> <domain>` with `ndots:5`. Host-network pods
//!   and nodes without a cluster DNS server fall back to `Default`.
//! - `ClusterFirstWithHostNet`: like `ClusterFirst`, also for host-network pods.
//! - `Default`: the node's own resolv.conf.
//! - `None`: only what `dnsConfig` lists.
//!
//! `dnsConfig` is merged into each: its nameservers and searches are appended without
//! duplicates, and its options replace base options of the same name.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{PodDNSConfig, PodSpec};

use crate::runtime::DnsSettings;

/// The node's resolver file, the base of `dnsPolicy: Default`.
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Kubernetes' limits on a pod's resolv.conf: three nameservers and 32 search domains.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The node's cluster DNS settings.
#[derive(Clone, Debug, Default)]
pub struct ClusterDns {
    /// Addresses of the cluster DNS server; empty when the node runs none.
    pub servers: Vec<IpAddr>,
    /// The cluster domain, such as `cluster.local`.
    pub domain: String,
}

/// Computes the pod's resolver settings; `None` keeps the node's resolv.conf unchanged.
pub fn pod_dns(spec: &PodSpec, namespace: &str, cluster: &ClusterDns) -> Option<DnsSettings> {
    pod_dns_with_host(spec, namespace, cluster, || {
        std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default()
    })
}

fn pod_dns_with_host(
    spec: &PodSpec,
    namespace: &str,
    cluster: &ClusterDns,
    host_resolv_conf: impl FnOnce() -> String,
) -> Option<DnsSettings> {
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    };
    let base = if policy == "None" {
        DnsSettings::default()
    } else if cluster_first && !cluster.servers.is_empty() {
        let domain = cluster.domain.trim_end_matches('.');
        DnsSettings {
            nameservers: cluster.servers.iter().map(ToString::to_string).collect(),
            searches: vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.to_string(),
            ],
            options: vec!["ndots:5".to_string()],
        }
    } else {
        // The node's settings: the process runtime leaves them in place unless dnsConfig
        // adds to them.
        spec.dns_config.as_ref()?;
        parse_resolv_conf(&host_resolv_conf())
    };
    Some(merge(base, spec.dns_config.as_ref()))
}

fn merge(mut settings: DnsSettings, config: Option<&PodDNSConfig>) -> DnsSettings {
    if let Some(config) = config {
        for server in config.nameservers.iter().flatten() {
            push_unique(&mut settings.nameservers, server);
        }
        for search in config.searches.iter().flatten() {
            push_unique(&mut settings.searches, search);
        }
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.as_deref() else { continue };
            settings.options.retain(|existing| existing.split(':').next() != Some(name));
            settings.options.push(match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.to_string(),
            });
        }
    }
    settings.nameservers.truncate(MAX_NAMESERVERS);
    settings.searches.truncate(MAX_SEARCHES);
    settings
}

fn push_unique(list: &mut Vec<String>, value: &str) {
    if !list.iter().any(|existing| existing == value) {
        list.push(value.to_string());
    }
}

/// Reads `nameserver`, `search` (or `domain`) and `options` lines of a resolv.conf.
fn parse_resolv_conf(text: &str) -> DnsSettings {
    let mut settings = DnsSettings::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => settings.nameservers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => settings.searches = words.map(str::to_string).collect(),
            Some("options") => settings.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterDns {
        ClusterDns { servers: vec!["10.244.0.1".parse().unwrap()], domain: "cluster.local".into() }
    }

    fn spec(value: serde_json::Value) -> PodSpec {
        serde_json::from_value(value).expect("test PodSpec is valid")
    }

    const HOST: &str = "nameserver 192.0.2.53\nsearch corp.example\noptions timeout:2\n";

    #[test]
    fn cluster_first_is_the_default() {
        let settings = pod_dns(&spec(serde_json::json!({"containers": []})), "team", &cluster()).unwrap();
        assert_eq!(settings.nameservers, ["10.244.0.1"]);
        assert_eq!(settings.searches, ["team.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
        assert_eq!(settings.options, ["ndots:5"]);
    }

    #[test]
    fn host_network_falls_back_to_node() {
        let pod = spec(serde_json::json!({"containers": [], "hostNetwork": true}));
        assert_eq!(pod_dns_with_host(&pod, "team", &cluster(), || HOST.into()), None);
        let with_host_net = spec(serde_json::json!({
            "containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"
        }));
        let settings = pod_dns_with_host(&with_host_net, "team", &cluster(), || HOST.into()).unwrap();
        assert_eq!(settings.nameservers, ["10.244.0.1"]);
    }

    #[test]
    fn default_policy_merges_dns_config_into_node_settings() {
        let pod = spec(serde_json::json!({
            "containers": [], "dnsPolicy": "Default",
            "dnsConfig": {"searches": ["extra.example"], "options": [{"name": "timeout", "value": "5"}, {"name": "rotate"}]}
        }));
        let settings = pod_dns_with_host(&pod, "team", &cluster(), || HOST.into()).unwrap();
        assert_eq!(settings.nameservers, ["192.0.2.53"]);
        assert_eq!(settings.searches, ["corp.example", "extra.example"]);
        assert_eq!(settings.options, ["timeout:5", "rotate"]);
        let plain = spec(serde_json::json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(pod_dns_with_host(&plain, "team", &cluster(), || HOST.into()), None);
    }

    #[test]
    fn none_policy_uses_dns_config_only() {
        let pod = spec(serde_json::json!({
            "containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["1.1.1.1", "1.1.1.1", "8.8.8.8"], "searches": ["a.example"]}
        }));
        let settings = pod_dns_with_host(&pod, "team", &cluster(), || HOST.into()).unwrap();
        assert_eq!(settings.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(settings.searches, ["a.example"]);
        assert!(settings.options.is_empty());
    }

    #[test]
    fn resolv_conf_renders_each_setting() {
        let settings = pod_dns(&spec(serde_json::json!({"containers": []})), "team", &cluster()).unwrap();
        assert_eq!(
            settings.to_resolv_conf(),
            "nameserver 10.244.0.1\nsearch team.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }
}
