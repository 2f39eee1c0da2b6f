package main

// The "realistic" scenario: workloads shaped like a production cluster's, every one behind a
// Service and a PodDisruptionBudget of a different kind, for the "never below the budget" tests.

import (
	"context"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// realisticWorkloads are the names --omit accepts (the realistic scenario's workloads).
var realisticWorkloads = []string{"coredns", "web", "api", "front-a", "front-b", "legacy", "single", "db", "agent"}

// parseOmit validates --omit (comma-separated workload names of the realistic scenario).
func parseOmit(scenario, list string) (map[string]bool, error) {
	out := map[string]bool{}
	if strings.TrimSpace(list) == "" {
		return out, nil
	}
	if scenario != "realistic" {
		return nil, fmt.Errorf("--omit only applies to --scenario realistic")
	}
	known := map[string]bool{}
	for _, w := range realisticWorkloads {
		known[w] = true
	}
	for _, w := range strings.Split(list, ",") {
		w = strings.TrimSpace(w)
		if w == "" {
			continue
		}
		if !known[w] {
			return nil, fmt.Errorf("--omit %q: not a workload of the realistic scenario (%s)", w, strings.Join(realisticWorkloads, ", "))
		}
		out[w] = true
	}
	return out, nil
}

func pct(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }

// service creates a ClusterIP Service (or a headless one) selecting `selector`.
func (s *seeder) service(ctx context.Context, ns, name string, selector map[string]string, headless bool) error {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{Selector: selector, Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	if headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	_, err := s.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	return ignoreExists(err)
}

// pdbSel creates a PDB with an explicit selector.
func (s *seeder) pdbSel(ctx context.Context, ns, name string, selector map[string]string, minAvail, maxUnavail *intstr.IntOrString) error {
	p := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: selector},
			MinAvailable: minAvail, MaxUnavailable: maxUnavail},
	}
	_, err := s.kube.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, p, metav1.CreateOptions{})
	return ignoreExists(err)
}

// deploymentWith creates a Deployment whose pods carry `extra` labels besides app=<name>.
func (s *seeder) deploymentWith(ctx context.Context, ns, name string, replicas int32, strategy *appsv1.DeploymentStrategy, extra map[string]string) error {
	t := podTemplate(name, nil)
	for k, v := range extra {
		t.Labels[k] = v
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Selector: sel(name), Template: t},
	}
	if strategy != nil {
		d.Spec.Strategy = *strategy
	}
	_, err := s.kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	return ignoreExists(err)
}

func (s *seeder) realistic(ctx context.Context) error {
	omit, err := parseOmit(s.sc.name, s.opts.omit)
	if err != nil {
		return err
	}
	for _, ns := range []string{"shop", "data"} {
		if err := s.ns(ctx, ns, nil); err != nil {
			return err
		}
	}
	app := func(n string) map[string]string { return map[string]string{"app": n} }
	steps := map[string][]func() error{
		// coredns 2, PDB maxUnavailable 1, Service kube-dns (as kubeadm installs it).
		"coredns": {
			func() error { return s.deployment(ctx, "kube-system", "coredns", 2, nil) },
			func() error { return s.pdb(ctx, "kube-system", "coredns", nil, iv(1)) },
			func() error { return s.service(ctx, "kube-system", "kube-dns", app("coredns"), false) },
		},
		// web 10, default strategy (RollingUpdate 25%/25%: 2 unavailable at once), PDB maxUnavailable 1.
		"web": {
			func() error { return s.deployment(ctx, "shop", "web", 10, nil) },
			func() error { return s.pdb(ctx, "shop", "web", nil, iv(1)) },
			func() error { return s.service(ctx, "shop", "web", app("web"), false) },
		},
		// api 6, PDB minAvailable 80% (= ceil(4.8) = 5).
		"api": {
			func() error { return s.deployment(ctx, "shop", "api", 6, nil) },
			func() error { return s.pdb(ctx, "shop", "api", pct("80%"), nil) },
			func() error { return s.service(ctx, "shop", "api", app("api"), false) },
		},
		// front-a 3 + front-b 3 (label tier=front) under ONE PDB "front" maxUnavailable 1.
		"front-a": {
			func() error {
				return s.deploymentWith(ctx, "shop", "front-a", 3, nil, map[string]string{"tier": "front"})
			},
			func() error { return s.service(ctx, "shop", "front-a", app("front-a"), false) },
		},
		"front-b": {
			func() error {
				return s.deploymentWith(ctx, "shop", "front-b", 3, nil, map[string]string{"tier": "front"})
			},
			func() error { return s.service(ctx, "shop", "front-b", app("front-b"), false) },
		},
		// legacy 2, Recreate, PDB minAvailable 1.
		"legacy": {
			func() error {
				return s.deployment(ctx, "shop", "legacy", 2, &appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType})
			},
			func() error { return s.pdb(ctx, "shop", "legacy", iv(1), nil) },
			func() error { return s.service(ctx, "shop", "legacy", app("legacy"), false) },
		},
		// single 1, PDB minAvailable 1: allows no disruption at all.
		"single": {
			func() error { return s.deployment(ctx, "shop", "single", 1, nil) },
			func() error { return s.pdb(ctx, "shop", "single", iv(1), nil) },
			func() error { return s.service(ctx, "shop", "single", app("single"), false) },
		},
		// db: StatefulSet 3, Parallel, headless Service db, PDB maxUnavailable 1.
		"db": {
			func() error { return s.service(ctx, "data", "db", app("db"), true) },
			func() error {
				ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "data", Labels: app("db")},
					Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](3), ServiceName: "db", Selector: sel("db"),
						PodManagementPolicy: appsv1.ParallelPodManagement, Template: podTemplate("db", nil)}}
				_, err := s.kube.AppsV1().StatefulSets("data").Create(ctx, ss, metav1.CreateOptions{})
				return ignoreExists(err)
			},
			func() error { return s.pdb(ctx, "data", "db", nil, iv(1)) },
		},
		// agent: DaemonSet, RollingUpdate maxUnavailable 2, Service agent, no PDB.
		"agent": {
			func() error {
				ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "data", Labels: app("agent")},
					Spec: appsv1.DaemonSetSpec{Selector: sel("agent"), Template: podTemplate("agent", nil),
						UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
							RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: iv(2)}}}}
				_, err := s.kube.AppsV1().DaemonSets("data").Create(ctx, ds, metav1.CreateOptions{})
				return ignoreExists(err)
			},
			func() error { return s.service(ctx, "data", "agent", app("agent"), false) },
		},
	}
	for _, w := range realisticWorkloads {
		if omit[w] {
			continue
		}
		for _, st := range steps[w] {
			if err := st(); err != nil {
				return fmt.Errorf("%s: %w", w, err)
			}
		}
	}
	// One PDB over both front Deployments, unless both are omitted.
	if !omit["front-a"] || !omit["front-b"] {
		if err := s.pdbSel(ctx, "shop", "front", map[string]string{"tier": "front"}, nil, iv(1)); err != nil {
			return fmt.Errorf("front: %w", err)
		}
	}
	if len(omit) > 0 {
		var names []string
		for w := range omit {
			names = append(names, w)
		}
		sort.Strings(names)
		logf("realistic: omitted %s", strings.Join(names, ", "))
	}
	return nil
}
