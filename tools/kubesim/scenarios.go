package main

import (
	"context"
	"fmt"
	"sync"

	apiv3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

type scenario struct {
	name        string
	clusterCIDR string
	serviceCIDR string
	pools       []poolDef
}

func getScenario(name string) (*scenario, error) {
	seed := &scenario{name: name, clusterCIDR: "10.0.0.0/8", serviceCIDR: "10.96.0.0/12",
		pools: []poolDef{{name: "default-ipv4-ippool", cidr: "192.168.0.0/16", ipipMode: apiv3.IPIPModeAlways, nat: true}}}
	switch name {
	case "seed", "empty", "scale", "bench", "realistic", "small":
		return seed, nil
	case "kops":
		return &scenario{name: name, clusterCIDR: "100.96.0.0/11", serviceCIDR: "100.64.0.0/13",
			pools: []poolDef{{name: "default-ipv4-ippool", cidr: "100.64.0.0/10", ipipMode: apiv3.IPIPModeCrossSubnet, nat: true}}}, nil
	case "zones":
		sc := &scenario{name: name, clusterCIDR: "10.0.0.0/8", serviceCIDR: "10.96.0.0/12"}
		for i, z := range zoneNames {
			sc.pools = append(sc.pools, poolDef{name: "zone-" + z, cidr: fmt.Sprintf("10.%d.0.0/16", i+1), ipipMode: apiv3.IPIPModeAlways,
				nat: true, nodeSelector: fmt.Sprintf("%s == '%s'", labelZone, z)})
		}
		return sc, nil
	}
	return nil, fmt.Errorf("unknown scenario %q (seed|kops|empty|scale|bench|realistic|small|zones)", name)
}

// The zones scenario: node i is in zone zoneNames[i%3], each zone has its own pool.
const labelZone = "topology.kubernetes.io/zone"

var zoneNames = []string{"a", "b", "c"}

type seeder struct {
	kube kubernetes.Interface
	sc   *scenario
	opts *flags
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// ns creates a scenario namespace. With --pod-security it is labelled enforce=privileged: the
// scenario workloads (no securityContext, a hostNetwork pod) are not what the flag tests.
func (s *seeder) ns(ctx context.Context, name string, anns map[string]string) error {
	var labels map[string]string
	if s.opts.podSecurity != "" {
		labels = map[string]string{labelPSAEnforce: "privileged"}
	}
	_, err := s.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: anns, Labels: labels}}, metav1.CreateOptions{})
	return ignoreExists(err)
}

func podTemplate(app string, anns map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}, Annotations: anns},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{{Name: app, Image: "registry.k8s.io/pause:3.10"}},
			TerminationGracePeriodSeconds: ptr.To[int64](30),
		},
	}
}

func sel(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

func (s *seeder) deployment(ctx context.Context, ns, name string, replicas int32, strategy *appsv1.DeploymentStrategy) error {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec:       appsv1.DeploymentSpec{Replicas: &replicas, Selector: sel(name), Template: podTemplate(name, nil)},
	}
	if strategy != nil {
		d.Spec.Strategy = *strategy
	}
	_, err := s.kube.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	return ignoreExists(err)
}

func (s *seeder) pdb(ctx context.Context, ns, name string, minAvail, maxUnavail *intstr.IntOrString) error {
	p := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: sel(name), MinAvailable: minAvail, MaxUnavailable: maxUnavail},
	}
	_, err := s.kube.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, p, metav1.CreateOptions{})
	return ignoreExists(err)
}

func iv(i int) *intstr.IntOrString { v := intstr.FromInt32(int32(i)); return &v }

