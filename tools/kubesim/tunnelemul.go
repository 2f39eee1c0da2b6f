package main

// The agent's emulation of calico-node's tunnel-address allocation (the scale
// scenarios; below 20 nodes the real allocator runs, tunnelalloc.go).

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"time"

	apiv3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/calico/libcalico-go/lib/ipam"
	cnet "github.com/projectcalico/calico/libcalico-go/lib/net"
	"github.com/projectcalico/calico/libcalico-go/lib/options"
	"github.com/projectcalico/calico/libcalico-go/lib/selector"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

type tunnelKind struct {
	v6         bool
	attrType   string
	annotation string
	handle     func(node string) string
	enabled    func(p *apiv3.IPPool) bool
}

var tunnelKinds = []tunnelKind{
	{false, ipam.AttributeTypeIPIP, annIPIPTunnel, func(n string) string { return "ipip-tunnel-addr-" + n },
		func(p *apiv3.IPPool) bool { return p.Spec.IPIPMode != "" && p.Spec.IPIPMode != apiv3.IPIPModeNever }},
	{false, ipam.AttributeTypeVXLAN, annVXLANTunnel, func(n string) string { return "vxlan-tunnel-addr-" + n },
		func(p *apiv3.IPPool) bool { return p.Spec.VXLANMode != "" && p.Spec.VXLANMode != apiv3.VXLANModeNever }},
	{true, ipam.AttributeTypeVXLANV6, annVXLANTunnel6, func(n string) string { return "vxlan-v6-tunnel-addr-" + n },
		func(p *apiv3.IPPool) bool { return p.Spec.VXLANMode != "" && p.Spec.VXLANMode != apiv3.VXLANModeNever }},
}

func allowsTunnel(p *apiv3.IPPool) bool {
	if len(p.Spec.AllowedUses) == 0 {
		return true
	}
	for _, u := range p.Spec.AllowedUses {
		if u == apiv3.IPPoolAllowedUseTunnel {
			return true
		}
	}
	return false
}

// tunnelPools is the CIDRs of the enabled pools of tk's family and encapsulation that allow
// tunnel addresses and select a node with these labels: where calico-node takes tk's address from.
func tunnelPools(pools []apiv3.IPPool, tk tunnelKind, labels map[string]string) []cnet.IPNet {
	var cands []cnet.IPNet
	for i := range pools {
		p := &pools[i]
		if p.Spec.Disabled || !tk.enabled(p) || !allowsTunnel(p) {
			continue
		}
		sel, err := selector.Parse(p.Spec.NodeSelector)
		if err != nil || !sel.Evaluate(labels) {
			continue
		}
		_, c, err := cnet.ParseCIDR(p.Spec.CIDR)
		if err != nil || (c.IP.To4() == nil) != tk.v6 {
			continue
		}
		cands = append(cands, *c)
	}
	return cands
}

// tunnelAddressIn: the annotation's address (with or without a prefix length) lies in one of cands.
func tunnelAddressIn(annotation string, cands []cnet.IPNet) bool {
	ip := net.ParseIP(strings.Split(annotation, "/")[0])
	for _, c := range cands {
		if ip != nil && c.Contains(ip) {
			return true
		}
	}
	return false
}

func (a *agent) syncTunnels(ctx context.Context, node string) (time.Duration, error) {
	if realTunnelAllocator {
		return 0, nil // calico-node's own allocator runs (tunnelalloc.go)
	}
	var after time.Duration
	pools, err := a.cal.IPPools().List(ctx, options.ListOptions{})
	if err != nil {
		return 0, err
	}
	n, err := a.kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	for _, tk := range tunnelKinds {
		cands := tunnelPools(pools.Items, tk, n.Labels)
		cur := n.Annotations[tk.annotation]
		if cur != "" && tunnelAddressIn(cur, cands) {
			a.mu.Lock()
			delete(a.tunnelStale, node+"/"+tk.annotation)
			a.mu.Unlock()
			continue
		}
		if cur == "" && len(cands) == 0 {
			continue
		}
		if cur != "" && a.tunnelDelay > 0 {
			key := node + "/" + tk.annotation
			a.mu.Lock()
			since, seen := a.tunnelStale[key]
			if !seen {
				since = time.Now()
				a.tunnelStale[key] = since
			}
			a.mu.Unlock()
			if wait := a.tunnelDelay - time.Since(since); wait > 0 {
				if after == 0 || wait < after {
					after = wait
				}
				continue
			}
			a.mu.Lock()
			delete(a.tunnelStale, key)
			a.mu.Unlock()
		}
		handle := tk.handle(node)
		if err := a.release(ctx, handle); err != nil {
			return 0, err
		}
		var newVal interface{} // nil removes the annotation
		if len(cands) > 0 {
			args := ipam.AutoAssignArgs{
				HandleID: &handle, Hostname: node, IntendedUse: apiv3.IPPoolAllowedUseTunnel,
				Attrs: map[string]string{ipam.AttributeNode: node, ipam.AttributeType: tk.attrType},
			}
			if tk.v6 {
				args.Num6, args.IPv6Pools = 1, cands
			} else {
				args.Num4, args.IPv4Pools = 1, cands
			}
			v4, v6, err := a.cal.IPAM().AutoAssign(ctx, args)
			got := v4
			if tk.v6 {
				got = v6
			}
			if err != nil || got == nil || len(got.IPs) == 0 {
				_ = a.release(ctx, handle)
				return 0, fmt.Errorf("tunnel address for %s: %v", node, err)
			}
			newVal = got.IPs[0].IP.String()
		}
		patch, _ := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{"annotations": map[string]interface{}{tk.annotation: newVal}}})
		if _, err := a.kube.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			if s, ok := newVal.(string); ok {
				_ = a.release(ctx, handle)
				_ = s
			}
			return 0, err
		}
		klog.V(1).Infof("node %s: %s %q -> %v", node, tk.annotation, cur, newVal)
	}
	return after, nil
}
