package dataplane

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Node addresses come from ranges reserved for network testing, never used by the host: IPv4
// 198.18.0.0/15 (RFC 2544; nodes take 198.18.0.0/16) and IPv6 2001:2::/48 (RFC 5180).
const (
	underlayV4Prefix = 16
	underlayV6Prefix = 64
)

// NodeIPv4 is node i's underlay (InternalIP) address.
func NodeIPv4(i int) string { return fmt.Sprintf("198.18.%d.%d", (i+1)/256, (i+1)%256) }

// NodeIPv6 is node i's underlay IPv6 address.
func NodeIPv6(i int) string { return fmt.Sprintf("2001:2::%x", i+1) }

// Node is one fake node's namespace.
type Node struct {
	Name  string `json:"name"`
	Netns string `json:"netns"`
	IPv4  string `json:"ipv4,omitempty"`
	IPv6  string `json:"ipv6,omitempty"`
	ns    netns.NsHandle
	h     *netlink.Handle
}

// Plane is the dataplane of one cluster.
type Plane struct {
	Prefix string
	V4, V6 bool
	// Unrouted is a fault: blocks inside these CIDRs get no routes on other nodes.
	Unrouted []*net.IPNet
	underlay netns.NsHandle
	nodes    map[string]*Node
	order    []*Node
	mu       sync.Mutex
	pods     map[string]*Pod
	// what SyncBlockRoutes has programmed per node (compared with the next plan, not re-read
	// from the kernel), the VXLAN mode each block last had, and the nodes already logged for
	// having VXLAN blocks without a VTEP
	state        map[string]*nodeState
	lastMode     map[string]bool
	noVTEPLogged map[string]bool
	routesMu     sync.Mutex
	// Logf, when set, gets one line per VXLAN device change and per node first seen without a VTEP.
	Logf   func(format string, args ...interface{})
	closed bool
	// set-up cost of the pods' namespaces: how many, and the total time spent wiring them
	podsWired int
	wireTime  time.Duration
}

// Stats returns how many pod namespaces were wired and the mean time each took.
func (p *Plane) Stats() (int, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.podsWired == 0 {
		return 0, 0
	}
	return p.podsWired, p.wireTime / time.Duration(p.podsWired)
}

// New sweeps what an earlier run with the same prefix left behind, then builds the underlay
// namespace with its bridge and one namespace per node, linked to the bridge.
func New(prefix string, nodeNames []string, v4, v6 bool) (*Plane, error) {
	if _, err := Sweep(prefix); err != nil {
		return nil, fmt.Errorf("sweep leftovers: %w", err)
	}
	p := &Plane{Prefix: prefix, V4: v4, V6: v6, underlay: netns.None(), nodes: map[string]*Node{}, pods: map[string]*Pod{},
		state: map[string]*nodeState{}, lastMode: map[string]bool{}, noVTEPLogged: map[string]bool{}}
	ok := false
	defer func() {
		if !ok {
			p.Close()
		}
	}()
	var err error
	if p.underlay, err = createNamed(prefix + "underlay"); err != nil {
		return nil, fmt.Errorf("underlay namespace: %w", err)
	}
	uh, err := netlink.NewHandleAt(p.underlay)
	if err != nil {
		return nil, err
	}
	defer uh.Close()
	if err := linkUp(uh, "lo"); err != nil {
		return nil, err
	}
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := uh.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("underlay bridge: %w", err)
	}
	if err := uh.LinkSetUp(br); err != nil {
		return nil, err
	}
	for i, name := range nodeNames {
		n, err := p.addNode(uh, br, i, name)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
		p.nodes[name] = n
		p.order = append(p.order, n)
	}
	ok = true
	return p, nil
}

func (p *Plane) addNode(uh *netlink.Handle, br *netlink.Bridge, i int, name string) (*Node, error) {
	n := &Node{Name: name, Netns: fmt.Sprintf("%snode%d", p.Prefix, i)}
	var err error
	if n.ns, err = createNamed(n.Netns); err != nil {
		return nil, err
	}
	if n.h, err = netlink.NewHandleAt(n.ns); err != nil {
		return nil, err
	}
	if err := linkUp(n.h, "lo"); err != nil {
		return nil, err
	}
	// The bridge port lives in the underlay namespace; its peer becomes the node's eth0.
	port := fmt.Sprintf("n%d", i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(n.ns))}
	if err := uh.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("underlay veth: %w", err)
	}
	if err := linkUp(uh, port); err != nil {
		return nil, err
	}
	eth, err := n.h.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	if p.V4 {
		n.IPv4 = NodeIPv4(i)
		if err := n.h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(n.IPv4), Mask: net.CIDRMask(underlayV4Prefix, 32)}}); err != nil {
			return nil, err
		}
		if err := writeSysctl(n.ns, "net/ipv4/ip_forward", "1"); err != nil {
			return nil, err
		}
	}
	if p.V6 {
		n.IPv6 = NodeIPv6(i)
		if err := n.h.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(n.IPv6), Mask: net.CIDRMask(underlayV6Prefix, 128)}, Flags: nodad}); err != nil {
			return nil, err
		}
		if err := writeSysctl(n.ns, "net/ipv6/conf/all/forwarding", "1"); err != nil {
			return nil, err
		}
	}
	if err := n.h.LinkSetUp(eth); err != nil {
		return nil, err
	}
	// A default route onto the underlay, as a node has one to its gateway: locally originated
	// traffic to a Service address needs a route before kube-proxy's output chain rewrites it.
	// The underlay bridge has no way out, so nothing leaves the namespaces.
	for _, fam := range []struct {
		on   bool
		bits int
	}{{p.V4, 32}, {p.V6, 128}} {
		if !fam.on {
			continue
		}
		dst := &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}
		if fam.bits == 128 {
			dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if err := n.h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK}); err != nil {
			return nil, fmt.Errorf("default route: %w", err)
		}
	}
	return n, nil
}

// Nodes returns the nodes in creation order.
func (p *Plane) Nodes() []*Node { return p.order }

// Node returns one node, or nil.
func (p *Plane) Node(name string) *Node { return p.nodes[name] }

// NodeNS is the namespace handle of a node (for probes and servers of hostNetwork pods).
func (p *Plane) NodeNS(name string) (netns.NsHandle, bool) {
	n := p.nodes[name]
	if n == nil {
		return netns.None(), false
	}
	return n.ns, true
}

// WriteInfo writes the node namespaces and addresses as JSON (for `kubesim monitor`).
func (p *Plane) WriteInfo(path string) error {
	b, err := json.MarshalIndent(map[string]interface{}{"prefix": p.Prefix, "nodes": p.order}, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Close stops every pod's servers and removes every namespace of the cluster.
func (p *Plane) Close() {
	p.mu.Lock()
	p.closed = true
	pods := p.pods
	p.pods = map[string]*Pod{}
	p.mu.Unlock()
	for _, pod := range pods {
		pod.StopServers()
		pod.closeNS()
	}
	for _, n := range p.order {
		if n.h != nil {
			n.h.Close()
		}
		n.ns.Close()
	}
	p.underlay.Close()
	_, _ = Sweep(p.Prefix)
}

const nodad = 0x02 // IFA_F_NODAD: usable at once, no duplicate address detection

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	return h.LinkSetUp(l)
}
