package dataplane

import (
	"crypto/sha1"
	"net"
	"sort"
	"strings"
)

// VXLAN devices as Felix makes them (felix/dataplane/linux/vxlan_mgr.go with Felix's defaults:
// VXLANVNI 4096, VXLANPort 4789, learning off).
const (
	VXLANDevice   = "vxlan.calico"
	VXLANDeviceV6 = "vxlan-v6.calico"
	VXLANVNI      = 4096
	VXLANPort     = 4789
	// 50 and 70 bytes of outer headers below the underlay's 1500.
	vxlanMTU   = 1450
	vxlanMTUv6 = 1430
	underlayIf = "eth0"
)

// Pool is what the routes need of an IP pool: its CIDR and whether its blocks are routed through
// VXLAN between nodes (vxlanMode Always; CrossSubnet routes directly here, as Felix does for nodes
// in one subnet, and every node is on 198.18.0.0/16).
type Pool struct {
	CIDR  *net.IPNet
	VXLAN bool
}

// VTEP is a node's VXLAN tunnel endpoint as its Node object says: the tunnel addresses
// (projectcalico.org/IPv4VXLANTunnelAddr, IPv6VXLANTunnelAddr; "" when it has none) and the
// device MACs (projectcalico.org/VXLANTunnelMACAddr, VXLANTunnelMACAddrV6; "" when unset, then
// VTEPMAC derives them as Felix does).
type VTEP struct {
	IPv4, IPv6 string
	MAC, MACv6 string
}

// addr is the tunnel address of one family ("" when none).
func (v VTEP) addr(v6 bool) string {
	if v6 {
		return v.IPv6
	}
	return v.IPv4
}

// mac is the device MAC of one family: the annotation's, else the derived one.
func (v VTEP) mac(node string, v6 bool) net.HardwareAddr {
	s := v.MAC
	if v6 {
		s = v.MACv6
	}
	if hw, err := net.ParseMAC(s); err == nil && len(hw) == 6 {
		return hw
	}
	return VTEPMAC(node, v6)
}

// VTEPMAC is the MAC of a node's VXLAN device when its Node has none recorded, computed as Felix's
// VXLANResolver.vtepMACForHost does (felix/calc/vxlan_resolver.go): "f" (0x66: locally
// administered, unicast) and the first 5 bytes of sha1(node name), of sha1(name + "-v6") for IPv6.
func VTEPMAC(node string, v6 bool) net.HardwareAddr {
	if v6 {
		node += "-v6"
	}
	sum := sha1.Sum([]byte(node))
	return net.HardwareAddr(append([]byte("f"), sum[0:5]...))
}

// Route is one block route: via the owner's underlay address on eth0, or via its tunnel address
// on a VXLAN device (onlink).
type Route struct {
	Via string
	Dev string
}

func (r Route) String() string { return "via " + r.Via + " dev " + r.Dev }

// vxlanDev is the VXLAN device of a family.
func vxlanDev(v6 bool) string {
	if v6 {
		return VXLANDeviceV6
	}
	return VXLANDevice
}

// BlockModes says for each block whether it is routed through VXLAN: by the pool whose CIDR
// contains it (the most specific one). A block no pool contains (its pool was deleted while the
// block still exists) keeps the mode it last had, as recorded in last; one never seen in a pool
// goes through the underlay. last is updated and pruned of blocks no longer listed.
func BlockModes(blocks []Block, pools []Pool, last map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, b := range blocks {
		_, cidr, err := net.ParseCIDR(b.CIDR)
		if err != nil {
			continue
		}
		best := -1
		for _, p := range pools {
			ones, _ := p.CIDR.Mask.Size()
			bones, _ := cidr.Mask.Size()
			if p.CIDR.Contains(cidr.IP) && bones >= ones && ones > best && (p.CIDR.IP.To4() == nil) == (cidr.IP.To4() == nil) {
				best = ones
				out[cidr.String()] = p.VXLAN
			}
		}
		if best < 0 {
			out[cidr.String()] = last[cidr.String()]
		}
	}
	for k := range last {
		if _, ok := out[k]; !ok {
			delete(last, k)
		}
	}
	for k, v := range out {
		last[k] = v
	}
	return out
}

