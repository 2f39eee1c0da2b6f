//! Who syncs an object from Git: Argo CD and Flux leave labels, annotations
//! and field-manager names on what they apply. Such an object is put back
//! as Git says at the next sync, undoing a migration.

use std::collections::BTreeMap;

/// Argo CD's tracking annotation (`application.resourceTrackingMethod: annotation`).
const ARGO_TRACKING: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's default tracking label (Helm also sets it, with managed-by Helm).
const ARGO_INSTANCE: &str = "app.kubernetes.io/instance";
const FLUX_PREFIXES: &[&str] = &["kustomize.toolkit.fluxcd.io/", "helm.toolkit.fluxcd.io/"];

/// The GitOps controller that manages an object and the marker that says
/// so (`Argo CD (annotation argocd.argoproj.io/tracking-id)`), from its
/// labels, annotations and field managers; None when nothing says so.
pub fn gitops_manager(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    managers: &[String],
) -> Option<String> {
    if let Some(v) = annotations.get(ARGO_TRACKING) {
        return Some(format!("Argo CD (annotation {ARGO_TRACKING}={v})"));
    }
    if let Some(m) = managers.iter().find(|m| m.starts_with("argocd-controller") || m.starts_with("argocd-application"))
    {
        return Some(format!("Argo CD (field manager {m})"));
    }
    if let Some((k, v)) = labels.iter().find(|(k, _)| FLUX_PREFIXES.iter().any(|p| k.starts_with(p))) {
        return Some(format!("Flux (label {k}={v})"));
    }
    if let Some(m) = managers.iter().find(|m| *m == "kustomize-controller" || *m == "helm-controller") {
        return Some(format!("Flux (field manager {m})"));
    }
    let helm = labels.get(super::model::LABEL_MANAGED_BY).is_some_and(|v| v == "Helm");
    match labels.get(ARGO_INSTANCE) {
        Some(v) if !helm => Some(format!("Argo CD (label {ARGO_INSTANCE}={v})")),
        _ => None,
    }
}

/// The blocker for an object a GitOps controller manages.
pub fn gitops_blocker(object: &str, manager: &str) -> String {
    format!(
        "{object} is managed by {manager}: its next sync re-creates or re-enables it as Git says, and new pods land on the old pool again. Change it in Git (or suspend the sync) first, then re-run; --force migrates anyway"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn argo_and_flux_markers_are_recognised() {
        let none = BTreeMap::new();
        let argo = gitops_manager(&none, &map(&[(ARGO_TRACKING, "net:crd.projectcalico.org/IPPool:/p")]), &[]);
        assert!(argo.unwrap().starts_with("Argo CD (annotation"));
        assert!(gitops_manager(&map(&[(ARGO_INSTANCE, "net")]), &none, &[]).unwrap().contains("label"));
        let managers = ["argocd-controller".to_string()];
        assert_eq!(gitops_manager(&none, &none, &managers).unwrap(), "Argo CD (field manager argocd-controller)");
        let flux = gitops_manager(&map(&[("kustomize.toolkit.fluxcd.io/name", "infra")]), &none, &[]);
        assert_eq!(flux.unwrap(), "Flux (label kustomize.toolkit.fluxcd.io/name=infra)");
        assert!(gitops_manager(&none, &none, &["helm-controller".into()]).unwrap().starts_with("Flux"));
        // Helm sets app.kubernetes.io/instance too: that is the Helm warning's business.
        let helm = map(&[(ARGO_INSTANCE, "calico"), ("app.kubernetes.io/managed-by", "Helm")]);
        assert_eq!(gitops_manager(&helm, &none, &["kubectl-client-side-apply".into()]), None);
    }
}
