package main

// Pod addresses as Calico's CNI plugin assigns them: one per enabled family, from the pools the
// pod or its namespace names (cni.projectcalico.org/ipv4pools, ipv6pools), or the fixed addresses
// of cni.projectcalico.org/ipAddrs.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apiv3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/calico/libcalico-go/lib/ipam"
	cnet "github.com/projectcalico/calico/libcalico-go/lib/net"
	corev1 "k8s.io/api/core/v1"
)

// hostCIDR is an address as Calico writes it in the podIP(s) annotations: /32 or /128.
func hostCIDR(ip string) string {
	if strings.Contains(ip, ":") {
		return ip + "/128"
	}
	return ip + "/32"
}

// poolNames reads a pool annotation from the pod, else from its namespace.
func poolNames(p *corev1.Pod, ns *corev1.Namespace, key string) ([]string, error) {
	src := p.Annotations[key]
	if src == "" {
		src = ns.Annotations[key]
	}
	if src == "" {
		return nil, nil
	}
	var names []string
	if err := json.Unmarshal([]byte(src), &names); err != nil {
		return nil, fmt.Errorf("failed to parse '%s' as JSON: %s", src, err)
	}
	return names, nil
}

// assignPodIPs returns the pod's addresses, IPv4 first. On failure nothing stays allocated.
func (a *agent) assignPodIPs(ctx context.Context, node string, p *corev1.Pod, ns *corev1.Namespace, handle string, attrs map[string]string) ([]string, error) {
	if s := p.Annotations[annIPAddrs]; s != "" {
		var want []string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			return nil, fmt.Errorf("failed to parse '%s' as JSON: %s", s, err)
		}
		if len(want) == 0 || len(want) > 2 {
			return nil, fmt.Errorf("kubesim supports one address per IP family in %s", annIPAddrs)
		}
		var out []string
		for _, w := range want {
			parsed := cnet.ParseIP(w)
			if parsed == nil {
				_ = a.release(ctx, handle)
				return nil, fmt.Errorf("invalid IP address: %s", w)
			}
			if err := a.cal.IPAM().AssignIP(ctx, ipam.AssignIPArgs{IP: *parsed, HandleID: &handle, Attrs: attrs, Hostname: node,
				IntendedUse: apiv3.IPPoolAllowedUseWorkload}); err != nil {
				_ = a.release(ctx, handle)
				return nil, fmt.Errorf("error assigning IP: %w", err)
			}
			out = append(out, parsed.String())
		}
		if len(out) == 2 && strings.Contains(out[0], ":") {
			out[0], out[1] = out[1], out[0]
		}
		return out, nil
	}
	names4, err := poolNames(p, ns, annIPv4Pools)
	if err != nil {
		return nil, err
	}
	names6, err := poolNames(p, ns, annIPv6Pools)
	if err != nil {
		return nil, err
	}
	args := ipam.AutoAssignArgs{HandleID: &handle, Attrs: attrs, Hostname: node, IntendedUse: apiv3.IPPoolAllowedUseWorkload, Namespace: ns}
	if a.fam.v4 {
		args.Num4 = 1
		if args.IPv4Pools, err = a.resolvePools(ctx, names4, false); err != nil {
			return nil, err
		}
	}
	if a.fam.v6 {
		args.Num6 = 1
		if args.IPv6Pools, err = a.resolvePools(ctx, names6, true); err != nil {
			return nil, err
		}
	}
	v4, v6, err := a.cal.IPAM().AutoAssign(ctx, args)
	var out []string
	for _, r := range []struct {
		on   bool
		got  *ipam.IPAMAssignments
		name string
	}{{a.fam.v4, v4, "IPv4"}, {a.fam.v6, v6, "IPv6"}} {
		if err != nil || !r.on {
			continue
		}
		if r.got != nil {
			if perr := r.got.PartialFulfillmentError(); perr != nil {
				err = fmt.Errorf("failed to request %s addresses: %w", r.name, perr)
				continue
			}
		}
		if r.got == nil || len(r.got.IPs) == 0 {
			err = fmt.Errorf("failed to request %s addresses: no IP assigned", r.name)
			continue
		}
		out = append(out, r.got.IPs[0].IP.String())
	}
	if err != nil {
		_ = a.release(ctx, handle)
		return nil, err
	}
	return out, nil
}
