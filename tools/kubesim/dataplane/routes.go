package dataplane

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Block is an IPAM block affine to a node (a confirmed block affinity).
type Block struct {
	CIDR string
	Node string
}

// nodeState is what the plane has programmed in one node's namespace (the kernel's copy is
// authoritative; this is what to compare the next plan with).
type nodeState struct {
	routes map[string]Route             // block CIDR -> route
	neigh  map[string]map[string]string // VXLAN device -> tunnel address -> MAC
	fdb    map[string]map[string]string // VXLAN device -> MAC -> underlay address
	dev    map[string]string            // VXLAN device -> its tunnel address
}

// SyncBlockRoutes makes every node's namespace hold one route per block of every other node, as
// BIRD and Felix program them from the blocks each node announces: via the owner's underlay address,
// or, for a block of a VXLAN pool (pools; see BlockModes), via the owner's tunnel address on this
// node's VXLAN device, whose neighbour and FDB entries say where every other node's VTEP is
// (vteps, from the Node objects). A node gets a VXLAN device of a family while it has a tunnel
// address of that family. Routes, entries and devices no longer wanted are removed. It returns the
// number of routes added (or changed) and removed.
func (p *Plane) SyncBlockRoutes(blocks []Block, pools []Pool, vteps map[string]VTEP) (added, removed int, err error) {
	p.routesMu.Lock()
	defer p.routesMu.Unlock()
	modes := BlockModes(blocks, pools, p.lastMode)
	for _, n := range p.order {
		pl := PlanNode(n, p.order, vteps, blocks, modes, p.Unrouted)
		for _, o := range pl.NoVTEP {
			if !p.noVTEPLogged[o] {
				p.noVTEPLogged[o] = true
				p.logf("dataplane: blocks of %s in VXLAN pools get no route (first on %s): one of the two has no VXLAN tunnel address yet (as Felix: no VTEP, no route; logged once per node)", o, n.Name)
			}
		}
		a, r, nerr := p.syncNode(n, pl, vteps[n.Name])
		added += a
		removed += r
		if nerr != nil {
			err = fmt.Errorf("node %s: %w", n.Name, nerr)
		}
	}
	return added, removed, err
}

func (p *Plane) logf(format string, args ...interface{}) {
	if p.Logf != nil {
		p.Logf(format, args...)
	}
}

func (p *Plane) syncNode(n *Node, pl Plan, mine VTEP) (added, removed int, err error) {
	st := p.state[n.Name]
	if st == nil {
		st = &nodeState{routes: map[string]Route{}, neigh: map[string]map[string]string{}, fdb: map[string]map[string]string{}, dev: map[string]string{}}
		p.state[n.Name] = st
	}
	keep := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	// 1. Devices of the families this node has a tunnel address of, with that address.
	for _, v6 := range []bool{false, true} {
		dev := vxlanDev(v6)
		if _, want := pl.Neighbours[dev]; want {
			keep(p.ensureVXLAN(n, st, v6, mine.addr(v6), mine.mac(n.Name, v6)))
			continue
		}
		keep(p.removeVXLAN(n, st, dev))
	}
	// 2. Neighbour and FDB entries of the other nodes' VTEPs, before routes use them.
	for dev, want := range pl.Neighbours {
		link, lerr := n.h.LinkByName(dev)
		if lerr != nil {
			keep(lerr)
			continue
		}
		fam := unix.AF_INET
		if dev == VXLANDeviceV6 {
			fam = unix.AF_INET6
		}
		if st.neigh[dev] == nil {
			st.neigh[dev], st.fdb[dev] = map[string]string{}, map[string]string{}
		}
		for mac, ip := range pl.FDB[dev] {
			if st.fdb[dev][mac] == ip {
				continue
			}
			hw, _ := net.ParseMAC(mac)
			if e := n.h.NeighSet(&netlink.Neigh{Family: unix.AF_BRIDGE, LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF, IP: net.ParseIP(ip), HardwareAddr: hw}); e != nil {
				keep(fmt.Errorf("fdb %s dst %s: %w", mac, ip, e))
				continue
			}
			st.fdb[dev][mac] = ip
		}
		for ip, mac := range want {
			if st.neigh[dev][ip] == mac {
				continue
			}
			hw, _ := net.ParseMAC(mac)
			if e := n.h.NeighSet(&netlink.Neigh{Family: fam, LinkIndex: link.Attrs().Index, State: netlink.NUD_PERMANENT, Type: unix.RTN_UNICAST, IP: net.ParseIP(ip), HardwareAddr: hw}); e != nil {
				keep(fmt.Errorf("neighbour %s lladdr %s: %w", ip, mac, e))
				continue
			}
			st.neigh[dev][ip] = mac
		}
	}
	// 3. Routes.
	for cidr, r := range pl.Routes {
		if st.routes[cidr] == r {
			continue
		}
		link, lerr := n.h.LinkByName(r.Dev)
		if lerr != nil {
			keep(lerr)
			continue
		}
		_, dst, _ := net.ParseCIDR(cidr)
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: net.ParseIP(r.Via)}
		if r.Dev != underlayIf {
			rt.Flags = int(netlink.FLAG_ONLINK)
		}
		if e := n.h.RouteReplace(rt); e != nil {
			keep(fmt.Errorf("route %s %s: %w", cidr, r, e))
			continue
		}
		st.routes[cidr] = r
		added++
	}
	for cidr, r := range st.routes {
		if _, ok := pl.Routes[cidr]; ok {
			continue
		}
		_, dst, _ := net.ParseCIDR(cidr)
		rt := &netlink.Route{Dst: dst, Gw: net.ParseIP(r.Via)}
		if link, lerr := n.h.LinkByName(r.Dev); lerr == nil {
			rt.LinkIndex = link.Attrs().Index
			if e := n.h.RouteDel(rt); e != nil && !isNotFound(e) {
				keep(fmt.Errorf("remove route %s: %w", cidr, e))
				continue
			}
		} // else: the device is gone and its routes with it
		delete(st.routes, cidr)
		removed++
	}
	// 4. Entries of VTEPs that went (or moved), now that no route uses them.
	for dev, have := range st.neigh {
		link, lerr := n.h.LinkByName(dev)
		if lerr != nil {
			continue
		}
		fam := unix.AF_INET
		if dev == VXLANDeviceV6 {
			fam = unix.AF_INET6
		}
		for ip, mac := range have {
			if pl.Neighbours[dev][ip] == mac {
				continue
			}
			hw, _ := net.ParseMAC(mac)
			if e := n.h.NeighDel(&netlink.Neigh{Family: fam, LinkIndex: link.Attrs().Index, IP: net.ParseIP(ip), HardwareAddr: hw}); e != nil && !isNotFound(e) {
				keep(fmt.Errorf("remove neighbour %s: %w", ip, e))
				continue
			}
			delete(have, ip)
		}
		for mac, ip := range st.fdb[dev] {
			if pl.FDB[dev][mac] == ip {
				continue
			}
			hw, _ := net.ParseMAC(mac)
			if e := n.h.NeighDel(&netlink.Neigh{Family: unix.AF_BRIDGE, LinkIndex: link.Attrs().Index, Flags: netlink.NTF_SELF, IP: net.ParseIP(ip), HardwareAddr: hw}); e != nil && !isNotFound(e) {
				keep(fmt.Errorf("remove fdb %s: %w", mac, e))
				continue
			}
			delete(st.fdb[dev], mac)
		}
	}
	return added, removed, err
}

