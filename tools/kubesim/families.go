package main

// IP families and seed-pool encapsulation (--ip-family, --encap). Every IPv6 address here is a
// ULA used as data only: nothing ever sends traffic to a node or pod address.

import (
	"fmt"
	"strings"

	apiv3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
)

const (
	v6ClusterCIDR = "fd00:10::/32"
	v6ServiceCIDR = "fd00:96::/112"
	v6SeedPool    = "fd00:10::/64"
)

// nodeIPv6 is node i's IPv6 InternalIP (data only).
func nodeIPv6(i int) string { return fmt.Sprintf("fd00:1::%x", i+1) }

type families struct{ v4, v6 bool }

func parseFamily(s string) (families, error) {
	switch s {
	case "", "ipv4":
		return families{v4: true}, nil
	case "ipv6":
		return families{v6: true}, nil
	case "dual":
		return families{v4: true, v6: true}, nil
	}
	return families{}, fmt.Errorf("--ip-family %q: want ipv4, ipv6 or dual", s)
}

// applyFamily gives the scenario the CIDRs and seed pools of the chosen families: IPv6 adds
// default-ipv6-ippool (fd00:10::/64, /122 blocks, no NAT) and the IPv6 cluster and Service CIDRs;
// IPv6 alone drops the IPv4 ones.
func applyFamily(sc *scenario, fam families) error {
	if !fam.v6 {
		return nil
	}
	if sc.name == "kops" || sc.name == "zones" {
		return fmt.Errorf("--scenario %s is IPv4 only", sc.name)
	}
	v6 := poolDef{name: "default-ipv6-ippool", cidr: v6SeedPool}
	if fam.v4 {
		sc.clusterCIDR += "," + v6ClusterCIDR
		sc.serviceCIDR += "," + v6ServiceCIDR
		sc.pools = append(sc.pools, v6)
	} else {
		sc.clusterCIDR, sc.serviceCIDR, sc.pools = v6ClusterCIDR, v6ServiceCIDR, []poolDef{v6}
	}
	return nil
}

// applyEncap sets the seed pools' encapsulation: ipip (IPv4 pools only: Calico has no IPIP for
// IPv6), vxlan, vxlan-crosssubnet, or none. The scenarios' own choice (IPIP, CrossSubnet for kops)
// stays when the flag is not given.
func applyEncap(sc *scenario, encap string) error {
	var ipip apiv3.IPIPMode
	var vxlan apiv3.VXLANMode
	switch encap {
	case "":
		return nil
	case "ipip":
		ipip, vxlan = apiv3.IPIPModeAlways, apiv3.VXLANModeNever
	case "vxlan":
		ipip, vxlan = apiv3.IPIPModeNever, apiv3.VXLANModeAlways
	case "vxlan-crosssubnet":
		ipip, vxlan = apiv3.IPIPModeNever, apiv3.VXLANModeCrossSubnet
	case "none":
		ipip, vxlan = apiv3.IPIPModeNever, apiv3.VXLANModeNever
	default:
		return fmt.Errorf("--encap %q: want ipip, vxlan, vxlan-crosssubnet or none", encap)
	}
	for i := range sc.pools {
		p := &sc.pools[i]
		p.vxlanMode = vxlan
		p.ipipMode = ipip
		if strings.Contains(p.cidr, ":") {
			p.ipipMode = apiv3.IPIPModeNever
		}
	}
	return nil
}
