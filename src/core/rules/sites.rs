//! Where each kind of object writes CIDRs: every list of them, with its
//! JSON pointer, its field path for people, and how a CIDR is added to it.

use ipnet::IpNet;
use serde_json::Value;

use super::{parse_net, text, RuleClass, RuleObject, MASQ_KEY};

/// How the new CIDR goes into a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Addition {
    /// Append the CIDR string.
    Cidr,
    /// Append a peer `{ipBlock: {cidr: NEW}}` (Kubernetes `from`/`to`).
    IpBlockPeer,
    /// An `ipBlock.except` list: append only when the block's own `cidr`
    /// strictly contains the new CIDR (otherwise the API refuses it, and
    /// the block does not reach the new pool anyway).
    ExceptOf(Option<IpNet>),
    /// A list inside a text document (the ip-masq-agent's `config`).
    Text(&'static str),
    /// Not changed; the reason is shown instead.
    Never(&'static str),
}

/// One CIDR as written, with its field path.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub field: String,
    pub cidr: String,
    /// For an `ipBlock` peer: its `except` list (the peer covers only what is left).
    pub except: Vec<IpNet>,
}

/// A list of CIDRs in an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// `spec.ingress[0].source.nets`.
    pub field: String,
    /// `/spec/ingress/0/source/nets`.
    pub pointer: String,
    pub entries: Vec<Entry>,
    pub addition: Addition,
}

