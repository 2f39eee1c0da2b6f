//! calicoctl's (and the operator's) rules for a new pool: CIDR, family,
//! block size, encapsulation, name and node selector.

use crate::core::cidr::{block_size_range, is_link_local};
use crate::core::model::Pool;

/// calicoctl's (and the operator's) rules for a new pool.
pub(super) fn validate_new_pool(to: &Pool, from: &Pool) -> Vec<String> {
    let mut reasons = Vec::new();
    let v4 = to.cidr.addr().is_ipv4();
    if v4 != from.cidr.addr().is_ipv4() {
        reasons.push(format!(
            "--to {} is {} but IPPool {} ({}) is {}: a migration stays within one IP family",
            to.cidr,
            if v4 { "IPv4" } else { "IPv6" },
            from.name,
            from.cidr,
            if v4 { "IPv6" } else { "IPv4" }
        ));
    }
    let (lo, hi) = block_size_range(v4);
    if to.block_size < lo || to.block_size > hi {
        reasons.push(format!(
            "blockSize {} is out of range: {} pools need {lo}..={hi}",
            to.block_size,
            if v4 { "IPv4" } else { "IPv6" }
        ));
    } else if to.block_size < to.cidr.prefix_len() {
        reasons.push(format!(
            "--to {} is smaller than one block (/{}); use a larger CIDR or a larger --block-size",
            to.cidr, to.block_size
        ));
    }
    if is_link_local(&to.cidr) {
        reasons.push(format!("--to {} overlaps the link-local range, which Calico does not allow", to.cidr));
    }
    if !v4 && to.ipip_mode.enabled() {
        reasons.push(
            "IPv6 pools cannot use IPIP; use --ipip-mode Never (and --vxlan-mode if you need encapsulation)".into(),
        );
    }
    if to.ipip_mode.enabled() && to.vxlan_mode.enabled() {
        reasons.push(format!(
            "IPIP ({}) and VXLAN ({}) cannot both be enabled; set one of --ipip-mode/--vxlan-mode to Never",
            to.ipip_mode.as_str(),
            to.vxlan_mode.as_str()
        ));
    }
    if to.node_selector.trim().is_empty() {
        reasons.push("--node-selector must not be empty (use all())".into());
    } else if !balanced(&to.node_selector) {
        reasons.push(format!(
            "--node-selector {:?} is not a valid Calico selector: unbalanced brackets or quotes",
            to.node_selector
        ));
    }
    if !is_dns_subdomain(&to.name) {
        reasons.push(format!("--name {:?} is not a valid object name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters", to.name));
    }
    reasons
}

/// Brackets and quotes pair up (outside quotes); anything else is left to Calico.
fn balanced(s: &str) -> bool {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '{' | '[') => stack.push(c),
            (None, ')') if stack.pop() != Some('(') => return false,
            (None, '}') if stack.pop() != Some('{') => return false,
            (None, ']') if stack.pop() != Some('[') => return false,
            _ => {}
        }
    }
    quote.is_none() && stack.is_empty()
}

/// A Kubernetes object name (RFC 1123 subdomain), as IPPool names must be.
fn is_dns_subdomain(name: &str) -> bool {
    let ok_end = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && ok_end(name.chars().next())
        && ok_end(name.chars().last())
}
