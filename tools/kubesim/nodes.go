package main

// The agent's fake nodes: registered, Ready, their leases renewed, their addresses.

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

func nodeLabels(name string) map[string]string {
	return map[string]string{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
	}
}

// createNodes registers the nodes, marks them Ready and removes the not-ready taint that the
// TaintNodesByCondition admission plugin adds.
func (a *agent) createNodes(ctx context.Context) error {
	for _, name := range a.nodes {
		labels := nodeLabels(name)
		if a.zones {
			labels[labelZone] = zoneNames[a.nodeIdx[name]%len(zoneNames)]
		}
		anns := map[string]string{}
		if a.fam.v4 {
			anns[annIPv4Address] = fmt.Sprintf("%s/%d", a.nodeIP[name], a.nodeV4Mask)
		}
		if a.fam.v6 {
			anns[annIPv6Address] = a.nodeIPv6(a.nodeIdx[name]) + "/64"
		}
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: anns}}
		_, err := a.kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(a.nodes))
	sem := make(chan struct{}, 20)
	for _, name := range a.nodes {
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := a.markNodeReady(ctx, name); err != nil {
				errs <- err
			}
		}(name)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

func (a *agent) markNodeReady(ctx context.Context, name string) error {
	for attempt := 0; ; attempt++ {
		n, err := a.kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		n.Status.Capacity = corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods: resource.MustParse("1000"), corev1.ResourceEphemeralStorage: resource.MustParse("100Gi"),
		}
		n.Status.Allocatable = n.Status.Capacity
		cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
			return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
		}
		n.Status.Conditions = []corev1.NodeCondition{
			cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
			cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
			cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
		}
		n.Status.Addresses = nil
		for _, ip := range a.hostIPs(name) {
			n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
		}
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
		n.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: "v1.33.13", KubeProxyVersion: "v1.33.13", OperatingSystem: "linux",
			Architecture: "amd64", ContainerRuntimeVersion: "kubesim://1.0", OSImage: "kubesim", KernelVersion: "6.0.0-kubesim"}
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10250
		n, err = a.kube.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && attempt < 10 {
			continue
		} else if err != nil {
			return fmt.Errorf("node %s status: %w", name, err)
		}
		var taints []corev1.Taint
		for _, t := range n.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady && t.Key != corev1.TaintNodeUnreachable {
				taints = append(taints, t)
			}
		}
		if len(taints) != len(n.Spec.Taints) {
			n.Spec.Taints = taints
			if _, err = a.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); apierrors.IsConflict(err) && attempt < 10 {
				continue
			} else if err != nil {
				return fmt.Errorf("node %s taints: %w", name, err)
			}
		}
		return nil
	}
}

func (a *agent) renewLeases(ctx context.Context) {
	for {
		for _, name := range a.nodes {
			if ctx.Err() != nil {
				return
			}
			now := metav1.NewMicroTime(time.Now())
			leases := a.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease)
			l, err := leases.Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
					Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now}}
				_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			} else if err == nil {
				l.Spec.RenewTime = &now
				_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
			}
			if err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
				klog.V(2).Infof("lease %s: %v", name, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Second):
		}
	}
}

func (a *agent) isOurNode(n string) bool { _, ok := a.nodeIP[n]; return ok }

// hostIPs are a node's InternalIPs in family order (IPv4 first), as the kubelet reports them.
func (a *agent) hostIPs(node string) []string {
	var out []string
	if a.fam.v4 {
		out = append(out, a.nodeIP[node])
	}
	if a.fam.v6 {
		out = append(out, a.nodeIPv6(a.nodeIdx[node]))
	}
	return out
}

// ipList is the status.podIPs / hostIPs form of a list of addresses.
func ipList(ips []string) []interface{} {
	var out []interface{}
	for _, ip := range ips {
		out = append(out, map[string]interface{}{"ip": ip})
	}
	return out
}
