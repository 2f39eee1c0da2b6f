package dataplane

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The pod's gateway, as Calico's CNI plugin sets it: a link-local address answered by the host
// side of the veth, whose MAC is fixed.
var (
	gatewayV4 = net.ParseIP("169.254.1.1")
	gatewayV6 = net.ParseIP("fe80::ecee:eeff:feee:eeee")
	hostMAC   = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
)

// Pod is one pod's namespace and the servers running in it. ns must start as netns.None(): its zero
// value is file descriptor 0, which closeNS would close (and with it, later, whatever socket the
// process had opened as fd 0: the cause of the dataplane's one-in-thousands EOFs).
type Pod struct {
	Key      string
	Node     string
	Netns    string
	IPs      []string
	hostVeth string
	ns       netns.NsHandle
	host     bool // a hostNetwork pod: serves in its node's namespace, which it does not own
	mu       sync.Mutex
	servers  []io.Closer
	busy     map[net.Conn]bool // connections that opened and are not idle or closed
}

// trackConn follows the pod's server connections, so that stopping it can tell how many requests
// it cut short.
func (p *Pod) trackConn(c net.Conn, state http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy == nil {
		p.busy = map[net.Conn]bool{}
	}
	switch state {
	case http.StateNew, http.StateActive:
		p.busy[c] = true
	default:
		delete(p.busy, c)
	}
}

// NS is the pod's namespace handle.
func (p *Pod) NS() netns.NsHandle { return p.ns }

// HostVethName is the node-side device of a pod, "cali" and a hash as Calico names it.
func HostVethName(key string) string {
	h := sha1.Sum([]byte(key))
	return "cali" + hex.EncodeToString(h[:])[:11]
}

// AddPod creates the pod's namespace and wires it to its node as Calico's CNI plugin does: a veth
// pair, the addresses as /32 and /128 on eth0, a default route via 169.254.1.1 (and fe80::…)
// resolved by a static neighbour entry to the host side's MAC, and a host route per address on the
// node side. key names the pod incarnation (its UID).
func (p *Plane) AddPod(node, key string, ips []string) (*Pod, error) {
	n := p.nodes[node]
	if n == nil {
		return nil, fmt.Errorf("unknown node %s", node)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("dataplane stopped")
	}
	if old := p.pods[key]; old != nil {
		p.mu.Unlock()
		return old, nil
	}
	p.mu.Unlock()
	pod := &Pod{Key: key, Node: node, Netns: p.Prefix + "pod-" + sanitize(key), IPs: ips, hostVeth: HostVethName(key), ns: netns.None()}
	started := time.Now()
	ok := false
	defer func() {
		if !ok {
			p.removePodNS(pod)
		}
	}()
	var err error
	if pod.ns, err = createNamed(pod.Netns); err != nil {
		return nil, fmt.Errorf("pod namespace: %w", err)
	}
	ph, err := netlink.NewHandleAt(pod.ns)
	if err != nil {
		return nil, err
	}
	defer ph.Close()
	if err := linkUp(ph, "lo"); err != nil {
		return nil, err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: pod.hostVeth, HardwareAddr: hostMAC}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(pod.ns))}
	if err := n.h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("veth: %w", err)
	}
	host, err := n.h.LinkByName(pod.hostVeth)
	if err != nil {
		return nil, err
	}
	if err := n.h.LinkSetUp(host); err != nil {
		return nil, err
	}
	eth, err := ph.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	if err := ph.LinkSetUp(eth); err != nil {
		return nil, err
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("bad pod address %q", s)
		}
		v4 := ip.To4() != nil
		bits, gw := 128, gatewayV6
		if v4 {
			bits, gw = 32, gatewayV4
		}
		if err := ph.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, Flags: nodad}); err != nil {
			return nil, fmt.Errorf("pod address %s: %w", s, err)
		}
		if v4 {
			if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Dst: &net.IPNet{IP: gw, Mask: net.CIDRMask(32, 32)}, Scope: netlink.SCOPE_LINK}); err != nil {
				return nil, fmt.Errorf("gateway route: %w", err)
			}
		}
		if err := ph.NeighAdd(&netlink.Neigh{LinkIndex: eth.Attrs().Index, IP: gw, HardwareAddr: hostMAC, State: netlink.NUD_PERMANENT}); err != nil {
			return nil, fmt.Errorf("gateway neighbour: %w", err)
		}
		if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return nil, fmt.Errorf("default route: %w", err)
		}
		if err := n.h.RouteAdd(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, Scope: netlink.SCOPE_LINK}); err != nil {
			return nil, fmt.Errorf("host route %s: %w", s, err)
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("dataplane stopped")
	}
	p.pods[key] = pod
	p.podsWired++
	p.wireTime += time.Since(started)
	p.mu.Unlock()
	ok = true
	return pod, nil
}

// AddHostPod records a hostNetwork pod: its servers run in the node's namespace.
func (p *Plane) AddHostPod(node, key string) (*Pod, error) {
	n := p.nodes[node]
	if n == nil {
		return nil, fmt.Errorf("unknown node %s", node)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.pods[key]; old != nil {
		return old, nil
	}
	pod := &Pod{Key: key, Node: node, ns: n.ns, host: true}
	p.pods[key] = pod
	return pod, nil
}

// Pod returns a pod's dataplane state, or nil.
func (p *Plane) Pod(key string) *Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pods[key]
}

// RemovePod closes the pod's sockets, then removes its veth pair (and with it the host route) and
// its namespace: CNI DEL before the address goes back to IPAM. It returns how many connections
// were still open or mid-request when the servers closed (a client that sees EOF).
func (p *Plane) RemovePod(key string) int {
	p.mu.Lock()
	pod := p.pods[key]
	delete(p.pods, key)
	p.mu.Unlock()
	if pod == nil {
		// Not known (e.g. after a restart): remove whatever carries its name.
		pod = &Pod{Key: key, Netns: p.Prefix + "pod-" + sanitize(key), hostVeth: HostVethName(key), ns: netns.None()}
		for _, n := range p.order {
			pod.Node = n.Name
			p.removePodNS(pod)
		}
		return 0
	}
	cut := pod.StopServers()
	p.removePodNS(pod)
	return cut
}

func (p *Plane) removePodNS(pod *Pod) {
	if pod.host {
		return
	}
	if n := p.nodes[pod.Node]; n != nil {
		if l, err := n.h.LinkByName(pod.hostVeth); err == nil {
			_ = n.h.LinkDel(l)
		}
	}
	pod.closeNS()
	_ = netns.DeleteNamed(pod.Netns)
}

// AddServer records a socket owner to close when the pod stops.
func (p *Pod) AddServer(c io.Closer) {
	p.mu.Lock()
	p.servers = append(p.servers, c)
	p.mu.Unlock()
}

// StopServers closes the pod's listening sockets and their connections; it returns how many of
// those were open and not idle.
func (p *Pod) StopServers() int {
	p.mu.Lock()
	s := p.servers
	p.servers = nil
	cut := len(p.busy)
	p.mu.Unlock()
	for _, c := range s {
		_ = c.Close()
	}
	return cut
}

func (p *Pod) closeNS() {
	if !p.host && p.ns.IsOpen() && p.ns != 0 {
		p.ns.Close()
		p.ns = netns.None()
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}
