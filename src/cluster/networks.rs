//! Discover the cluster's pod CIDR and Service CIDR, saying where each came
//! from (calico-facts.md §5.2, §5.3). Every source is optional: a managed
//! cluster hides its control plane, and a restricted user may not read
//! kube-system; then the answer is "unknown", never an error.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec, Service};
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use super::Cluster;
use crate::core::model::CniPools;
use crate::core::model::{ClusterNetworks, SourcedCidr};

pub async fn discover(cluster: &Cluster) -> ClusterNetworks {
    let mut nets = ClusterNetworks::default();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "kube-system");

    if let Ok(Some(cm)) = cms.get_opt("kubeadm-config").await {
        if let Some(cfg) = cm.data.as_ref().and_then(|d| d.get("ClusterConfiguration")) {
            let src = "ConfigMap kube-system/kubeadm-config";
            push_all(&mut nets.pod_cidrs, yaml_field(cfg, "podSubnet"), &format!("{src} (networking.podSubnet)"));
            push_all(
                &mut nets.service_cidrs,
                yaml_field(cfg, "serviceSubnet"),
                &format!("{src} (networking.serviceSubnet)"),
            );
        }
    }

    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "kube-system");
    // kube-proxy's --cluster-cidr: its DaemonSet (kubeadm, most installers)
    // or, on kops, its static pods (label k8s-app=kube-proxy).
    let daemonsets: Api<DaemonSet> = Api::namespaced(cluster.client.clone(), "kube-system");
    let proxy = match daemonsets.get_opt("kube-proxy").await {
        Ok(Some(ds)) => {
            ds.spec.and_then(|s| s.template.spec).map(|s| (s, "DaemonSet kube-system/kube-proxy".to_string()))
        }
        _ => match pods.list(&ListParams::default().labels("k8s-app=kube-proxy").limit(1)).await {
            Ok(list) => list.items.into_iter().next().and_then(|p| {
                let src = format!("Pod kube-system/{}", p.name_any());
                p.spec.map(|s| (s, src))
            }),
            Err(_) => None,
        },
    };
    if let Some((spec, src)) = proxy {
        if let Some(v) = flag_value(&container_args(&spec), "--cluster-cidr") {
            push_all(&mut nets.pod_cidrs, Some(v), &format!("{src} (--cluster-cidr)"));
        }
    }

    for (component, flag, is_pod) in [
        ("kube-controller-manager", "--cluster-cidr", true),
        ("kube-apiserver", "--service-cluster-ip-range", false),
        ("kube-controller-manager", "--service-cluster-ip-range", false),
    ] {
        let lp = ListParams::default().labels(&format!("component={component}")).limit(10);
        if let Ok(list) = pods.list(&lp).await {
            if let Some(p) = list.items.first() {
                let args = p.spec.as_ref().map(container_args).unwrap_or_default();
                if let Some(v) = flag_value(&args, flag) {
                    let src = format!("Pod kube-system/{} ({flag})", p.name_any());
                    let target = if is_pod { &mut nets.pod_cidrs } else { &mut nets.service_cidrs };
                    push_all(target, Some(v), &src);
                }
            }
        }
    }

    if let Ok(Some(cm)) = cms.get_opt("kube-proxy").await {
        if let Some(cfg) = cm.data.as_ref().and_then(|d| d.get("config.conf")) {
            push_all(
                &mut nets.pod_cidrs,
                yaml_field(cfg, "clusterCIDR"),
                "ConfigMap kube-system/kube-proxy (clusterCIDR)",
            );
        }
    }

    let scidrs: Api<ServiceCIDR> = Api::all(cluster.client.clone());
    if let Ok(list) = scidrs.list(&ListParams::default()).await {
        for s in list.items {
            let src = format!("ServiceCIDR {}", s.name_any());
            for c in s.spec.and_then(|s| s.cidrs).unwrap_or_default() {
                push_all(&mut nets.service_cidrs, Some(c), &src);
            }
        }
    }
    // The first address of the Service range, on every cluster, managed
    // ones included.
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    if let Ok(Some(svc)) = services.get_opt("kubernetes").await {
        let spec = svc.spec.unwrap_or_default();
        let ips = spec.cluster_ips.unwrap_or_default().into_iter().chain(spec.cluster_ip);
        for ip in ips.filter_map(|ip| ip.parse().ok()) {
            if !nets.service_ips.contains(&ip) {
                nets.service_ips.push(ip);
            }
        }
    }
    nets
}