func (s *seeder) kubeadmData(ctx context.Context) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubeadm-config", Namespace: "kube-system"},
		Data: map[string]string{"ClusterConfiguration": fmt.Sprintf(`apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
clusterName: kubesim
kubernetesVersion: v1.33.13
controlPlaneEndpoint: 127.0.0.1:6443
networking:
  dnsDomain: cluster.local
  podSubnet: %s
  serviceSubnet: %s
`, s.sc.clusterCIDR, s.sc.serviceCIDR)}}
	if _, err := s.kube.CoreV1().ConfigMaps("kube-system").Create(ctx, cm, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	kp := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system", Labels: map[string]string{"app": "kube-proxy"}},
		Data: map[string]string{"config.conf": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clusterCIDR: %s
mode: iptables
`, s.sc.clusterCIDR)}}
	if _, err := s.kube.CoreV1().ConfigMaps("kube-system").Create(ctx, kp, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	node0 := "kubesim-node-0"
	mirror := func(component string, cmd []string) error {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: component + "-" + node0, Namespace: "kube-system",
				Labels:      map[string]string{"component": component, "tier": "control-plane"},
				Annotations: map[string]string{"kubernetes.io/config.source": "file", "kubernetes.io/config.mirror": "kubesim"}},
			Spec: corev1.PodSpec{NodeName: node0, HostNetwork: true, PriorityClassName: "system-node-critical",
				Containers: []corev1.Container{{Name: component, Image: "registry.k8s.io/" + component + ":v1.33.13", Command: cmd}}},
		}
		_, err := s.kube.CoreV1().Pods("kube-system").Create(ctx, p, metav1.CreateOptions{})
		return ignoreExists(err)
	}
	if err := mirror("kube-apiserver", []string{"kube-apiserver", "--advertise-address=127.0.1.1", "--allow-privileged=true",
		"--authorization-mode=Node,RBAC", "--service-cluster-ip-range=" + s.sc.serviceCIDR, "--secure-port=6443"}); err != nil {
		return err
	}
	return mirror("kube-controller-manager", []string{"kube-controller-manager", "--allocate-node-cidrs=true",
		"--cluster-cidr=" + s.sc.clusterCIDR, "--service-cluster-ip-range=" + s.sc.serviceCIDR, "--leader-elect=true"})
}

func (s *seeder) coredns(ctx context.Context) error {
	if err := s.deployment(ctx, "kube-system", "coredns", 2, nil); err != nil {
		return err
	}
	return s.pdb(ctx, "kube-system", "coredns", nil, iv(1))
}

func (s *seeder) run(ctx context.Context) error {
	if s.sc.name == "empty" {
		return s.kubeadmData(ctx)
	}
	if err := s.kubeadmData(ctx); err != nil {
		return err
	}
	switch s.sc.name {
	case "seed":
		return s.seed(ctx)
	case "kops":
		return s.kops(ctx)
	case "scale":
		return s.scale(ctx)
	case "bench":
		return s.bench(ctx)
	case "realistic":
		return s.realistic(ctx)
	case "small":
		return s.small(ctx)
	case "zones":
		return s.zones(ctx)
	}
	return nil
}

// small: a few pods for the IP-family and encapsulation tests (coredns 2, shop/web 2, shop/db 1).
func (s *seeder) small(ctx context.Context) error {
	if err := s.coredns(ctx); err != nil {
		return err
	}
	if err := s.ns(ctx, "shop", nil); err != nil {
		return err
	}
	if err := s.deployment(ctx, "shop", "web", 2, nil); err != nil {
		return err
	}
	if err := s.pdb(ctx, "shop", "web", nil, iv(1)); err != nil {
		return err
	}
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](1), ServiceName: "db", Selector: sel("db"), Template: podTemplate("db", nil)}}
	_, err := s.kube.AppsV1().StatefulSets("shop").Create(ctx, ss, metav1.CreateOptions{})
	return ignoreExists(err)
}

// zones: namespace shop, Deployment web-<zone> (2 replicas, nodeSelector on the zone label, PDB
// maxUnavailable 1) for each zone.
func (s *seeder) zones(ctx context.Context) error {
	if err := s.ns(ctx, "shop", nil); err != nil {
		return err
	}
	for _, z := range zoneNames {
		name := "web-" + z
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": name}},
			Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2), Selector: sel(name), Template: podTemplate(name, nil)},
		}
		d.Spec.Template.Spec.NodeSelector = map[string]string{labelZone: z}
		if _, err := s.kube.AppsV1().Deployments("shop").Create(ctx, d, metav1.CreateOptions{}); ignoreExists(err) != nil {
			return err
		}
		if err := s.pdb(ctx, "shop", name, nil, iv(1)); err != nil {
			return err
		}
	}
	return nil
}

func (s *seeder) seed(ctx context.Context) error {
	if err := s.coredns(ctx); err != nil {
		return err
	}
	if err := s.ns(ctx, "shop", nil); err != nil {
		return err
	}
	if err := s.ns(ctx, "legacy", map[string]string{annIPv4Pools: `["default-ipv4-ippool"]`}); err != nil {
		return err
	}
	steps := []func() error{
		func() error { return s.deployment(ctx, "shop", "web", 3, nil) },
		func() error { return s.pdb(ctx, "shop", "web", iv(2), nil) },
		func() error {
			return s.deployment(ctx, "shop", "api", 2, &appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: iv(0), MaxSurge: iv(1)}})
		},
		func() error { return s.pdb(ctx, "shop", "api", nil, iv(1)) },
		func() error {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
				Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"},
					Ports: []corev1.ServicePort{{Name: "pg", Port: 5432}}}}
			_, err := s.kube.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{})
			return ignoreExists(err)
		},
		func() error {
			ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
				Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), ServiceName: "db", Selector: sel("db"), Template: podTemplate("db", nil)}}
			_, err := s.kube.AppsV1().StatefulSets("shop").Create(ctx, ss, metav1.CreateOptions{})
			return ignoreExists(err)
		},
		func() error {
			ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "shop"},
				Spec: appsv1.DaemonSetSpec{Selector: sel("agent"), Template: podTemplate("agent", nil)}}
			_, err := s.kube.AppsV1().DaemonSets("shop").Create(ctx, ds, metav1.CreateOptions{})
			return ignoreExists(err)
		},
		func() error {
			t := podTemplate("report", map[string]string{annComplete: "3600s"})
			t.Labels = nil
			t.Spec.RestartPolicy = corev1.RestartPolicyNever
			j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "report", Namespace: "shop"},
				Spec: batchv1.JobSpec{Template: t, BackoffLimit: ptr.To[int32](2)}}
			_, err := s.kube.BatchV1().Jobs("shop").Create(ctx, j, metav1.CreateOptions{})
			return ignoreExists(err)
		},
		func() error {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "shop", Labels: map[string]string{"app": "debug"}},
				Spec: podTemplate("debug", nil).Spec}
			_, err := s.kube.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
			return ignoreExists(err)
		},
		func() error {
			p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "node-probe", Namespace: "shop", Labels: map[string]string{"app": "node-probe"}},
				Spec: podTemplate("node-probe", nil).Spec}
			p.Spec.HostNetwork = true
			_, err := s.kube.CoreV1().Pods("shop").Create(ctx, p, metav1.CreateOptions{})
			return ignoreExists(err)
		},
		func() error { return s.deployment(ctx, "legacy", "old-app", 1, nil) },
	}
	for _, st := range steps {
		if err := st(); err != nil {
			return err
		}
	}
	return nil
}

func (s *seeder) kops(ctx context.Context) error {
	if err := s.coredns(ctx); err != nil {
		return err
	}
	if err := s.ns(ctx, "shop", nil); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		n    int32
	}{{"web", 3}, {"api", 2}, {"cart", 2}} {
		if err := s.deployment(ctx, "shop", d.name, d.n, nil); err != nil {
			return err
		}
		if err := s.pdb(ctx, "shop", d.name, nil, iv(1)); err != nil {
			return err
		}
	}
	return nil
}

func parallel(n, workers int, f func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, workers)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func (s *seeder) scale(ctx context.Context) error {
	if err := s.ns(ctx, "scale", nil); err != nil {
		return err
	}
	total := s.opts.pods
	n := (total + 99) / 100
	return parallel(n, 10, func(i int) error {
		r := int32(100)
		if rem := total - i*100; rem < 100 {
			r = int32(rem)
		}
		name := fmt.Sprintf("rs-%03d", i)
		rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "scale", Labels: map[string]string{"app": name}},
			Spec: appsv1.ReplicaSetSpec{Replicas: &r, Selector: sel(name), Template: podTemplate(name, nil)}}
		_, err := s.kube.AppsV1().ReplicaSets("scale").Create(ctx, rs, metav1.CreateOptions{})
		return ignoreExists(err)
	})
}

// benchNamespace is where bench workload i lives. kube-controller-manager's
// ReplicaSet, Deployment and disruption controllers scan their namespace's
// pods on every sync, so a namespace of 10 000 pods costs each pod moved 10
// times the CPU a namespace of 1 000 does; --bench-per-namespace keeps the
// namespace size fixed as the bench grows, as clusters of that size are laid out.
func (s *seeder) benchNamespace(i int) string {
	if s.opts.benchPerNS <= 0 {
		return "bench"
	}
	return fmt.Sprintf("bench-%03d", i/s.opts.benchPerNS)
}

func (s *seeder) bench(ctx context.Context) error {
	for i := 0; i < max(s.opts.deployments, 1); i++ {
		if i == 0 || s.benchNamespace(i) != s.benchNamespace(i-1) {
			if err := s.ns(ctx, s.benchNamespace(i), nil); err != nil {
				return err
			}
		}
	}
	if s.opts.benchMix {
		if err := s.benchDaemonSet(ctx, s.benchNamespace(0)); err != nil {
			return err
		}
	}
	return parallel(s.opts.deployments, 10, func(i int) error {
		name := fmt.Sprintf("app-%03d", i)
		ns := s.benchNamespace(i)
		replicas := int32(s.opts.replicas)
		switch {
		case s.opts.benchMix && i%10 == 0:
			// A StatefulSet (pods re-created under the same name), PDB maxUnavailable 1.
			ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
				Spec: appsv1.StatefulSetSpec{Replicas: &replicas, ServiceName: name, Selector: sel(name),
					PodManagementPolicy: appsv1.ParallelPodManagement, Template: podTemplate(name, nil)}}
			if _, err := s.kube.AppsV1().StatefulSets(ns).Create(ctx, ss, metav1.CreateOptions{}); ignoreExists(err) != nil {
				return err
			}
		case s.opts.benchMix && (i%10 == 1 || i%10 == 2):
			// Two Deployments under one PDB (maxUnavailable 1 across both): one lane.
			// A namespace holds a multiple of 10 workloads or all of them, so a pair never straddles two.
			pair := fmt.Sprintf("pair-%03d", i-i%10+1)
			if err := s.deploymentWith(ctx, ns, name, replicas, nil, map[string]string{"pair": pair}); err != nil {
				return err
			}
			if i%10 == 2 {
				return nil
			}
			return s.pdbSel(ctx, ns, pair, map[string]string{"pair": pair}, nil, iv(1))
		default:
			if err := s.deployment(ctx, ns, name, replicas, nil); err != nil {
				return err
			}
		}
		return s.pdb(ctx, ns, name, nil, iv(1))
	})
}

// benchDaemonSet: one pod on every node, rolled 10% of the nodes at a time, no PDB.
func (s *seeder) benchDaemonSet(ctx context.Context, ns string) error {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: ns, Labels: map[string]string{"app": "agent"}},
		Spec: appsv1.DaemonSetSpec{Selector: sel("agent"), Template: podTemplate("agent", nil),
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: pct("10%")}}}}
	_, err := s.kube.AppsV1().DaemonSets(ns).Create(ctx, ds, metav1.CreateOptions{})
	return ignoreExists(err)
}
