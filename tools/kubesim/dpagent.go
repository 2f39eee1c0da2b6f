package main

// The agent's side of --dataplane (tools/kubesim/dataplane): node namespaces, block routes that
// follow Calico's block affinities, pod namespaces and servers, real probes, and termination as a
// kubelet does it.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/vishvananda/netns"

	"example.invalid/kubesim/dataplane"
)

var (
	dataplaneOn bool
	// dataplaneByDefault: dataplaneOn came from the default, not from --dataplane; a dataplane that
	// cannot start then only logs why and kubesim runs without it.
	dataplaneByDefault bool
	terminationDelay   time.Duration
	unroutedCIDRs      cidrList
)

// cidrList is a repeatable flag of CIDRs.
type cidrList []*net.IPNet

func (l *cidrList) String() string {
	var out []string
	for _, c := range *l {
		out = append(out, c.String())
	}
	return strings.Join(out, ",")
}

func (l *cidrList) Set(v string) error {
	_, c, err := net.ParseCIDR(v)
	if err != nil {
		return err
	}
	*l = append(*l, c)
	return nil
}

func registerDataplaneFlags(fs *flag.FlagSet) {
	fs.BoolVar(&dataplaneOn, "dataplane", false, fmt.Sprintf("real network namespaces for nodes and pods, block routes, serving containers, real probes and kube-proxy (nftables) per node; needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), ip and nft (default: on below %d nodes except in the scale and bench scenarios, and then, when the process cannot run it, off with one log line saying why; an explicit --dataplane that cannot start is an error; =false turns it off)", dataplaneMaxNodes))
	fs.Var(&unroutedCIDRs, "unrouted-cidr", "with --dataplane, a fault: IPAM blocks inside this CIDR get no routes on the other nodes, like a cloud route table that does not carry a new pool (repeatable)")
	fs.DurationVar(&terminationDelay, "termination-delay", 2*time.Second, "with --dataplane: how long a deleted pod without a preStop hook keeps serving (bounded by its grace period)")
}

// dataplaneMaxNodes: below this many nodes the dataplane is on by default (the same threshold as
// the real tunnel allocator's); the scale and bench scenarios, and bigger clusters, run without it.
const dataplaneMaxNodes = realTunnelAllocatorMaxNodes

// resolveDataplane picks the default after parsing; an explicit --dataplane[=bool] always wins.
func resolveDataplane(fs *flag.FlagSet, nodes int, scenario string) {
	set := false
	fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "dataplane" })
	if !set {
		dataplaneOn = nodes < dataplaneMaxNodes && scenario != "scale" && scenario != "bench"
		dataplaneByDefault = dataplaneOn
	}
}

// dataplaneUnavailable says why this process cannot run the dataplane, or "" when it can as far as
// can be told without creating a namespace (dataplane.New is the last word).
func dataplaneUnavailable() string {
	if os.Geteuid() != 0 {
		return "it creates network namespaces and needs root"
	}
	const capNetAdmin, capSysAdmin = 12, 21
	if eff, ok := effectiveCapabilities(); ok {
		var missing []string
		if eff&(1<<capSysAdmin) == 0 {
			missing = append(missing, "CAP_SYS_ADMIN")
		}
		if eff&(1<<capNetAdmin) == 0 {
			missing = append(missing, "CAP_NET_ADMIN")
		}
		if len(missing) > 0 {
			return "it needs " + strings.Join(missing, " and ") + ", which this process lacks"
		}
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "it starts kube-proxy with `ip netns exec`, and ip (iproute2) is not on PATH"
	}
	if _, err := exec.LookPath("nft"); err != nil {
		return "it runs kube-proxy in nftables mode, and the nft command is not on PATH (Debian/Ubuntu: apt-get install -y nftables; scripts/build-kubesim.sh installs it)"
	}
	return ""
}

// effectiveCapabilities reads CapEff from /proc/self/status.
func effectiveCapabilities() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// errNoNamespaces: dataplane.New could not build the namespaces (nothing is left running).
var errNoNamespaces = errors.New("cannot create the dataplane's namespaces")

var blockAffinityGVR = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "blockaffinities"}

type dpNS = netns.NsHandle

// dpState is the agent's per-pod probe bookkeeping.
type dpState struct {
	mu        sync.Mutex
	readyFail map[types.UID]int
	liveFail  map[types.UID]int
}