// Plan is what one node's namespace should hold.
type Plan struct {
	// Routes: block CIDR -> route.
	Routes map[string]Route
	// Neighbours per VXLAN device: another node's tunnel address -> its MAC (permanent ARP/NDP).
	Neighbours map[string]map[string]string
	// FDB per VXLAN device: another node's MAC -> its underlay address.
	FDB map[string]map[string]string
	// NoVTEP: nodes whose VXLAN blocks get no route because that node (or this one) has no
	// tunnel address of the block's family yet.
	NoVTEP []string
}

// PlanNode computes the block routes, VXLAN neighbours and FDB entries of node self. Blocks of
// other nodes get a route via the owner's underlay address, or, when vxlan[block] says so, via the
// owner's tunnel address on this node's VXLAN device; that needs both nodes to have a tunnel
// address of the family (Felix: no VTEP, no route). Blocks inside unrouted get no route. Every
// other node with a tunnel address gets a neighbour and an FDB entry on the device of the family,
// as long as self has that device (a tunnel address of its own).
func PlanNode(self *Node, nodes []*Node, vteps map[string]VTEP, blocks []Block, vxlan map[string]bool, unrouted []*net.IPNet) Plan {
	pl := Plan{Routes: map[string]Route{}, Neighbours: map[string]map[string]string{}, FDB: map[string]map[string]string{}}
	byName := map[string]*Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	mine := vteps[self.Name]
	for _, v6 := range []bool{false, true} {
		if mine.addr(v6) == "" || underlay(self, v6) == "" {
			continue
		}
		dev := vxlanDev(v6)
		pl.Neighbours[dev], pl.FDB[dev] = map[string]string{}, map[string]string{}
		for _, n := range nodes {
			v := vteps[n.Name]
			if n.Name == self.Name || v.addr(v6) == "" || underlay(n, v6) == "" {
				continue
			}
			mac := v.mac(n.Name, v6).String()
			pl.Neighbours[dev][v.addr(v6)] = mac
			pl.FDB[dev][mac] = underlay(n, v6)
		}
	}
	noVTEP := map[string]bool{}
	for _, b := range blocks {
		owner := byName[b.Node]
		if owner == nil || owner.Name == self.Name {
			continue
		}
		_, cidr, err := net.ParseCIDR(b.CIDR)
		if err != nil || inAny(cidr, unrouted) {
			continue
		}
		v6 := cidr.IP.To4() == nil
		if !vxlan[cidr.String()] {
			if via := underlay(owner, v6); via != "" {
				pl.Routes[cidr.String()] = Route{Via: via, Dev: underlayIf}
			}
			continue
		}
		dev := vxlanDev(v6)
		via := vteps[owner.Name].addr(v6)
		if _, ok := pl.Neighbours[dev]; !ok || via == "" {
			noVTEP[owner.Name] = true
			continue
		}
		pl.Routes[cidr.String()] = Route{Via: via, Dev: dev}
	}
	for n := range noVTEP {
		pl.NoVTEP = append(pl.NoVTEP, n)
	}
	sort.Strings(pl.NoVTEP)
	return pl
}

func underlay(n *Node, v6 bool) string {
	if v6 {
		return n.IPv6
	}
	return n.IPv4
}

// inAny says whether a block lies inside one of cidrs.
func inAny(block *net.IPNet, cidrs []*net.IPNet) bool {
	for _, u := range cidrs {
		ones, _ := u.Mask.Size()
		bones, _ := block.Mask.Size()
		if u.Contains(block.IP) && bones >= ones {
			return true
		}
	}
	return false
}

// TunnelAddr reads a tunnel address annotation ("10.0.0.1" or "10.0.0.1/32"): the address, or "".
func TunnelAddr(annotation string) string {
	ip := net.ParseIP(strings.Split(annotation, "/")[0])
	if ip == nil {
		return ""
	}
	return ip.String()
}
