package dataplane

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// Block is an IPAM block affine to a node (a confirmed block affinity).
type Block struct {
	CIDR string
	Node string
}

// SyncBlockRoutes makes every node's routing table hold one route per block of every other node,
// via that node's underlay address, as BIRD programs them from the blocks each node announces
// (VXLAN and IPIP pools are routed the same way: see the README). Routes of blocks no longer in
// the list are removed. It returns the number of routes added and removed.
func (p *Plane) SyncBlockRoutes(blocks []Block) (added, removed int, err error) {
	p.routesMu.Lock()
	defer p.routesMu.Unlock()
	for _, n := range p.order {
		want := map[string]string{}
		for _, b := range blocks {
			owner := p.nodes[b.Node]
			if owner == nil || owner == n {
				continue
			}
			_, cidr, perr := net.ParseCIDR(b.CIDR)
			if perr != nil || p.unrouted(cidr) {
				continue
			}
			via := owner.IPv4
			if cidr.IP.To4() == nil {
				via = owner.IPv6
			}
			if via == "" {
				continue
			}
			want[cidr.String()] = via
		}
		have := p.routes[n.Name]
		if have == nil {
			have = map[string]string{}
			p.routes[n.Name] = have
		}
		eth, lerr := n.h.LinkByName("eth0")
		if lerr != nil {
			return added, removed, lerr
		}
		for cidr, via := range want {
			if have[cidr] == via {
				continue
			}
			_, dst, _ := net.ParseCIDR(cidr)
			if rerr := n.h.RouteReplace(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dst, Gw: net.ParseIP(via)}); rerr != nil {
				err = fmt.Errorf("node %s: route %s via %s: %w", n.Name, cidr, via, rerr)
				continue
			}
			have[cidr] = via
			added++
		}
		for cidr, via := range have {
			if _, ok := want[cidr]; ok {
				continue
			}
			_, dst, _ := net.ParseCIDR(cidr)
			if rerr := n.h.RouteDel(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dst, Gw: net.ParseIP(via)}); rerr != nil {
				err = fmt.Errorf("node %s: remove route %s: %w", n.Name, cidr, rerr)
				continue
			}
			delete(have, cidr)
			removed++
		}
	}
	return added, removed, err
}

// Routes returns a copy of the block routes of one node (CIDR -> via).
func (p *Plane) Routes(node string) map[string]string {
	p.routesMu.Lock()
	defer p.routesMu.Unlock()
	out := map[string]string{}
	for k, v := range p.routes[node] {
		out[k] = v
	}
	return out
}

// unrouted says whether a block lies inside one of the fault's unrouted CIDRs.
func (p *Plane) unrouted(block *net.IPNet) bool {
	for _, u := range p.Unrouted {
		ones, _ := u.Mask.Size()
		bones, _ := block.Mask.Size()
		if u.Contains(block.IP) && bones >= ones {
			return true
		}
	}
	return false
}