// setupDataplane builds the namespaces, then follows block affinities with routes and starts a
// kube-proxy per node. Node addresses must already be the dataplane's (useDataplaneAddresses).
func setupDataplane(ctx context.Context, a *agent, dir, kubeconfig string, apiPort int, verbose bool) (*dataplane.Plane, error) {
	if why := dataplaneUnavailable(); why != "" {
		return nil, fmt.Errorf("--dataplane: %s; run kubesim as root with nft, or with --dataplane=false", why)
	}
	start := time.Now()
	dp, err := dataplane.New(dataplane.Prefix(dir), a.nodes, a.fam.v4, a.fam.v6)
	if err != nil {
		return nil, fmt.Errorf("dataplane: %w: %w", errNoNamespaces, err)
	}
	dp.Unrouted = unroutedCIDRs
	dp.Logf = logf
	if len(unroutedCIDRs) > 0 {
		logf("dataplane: fault: blocks inside %s get no routes on other nodes", unroutedCIDRs.String())
	}
	a.dp = dp
	a.dps = &dpState{readyFail: map[types.UID]int{}, liveFail: map[types.UID]int{}}
	if err := dp.WriteInfo(filepath.Join(dir, "dataplane.json")); err != nil {
		dp.Close()
		return nil, err
	}
	if err := followBlockAffinities(ctx, a, dp); err != nil {
		dp.Close()
		return nil, err
	}
	if err := startKubeProxies(ctx, dp, dir, kubeconfig, apiPort, verbose); err != nil {
		dp.Close()
		return nil, err
	}
	logf("dataplane: %d node namespaces (%s*) on an underlay bridge, set up in %.1fs", len(a.nodes), dp.Prefix, time.Since(start).Seconds())
	return dp, nil
}

// useDataplaneAddresses gives the nodes their underlay addresses (198.18.0.0/16, 2001:2::/64).
func useDataplaneAddresses(a *agent) {
	for i, n := range a.nodes {
		a.nodeIP[n] = dataplane.NodeIPv4(i)
	}
	a.nodeIPv6 = dataplane.NodeIPv6
	a.nodeV4Mask = 16
}

// followBlockAffinities keeps every node's block routes equal to the confirmed affinities of the
// other nodes: a route appears when its block's affinity is confirmed and goes when the affinity is
// released or deleted. Pool state is not looked at for the underlay routes: disabled pools stay
// routed, as with BIRD. Blocks of pools with vxlanMode Always are routed through the nodes' VXLAN
// devices instead, following the IPPools and the Nodes' VXLAN tunnel addresses (dataplane.PlanNode).
func followBlockAffinities(ctx context.Context, a *agent, dp *dataplane.Plane) error {
	dyn, err := dynamic.NewForConfig(a.restCfg)
	if err != nil {
		return err
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	inf := f.ForResource(blockAffinityGVR).Informer()
	poolInf := f.ForResource(ippoolGVR).Informer()
	nodeInf := f.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "nodes"}).Informer()
	kick := make(chan struct{}, 1)
	poke := func(interface{}) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	for _, i := range []cache.SharedIndexInformer{inf, poolInf, nodeInf} {
		_, _ = i.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, n interface{}) { poke(n) }, DeleteFunc: poke})
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced, poolInf.HasSynced, nodeInf.HasSynced) {
		return fmt.Errorf("block affinity, IP pool or node informer did not sync")
	}
	sync := func() {
		var blocks []dataplane.Block
		for _, o := range inf.GetStore().List() {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			state, _, _ := unstructured.NestedString(u.Object, "spec", "state")
			node, _, _ := unstructured.NestedString(u.Object, "spec", "node")
			cidr, _, _ := unstructured.NestedString(u.Object, "spec", "cidr")
			deleted, _, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "deleted")
			if state != "confirmed" || fmt.Sprint(deleted) == "true" {
				continue
			}
			blocks = append(blocks, dataplane.Block{CIDR: cidr, Node: node})
		}
		if _, _, err := dp.SyncBlockRoutes(blocks, dpPools(poolInf.GetStore().List()), dpVTEPs(nodeInf.GetStore().List())); err != nil {
			logf("dataplane: block routes: %v", err)
		}
	}
	sync()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				sync()
			case <-time.After(10 * time.Second):
				sync()
			}
		}
	}()
	return nil
}

// dpPools reads the IPPools' CIDRs and VXLAN modes: only Always encapsulates here (CrossSubnet
// does not between nodes of one subnet, and all nodes share 198.18.0.0/16).
func dpPools(objs []interface{}) []dataplane.Pool {
	var out []dataplane.Pool
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		cidr, _, _ := unstructured.NestedString(u.Object, "spec", "cidr")
		mode, _, _ := unstructured.NestedString(u.Object, "spec", "vxlanMode")
		if _, c, err := net.ParseCIDR(cidr); err == nil {
			out = append(out, dataplane.Pool{CIDR: c, VXLAN: mode == "Always"})
		}
	}
	return out
}

