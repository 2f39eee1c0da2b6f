package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// Pod Security admission (--pod-security LEVEL): kube-apiserver's built-in PodSecurity plugin
// enforces LEVEL in every namespace that carries no pod-security.kubernetes.io/enforce label of its
// own, as a cluster whose admins set a cluster-wide default does. kube-system is exempt (as on real
// clusters); the namespaces the scenarios create are labelled enforce=privileged by the seeder (see
// seeder.ns), so the scenario workloads (hostNetwork pods, no securityContext) still run. Every other
// namespace (default, and any a client creates without a label) gets LEVEL.

const labelPSAEnforce = "pod-security.kubernetes.io/enforce"

// podSecurityLevels are the levels of the Pod Security Standards.
var podSecurityLevels = []string{"privileged", "baseline", "restricted"}

func validPodSecurityLevel(level string) error {
	if level == "" {
		return nil
	}
	for _, l := range podSecurityLevels {
		if l == level {
			return nil
		}
	}
	return fmt.Errorf("--pod-security %q: want one of privileged, baseline, restricted", level)
}

// writeAdmissionConfig writes DIR/admission.yaml for --admission-control-config-file.
func writeAdmissionConfig(dir, level string) (string, error) {
	cfg := fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: %q
      enforce-version: latest
    exemptions:
      usernames: []
      runtimeClasses: []
      namespaces: [kube-system]
`, level)
	path := filepath.Join(dir, "admission.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return "", err
	}
	return path, nil
}
