//! Permission preflight: one SelfSubjectAccessReview per verb and resource
//! a run needs, asked before the first write so a missing permission is
//! reported (all of them at once) while nothing has changed yet.

use futures::future::join_all;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use super::Cluster;
use crate::error::{Error, KubeResultExt, Result};

/// One permission: `verb group/resource[/subresource]` in a namespace (None = cluster-wide or all namespaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub verb: &'static str,
    pub group: String,
    pub resource: String,
    pub subresource: Option<&'static str>,
    pub namespace: Option<String>,
}

impl Need {
    pub fn new(verb: &'static str, group: &str, resource: &str, namespace: Option<&str>) -> Need {
        Need {
            verb,
            group: group.to_string(),
            resource: resource.to_string(),
            subresource: None,
            namespace: namespace.map(str::to_string),
        }
    }

    pub fn sub(mut self, subresource: &'static str) -> Need {
        self.subresource = Some(subresource);
        self
    }

    /// The arguments of `kubectl auth can-i` for this need.
    pub fn can_i_args(&self) -> String {
        let res =
            if self.group.is_empty() { self.resource.clone() } else { format!("{}.{}", self.resource, self.group) };
        let sub = self.subresource.map(|s| format!(" --subresource={s}")).unwrap_or_default();
        let ns = match &self.namespace {
            Some(n) => format!(" -n {n}"),
            None => String::new(),
        };
        format!("{} {res}{sub}{ns}", self.verb)
    }
}

/// Ask the API server about every need; `MissingPermissions` lists the denied ones.
pub async fn check(cluster: &Cluster, needs: &[Need]) -> Result<()> {
    let api: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let reviews = needs.iter().map(|n| {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(n.verb.to_string()),
                    group: Some(n.group.clone()),
                    resource: Some(n.resource.clone()),
                    subresource: n.subresource.map(str::to_string),
                    namespace: n.namespace.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api = api.clone();
        async move { api.create(&PostParams::default(), &review).await }
    });
    let mut missing = Vec::new();
    for (need, answer) in needs.iter().zip(join_all(reviews).await) {
        let answer = answer.op("create", "selfsubjectaccessreviews.authorization.k8s.io", None)?;
        if !answer.status.is_some_and(|s| s.allowed) {
            missing.push(need.can_i_args());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingPermissions(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn can_i_arguments() {
        assert_eq!(
            Need::new("patch", "crd.projectcalico.org", "ippools", None).can_i_args(),
            "patch ippools.crd.projectcalico.org"
        );
        assert_eq!(
            Need::new("create", "", "pods", Some("shop")).sub("eviction").can_i_args(),
            "create pods --subresource=eviction -n shop"
        );
    }
}