// dpVTEPs reads each Node's VXLAN tunnel addresses and MACs from the annotations calico-node's
// allocator (or the emulation) and Felix write.
func dpVTEPs(objs []interface{}) map[string]dataplane.VTEP {
	out := map[string]dataplane.VTEP{}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		ann := u.GetAnnotations()
		out[u.GetName()] = dataplane.VTEP{
			IPv4:  dataplane.TunnelAddr(ann[annVXLANTunnel]),
			IPv6:  dataplane.TunnelAddr(ann[annVXLANTunnel6]),
			MAC:   ann["projectcalico.org/VXLANTunnelMACAddr"],
			MACv6: ann["projectcalico.org/VXLANTunnelMACAddrV6"],
		}
	}
	return out
}

func containersOf(p *corev1.Pod) []dataplane.Container {
	var out []dataplane.Container
	for _, c := range p.Spec.Containers {
		dc := dataplane.Container{Image: c.Image, Command: c.Command, Args: c.Args}
		for _, port := range c.Ports {
			if port.Protocol == "" || port.Protocol == corev1.ProtocolTCP {
				dc.Ports = append(dc.Ports, int(port.ContainerPort))
			}
		}
		out = append(out, dc)
	}
	return out
}

// dpStartPod wires a pod's namespace (or, for a hostNetwork pod, uses its node's) and starts its
// containers' servers. It returns the outcome of an agnhost `connect` container: "" when none.
func (a *agent) dpStartPod(node string, p *corev1.Pod, ips []string) (string, error) {
	var pod *dataplane.Pod
	var err error
	if p.Spec.HostNetwork {
		pod, err = a.dp.AddHostPod(node, string(p.UID))
	} else {
		pod, err = a.dp.AddPod(node, string(p.UID), ips)
	}
	if err != nil {
		return "", err
	}
	outcome := ""
	for _, c := range containersOf(p) {
		b := dataplane.BehaviourOf(c)
		if b.Kind == "connect" {
			outcome = "Failed"
			if b.Connect != "" && dataplane.ProbeTCP(pod.NS(), hostOf(b.Connect), portOf(b.Connect), 5*time.Second) == nil {
				outcome = "Succeeded"
			}
			continue
		}
		if err := dataplane.StartServers(pod.NS(), pod, p.Name, b); err != nil {
			logf("pod %s/%s: %v", p.Namespace, p.Name, err)
		}
	}
	return outcome, nil
}

// connectsWithoutNetwork says whether a pod runs agnhost `connect` on a kubesim without
// --dataplane: there is no network to connect over, so its container never starts (it waits with
// CreateContainerError, as a real kubelet leaves a container it cannot create) rather than
// ending Succeeded or Failed with an outcome nothing measured.
func (a *agent) connectsWithoutNetwork(p *corev1.Pod) bool {
	if a.dp != nil {
		return false
	}
	for _, c := range containersOf(p) {
		if dataplane.BehaviourOf(c).Kind == "connect" {
			return true
		}
	}
	return false
}

// notCreated is the container status of such a pod.
func notCreated(p *corev1.Pod) []interface{} {
	var out []interface{}
	for _, c := range p.Spec.Containers {
		out = append(out, map[string]interface{}{
			"name": c.Name, "image": c.Image, "imageID": "", "ready": false, "started": false, "restartCount": 0,
			"state": map[string]interface{}{"waiting": map[string]interface{}{
				"reason":  "CreateContainerError",
				"message": "kubesim runs agnhost connect only with --dataplane: without it there is no network to connect over",
			}},
		})
	}
	return out
}

func readinessProbed(p *corev1.Pod) bool {
	for _, c := range p.Spec.Containers {
		if c.ReadinessProbe != nil {
			return true
		}
	}
	return false
}

func hostOf(hp string) string {
	i := strings.LastIndex(hp, ":")
	if i < 0 {
		return hp
	}
	return strings.Trim(hp[:i], "[]")
}

func portOf(hp string) int {
	n, _ := strconv.Atoi(hp[strings.LastIndex(hp, ":")+1:])
	return n
}