/// Every container's command and args, in order.
fn container_args(spec: &PodSpec) -> Vec<String> {
    spec.containers.iter().flat_map(|c| c.command.iter().flatten().chain(c.args.iter().flatten())).cloned().collect()
}

/// `key: value` from a YAML document, without a YAML parser: the same
/// regex-style read Calico and the operator use for kubeadm-config.
pub fn yaml_field(doc: &str, key: &str) -> Option<String> {
    doc.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let v = rest.trim().trim_matches('"').trim_matches('\'');
        (!v.is_empty()).then(|| v.to_string())
    })
}

pub fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let prefix = format!("{flag}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&prefix) {
            Some(v.to_string())
        } else if a == flag {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

fn push_all(out: &mut Vec<SourcedCidr>, value: Option<String>, source: &str) {
    for part in value.iter().flat_map(|v| v.split(',')) {
        match part.trim().parse::<ipnet::IpNet>() {
            Ok(cidr) => out.push(SourcedCidr { cidr: cidr.trunc(), source: source.to_string() }),
            Err(_) => tracing::debug!("ignoring unparsable CIDR {part:?} from {source}"),
        }
    }
}

/// `ipv4_pools`/`ipv6_pools` of the manifest install's CNI config
/// (ConfigMap kube-system/calico-config, key cni_network_config).
pub async fn read_cni_pools(cluster: &Cluster) -> Option<CniPools> {
    let api: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "kube-system");
    let cm = api.get_opt("calico-config").await.ok().flatten()?;
    let text = cm.data.as_ref()?.get("cni_network_config")?.clone();
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut pools = Vec::new();
    let mut visit = vec![&v];
    while let Some(x) = visit.pop() {
        match x {
            serde_json::Value::Object(m) => {
                for (k, val) in m {
                    if k == "ipv4_pools" || k == "ipv6_pools" {
                        pools.extend(
                            val.as_array().into_iter().flatten().filter_map(|p| p.as_str()).map(str::to_string),
                        );
                    } else {
                        visit.push(val);
                    }
                }
            }
            serde_json::Value::Array(a) => visit.extend(a.iter()),
            _ => {}
        }
    }
    (!pools.is_empty())
        .then(|| CniPools { source: "ConfigMap kube-system/calico-config (cni_network_config)".into(), pools })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubeadm_style_fields() {
        let doc = "apiVersion: kubeadm.k8s.io/v1beta4\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: 10.0.0.0/8\n  serviceSubnet: \"10.96.0.0/12\"\n";
        assert_eq!(yaml_field(doc, "podSubnet").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(yaml_field(doc, "serviceSubnet").as_deref(), Some("10.96.0.0/12"));
        assert_eq!(yaml_field(doc, "nothing"), None);
    }

    #[test]
    fn reads_flags_both_ways() {
        let args: Vec<String> =
            ["kube-controller-manager", "--cluster-cidr=10.0.0.0/8", "--service-cluster-ip-range", "10.96.0.0/12"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        assert_eq!(flag_value(&args, "--cluster-cidr").as_deref(), Some("10.0.0.0/8"));
        assert_eq!(flag_value(&args, "--service-cluster-ip-range").as_deref(), Some("10.96.0.0/12"));
    }

    #[test]
    fn dual_stack_values_split() {
        let mut v = Vec::new();
        push_all(&mut v, Some("10.0.0.0/8,fd00::/48".into()), "x");
        assert_eq!(v.len(), 2);
    }
}