impl Site {
    /// Some entry covers `net` (an ipBlock minus its excepts).
    pub fn covers(&self, net: &IpNet) -> bool {
        self.entries.iter().any(|e| {
            parse_net(&e.cidr).is_some_and(|c| c.contains(net)) && !e.except.iter().any(|x| super::overlaps(x, net))
        })
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn plain_list(v: &Value, pointer: &str, field: &str, addition: Addition) -> Option<Site> {
    let list = strings(v.pointer(pointer));
    (!list.is_empty()).then(|| Site {
        field: field.to_string(),
        pointer: pointer.to_string(),
        entries: list
            .into_iter()
            .enumerate()
            .map(|(i, c)| Entry { field: format!("{field}[{i}]"), cidr: c, except: vec![] })
            .collect(),
        addition,
    })
}

/// Every CIDR list in `obj`.
pub fn sites(obj: &RuleObject) -> Vec<Site> {
    let b = &obj.body;
    match obj.class {
        RuleClass::KubernetesPolicy => kubernetes_policy(b),
        RuleClass::CalicoPolicy => calico_policy(b),
        RuleClass::NetworkSet => plain_list(b, "/spec/nets", "spec.nets", Addition::Cidr).into_iter().collect(),
        RuleClass::IpReservation => plain_list(
            b,
            "/spec/reservedCIDRs",
            "spec.reservedCIDRs",
            Addition::Never("not copied: a reservation is about specific addresses"),
        )
        .into_iter()
        .collect(),
        RuleClass::IpMasqAgent => ip_masq_agent(b),
        RuleClass::KubeProxy => kube_proxy(b),
        RuleClass::Pod => vec![],
    }
}

fn kubernetes_policy(b: &Value) -> Vec<Site> {
    let mut out = Vec::new();
    for (dir, peers_key) in [("ingress", "from"), ("egress", "to")] {
        let rules = b.pointer(&format!("/spec/{dir}")).and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let peers = rule.get(peers_key).and_then(Value::as_array).cloned().unwrap_or_default();
            let list_field = format!("spec.{dir}[{i}].{peers_key}");
            let list_ptr = format!("/spec/{dir}/{i}/{peers_key}");
            let mut entries = Vec::new();
            for (j, peer) in peers.iter().enumerate() {
                let Some(cidr) = peer.pointer("/ipBlock/cidr").and_then(Value::as_str) else { continue };
                let except = strings(peer.pointer("/ipBlock/except"));
                entries.push(Entry {
                    field: format!("{list_field}[{j}].ipBlock.cidr"),
                    cidr: cidr.to_string(),
                    except: except.iter().filter_map(|x| parse_net(x)).collect(),
                });
                if !except.is_empty() {
                    out.push(Site {
                        field: format!("{list_field}[{j}].ipBlock.except"),
                        pointer: format!("{list_ptr}/{j}/ipBlock/except"),
                        entries: except
                            .into_iter()
                            .enumerate()
                            .map(|(k, c)| Entry {
                                field: format!("{list_field}[{j}].ipBlock.except[{k}]"),
                                cidr: c,
                                except: vec![],
                            })
                            .collect(),
                        addition: Addition::ExceptOf(parse_net(cidr)),
                    });
                }
            }
            if !entries.is_empty() {
                out.push(Site { field: list_field, pointer: list_ptr, entries, addition: Addition::IpBlockPeer });
            }
        }
    }
    // The peers list first: a reader sees the cidr before its excepts.
    out.sort_by_key(|s| s.addition != Addition::IpBlockPeer);
    out
}

fn calico_policy(b: &Value) -> Vec<Site> {
    let mut out = Vec::new();
    for dir in ["ingress", "egress"] {
        let n = b.pointer(&format!("/spec/{dir}")).and_then(Value::as_array).map_or(0, Vec::len);
        for i in 0..n {
            for side in ["source", "destination"] {
                for key in ["nets", "notNets"] {
                    let ptr = format!("/spec/{dir}/{i}/{side}/{key}");
                    let field = format!("spec.{dir}[{i}].{side}.{key}");
                    out.extend(plain_list(b, &ptr, &field, Addition::Cidr));
                }
            }
        }
    }
    out
}

fn ip_masq_agent(b: &Value) -> Vec<Site> {
    let Some(config) = b.pointer("/data/config").and_then(Value::as_str) else { return vec![] };
    let list = text::list_of(config, MASQ_KEY).unwrap_or_default();
    if list.is_empty() {
        return vec![];
    }
    vec![Site {
        field: format!("data.config {MASQ_KEY}"),
        pointer: "/data/config".into(),
        entries: list
            .into_iter()
            .enumerate()
            .map(|(i, c)| Entry { field: format!("data.config {MASQ_KEY}[{i}]"), cidr: c, except: vec![] })
            .collect(),
        addition: Addition::Text(MASQ_KEY),
    }]
}

fn kube_proxy(b: &Value) -> Vec<Site> {
    let mut out = Vec::new();
    let containers = b.pointer("/spec/template/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    for (c, container) in containers.iter().enumerate() {
        for key in ["command", "args"] {
            let words = strings(container.get(key));
            for (k, w) in words.iter().enumerate() {
                let (value, at) = if let Some(v) = w.strip_prefix("--cluster-cidr=") {
                    (v.to_string(), k)
                } else if w == "--cluster-cidr" && k + 1 < words.len() {
                    (words[k + 1].clone(), k + 1)
                } else {
                    continue;
                };
                let field = format!("spec.template.spec.containers[{c}].{key}[{at}] (--cluster-cidr)");
                out.push(Site {
                    pointer: format!("/spec/template/spec/containers/{c}/{key}/{at}"),
                    entries: value
                        .split(',')
                        .map(|v| Entry { field: field.clone(), cidr: v.trim().to_string(), except: vec![] })
                        .collect(),
                    field,
                    addition: Addition::Never(
                        "not changed: kube-proxy takes one CIDR per family; set --cluster-cidr to a range holding both pools (the cluster CIDR) and restart kube-proxy",
                    ),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::ObjectRef;
    use super::*;
    use serde_json::json;

    pub(crate) fn obj(class: RuleClass, body: Value) -> RuleObject {
        RuleObject {
            class,
            target: ObjectRef {
                api_version: "v1".into(),
                kind: "K".into(),
                plural: "ks".into(),
                namespace: None,
                name: "x".into(),
            },
            body,
        }
    }

    #[test]
    fn kubernetes_policy_peers_and_excepts() {
        let o = obj(
            RuleClass::KubernetesPolicy,
            json!({"spec": {
                "ingress": [{"from": [{"podSelector": {}}, {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["192.168.0.0/16"]}}]}]}}),
        );
        let s = sites(&o);
        let fields: Vec<_> = s.iter().map(|s| (s.field.as_str(), s.pointer.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                ("spec.ingress[0].from", "/spec/ingress/0/from"),
                ("spec.egress[0].to", "/spec/egress/0/to"),
                ("spec.ingress[0].from[1].ipBlock.except", "/spec/ingress/0/from/1/ipBlock/except"),
                ("spec.egress[0].to[0].ipBlock.except", "/spec/egress/0/to/0/ipBlock/except"),
            ]
        );
        assert_eq!(s[0].entries[0].field, "spec.ingress[0].from[1].ipBlock.cidr");
        assert_eq!(s[2].entries[0].field, "spec.ingress[0].from[1].ipBlock.except[0]");
        // 0.0.0.0/0 except the pods does not cover the pods.
        assert!(!s[1].covers(&"192.168.0.0/16".parse().unwrap()));
        assert!(s[1].covers(&"10.0.0.0/16".parse().unwrap()));
    }

    #[test]
    fn calico_policy_sets_masq_and_kube_proxy() {
        let gnp = obj(
            RuleClass::CalicoPolicy,
            json!({"spec": {"ingress": [{"action": "Allow", "source": {"nets": ["192.168.0.0/16"]}, "destination": {"notNets": ["10.9.0.0/16"]}}],
                            "egress": [{"action": "Allow"}]}}),
        );
        let s = sites(&gnp);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].entries[0].field, "spec.ingress[0].source.nets[0]");
        assert_eq!(s[1].pointer, "/spec/ingress/0/destination/notNets");
        let set = obj(RuleClass::NetworkSet, json!({"spec": {"nets": ["192.168.0.0/16", "1.2.3.4"]}}));
        assert_eq!(sites(&set)[0].entries[1].field, "spec.nets[1]");
        let cm = obj(RuleClass::IpMasqAgent, json!({"data": {"config": "nonMasqueradeCIDRs:\n  - 192.168.0.0/16\n"}}));
        assert_eq!(sites(&cm)[0].entries[0].field, "data.config nonMasqueradeCIDRs[0]");
        let ds = obj(
            RuleClass::KubeProxy,
            json!({"spec": {"template": {"spec": {"containers": [{"command": ["kube-proxy", "--cluster-cidr", "192.168.0.0/16,fd00::/48"]}]}}}}),
        );
        let s = sites(&ds);
        assert_eq!(s[0].entries.len(), 2);
        assert_eq!(s[0].field, "spec.template.spec.containers[0].command[2] (--cluster-cidr)");
        assert!(matches!(s[0].addition, Addition::Never(_)));
    }
}