// dpProbe runs the pod's readiness probe (when due) and liveness probe from its node's namespace.
// It returns whether the pod is ready and when to look again (0: no probes to repeat).
func (a *agent) dpProbe(p *corev1.Pod) (ready bool, again time.Duration) {
	nodeNS, ok := a.dp.NodeNS(p.Spec.NodeName)
	if !ok {
		return true, 0
	}
	host := p.Status.PodIP
	if host == "" {
		return false, time.Second
	}
	ready, again = true, 0
	for _, c := range p.Spec.Containers {
		if pr := c.LivenessProbe; pr != nil {
			again = minNonZero(again, period(pr))
			if err := runProbe(nodeNS, host, c, pr); err != nil {
				a.dps.mu.Lock()
				a.dps.liveFail[p.UID]++
				n := a.dps.liveFail[p.UID]
				a.dps.mu.Unlock()
				if n >= int(threshold(pr.FailureThreshold, 3)) {
					a.recorder.Eventf(p, corev1.EventTypeWarning, "Unhealthy", "Liveness probe failed: %v", err)
					a.dpRestart(p)
					a.dps.mu.Lock()
					a.dps.liveFail[p.UID] = 0
					a.dps.mu.Unlock()
				}
			} else {
				a.dps.mu.Lock()
				a.dps.liveFail[p.UID] = 0
				a.dps.mu.Unlock()
			}
		}
		pr := c.ReadinessProbe
		if pr == nil {
			continue
		}
		again = minNonZero(again, period(pr))
		err := runProbe(nodeNS, host, c, pr)
		a.dps.mu.Lock()
		if err != nil {
			a.dps.readyFail[p.UID]++
		} else {
			a.dps.readyFail[p.UID] = 0
		}
		fails := a.dps.readyFail[p.UID]
		a.dps.mu.Unlock()
		// A pod not yet ready needs one success; a ready pod turns unready after failureThreshold.
		if err != nil && (!isPodReady(p) || fails >= int(threshold(pr.FailureThreshold, 3))) {
			ready = false
		}
	}
	return ready, again
}

// dpRestart restarts a pod's servers (its container was killed after a failed liveness probe).
func (a *agent) dpRestart(p *corev1.Pod) {
	pod := a.dp.Pod(string(p.UID))
	if pod == nil {
		return
	}
	pod.StopServers()
	for _, c := range containersOf(p) {
		b := dataplane.BehaviourOf(c)
		if b.Kind != "connect" {
			_ = dataplane.StartServers(pod.NS(), pod, p.Name, b)
		}
	}
}

func runProbe(ns dpNS, host string, c corev1.Container, pr *corev1.Probe) error {
	timeout := time.Duration(threshold(pr.TimeoutSeconds, 1)) * time.Second
	switch {
	case pr.HTTPGet != nil:
		return dataplane.ProbeHTTP(ns, host, namedPort(c, pr.HTTPGet.Port), pr.HTTPGet.Path, timeout)
	case pr.TCPSocket != nil:
		return dataplane.ProbeTCP(ns, host, namedPort(c, pr.TCPSocket.Port), timeout)
	}
	return nil // exec and grpc probes: treated as passing
}

func namedPort(c corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

func period(pr *corev1.Probe) time.Duration {
	return time.Duration(threshold(pr.PeriodSeconds, 10)) * time.Second
}

func threshold(v, def int32) int32 {
	if v <= 0 {
		return def
	}
	return v
}

func minNonZero(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

// terminationWait is how long a deleted pod keeps serving: its preStop sleep (a sleep action or an
// exec `sleep N`), else --termination-delay, never longer than its grace period.
func terminationWait(p *corev1.Pod) time.Duration {
	wait := terminationDelay
	found := false
	for _, c := range p.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			continue
		}
		ps := c.Lifecycle.PreStop
		var d time.Duration
		if ps.Sleep != nil {
			d = time.Duration(ps.Sleep.Seconds) * time.Second
		} else if ps.Exec != nil {
			d = sleepOf(ps.Exec.Command)
		}
		if !found || d > wait {
			wait, found = d, true
		}
	}
	if p.DeletionGracePeriodSeconds != nil {
		if g := time.Duration(*p.DeletionGracePeriodSeconds) * time.Second; g < wait {
			wait = g
		}
	}
	return wait
}

// sleepOf reads N from ["sleep", "N"] or ["sh", "-c", "sleep N"].
func sleepOf(cmd []string) time.Duration {
	words := strings.Fields(strings.Join(cmd, " "))
	for i, w := range words {
		if strings.HasSuffix(w, "sleep") && i+1 < len(words) {
			if f, err := strconv.ParseFloat(words[i+1], 64); err == nil {
				return time.Duration(f * float64(time.Second))
			}
		}
	}
	return 0
}

// dpStopPod closes the pod's sockets and removes its namespace (CNI DEL), before its address is
// released.
func (a *agent) dpStopPod(uid types.UID) {
	if a.dp == nil {
		return
	}
	if cut := a.dp.RemovePod(string(uid)); cut > 0 {
		// A client still sent to this pod after it stopped serving: those requests fail (EOF).
		logf("dataplane: pod %s stopped serving at %s with %d connection(s) mid-request", uid, time.Now().UTC().Format("15:04:05.000"), cut)
	}
	a.dps.mu.Lock()
	delete(a.dps.readyFail, uid)
	delete(a.dps.liveFail, uid)
	a.dps.mu.Unlock()
}