// ensureVXLAN creates the node's VXLAN device of a family when missing (VNI 4096, port 4789,
// local = the node's underlay address on eth0, learning off) and gives it addr as its only
// address (/32, /128) and mac as its MAC.
func (p *Plane) ensureVXLAN(n *Node, st *nodeState, v6 bool, addr string, mac net.HardwareAddr) error {
	dev := vxlanDev(v6)
	link, err := n.h.LinkByName(dev)
	if err != nil {
		eth, eerr := n.h.LinkByName(underlayIf)
		if eerr != nil {
			return eerr
		}
		mtu := vxlanMTU
		if v6 {
			mtu = vxlanMTUv6
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.HardwareAddr, la.MTU = dev, mac, mtu
		vx := &netlink.Vxlan{LinkAttrs: la, VxlanId: VXLANVNI, Port: VXLANPort, VtepDevIndex: eth.Attrs().Index, SrcAddr: net.ParseIP(underlay(n, v6)), Learning: false}
		if err := n.h.LinkAdd(vx); err != nil {
			return fmt.Errorf("add %s: %w", dev, err)
		}
		if link, err = n.h.LinkByName(dev); err != nil {
			return err
		}
		delete(st.neigh, dev)
		delete(st.fdb, dev)
		delete(st.dev, dev)
		p.logf("dataplane: node %s: %s (VNI %d, port %d, local %s, MAC %s)", n.Name, dev, VXLANVNI, VXLANPort, underlay(n, v6), mac)
	}
	if link.Attrs().HardwareAddr.String() != mac.String() {
		if err := n.h.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("%s MAC %s: %w", dev, mac, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := n.h.LinkSetUp(link); err != nil {
			return err
		}
	}
	if st.dev[dev] == addr {
		return nil
	}
	fam, bits := netlink.FAMILY_V4, 32
	if v6 {
		fam, bits = netlink.FAMILY_V6, 128
	}
	want := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(addr), Mask: net.CIDRMask(bits, bits)}}
	if v6 {
		want.Flags = nodad
	}
	if err := n.h.AddrReplace(link, want); err != nil {
		return fmt.Errorf("%s address %s: %w", dev, addr, err)
	}
	addrs, err := n.h.AddrList(link, fam)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if a.IP.Equal(want.IP) || a.IP.IsLinkLocalUnicast() {
			continue
		}
		if err := n.h.AddrDel(link, &a); err != nil && !isNotFound(err) {
			return fmt.Errorf("%s: remove address %s: %w", dev, a.IPNet, err)
		}
	}
	if old := st.dev[dev]; old != "" {
		p.logf("dataplane: node %s: %s address %s -> %s", n.Name, dev, old, addr)
	}
	st.dev[dev] = addr
	return nil
}

// removeVXLAN deletes a VXLAN device (its routes and entries go with it).
func (p *Plane) removeVXLAN(n *Node, st *nodeState, dev string) error {
	link, err := n.h.LinkByName(dev)
	if err != nil {
		return nil
	}
	if err := n.h.LinkDel(link); err != nil {
		return fmt.Errorf("remove %s: %w", dev, err)
	}
	for cidr, r := range st.routes {
		if r.Dev == dev {
			delete(st.routes, cidr)
		}
	}
	delete(st.neigh, dev)
	delete(st.fdb, dev)
	delete(st.dev, dev)
	p.logf("dataplane: node %s: %s removed (no VXLAN tunnel address)", n.Name, dev)
	return nil
}

func isNotFound(err error) bool {
	return err == unix.ENOENT || err == unix.ESRCH || err == unix.EADDRNOTAVAIL
}

// Routes returns a copy of the block routes of one node (CIDR -> route).
func (p *Plane) Routes(node string) map[string]Route {
	p.routesMu.Lock()
	defer p.routesMu.Unlock()
	out := map[string]Route{}
	if st := p.state[node]; st != nil {
		for k, v := range st.routes {
			out[k] = v
		}
	}
	return out
}
