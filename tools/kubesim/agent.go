package main

// The node agent plays kubelet + Calico CNI (IPAM part) + calico-node's tunnel
// address allocation for N fake nodes (nodes.go: the nodes; tunnelemul.go: the
// tunnel-address emulation of the scale scenarios).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/projectcalico/calico/libcalico-go/lib/clientv3"
	cerrors "github.com/projectcalico/calico/libcalico-go/lib/errors"
	"github.com/projectcalico/calico/libcalico-go/lib/ipam"
	cnet "github.com/projectcalico/calico/libcalico-go/lib/net"
	"github.com/projectcalico/calico/libcalico-go/lib/options"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"example.invalid/kubesim/dataplane"
)

const (
	annPodIP        = "cni.projectcalico.org/podIP"
	annPodIPs       = "cni.projectcalico.org/podIPs"
	annContainerID  = "cni.projectcalico.org/containerID"
	annIPv4Pools    = "cni.projectcalico.org/ipv4pools"
	annIPv6Pools    = "cni.projectcalico.org/ipv6pools"
	annIPAddrs      = "cni.projectcalico.org/ipAddrs"
	annReadyAfter   = "kubesim.io/ready-after"
	annComplete     = "kubesim.io/complete-after"
	annTerminate    = "kubesim.io/terminate-after"
	annIPIPTunnel   = "projectcalico.org/IPv4IPIPTunnelAddr"
	annVXLANTunnel  = "projectcalico.org/IPv4VXLANTunnelAddr"
	annVXLANTunnel6 = "projectcalico.org/IPv6VXLANTunnelAddr"
	annIPv4Address  = "projectcalico.org/IPv4Address"
	annIPv6Address  = "projectcalico.org/IPv6Address"
	tunnelKeyPrefix = "\x00tunnel"
)

// podState is the agent's record of one pod incarnation (one UID). It is keyed by UID, never by
// namespace/name: a StatefulSet replacement pod has the same name but a new UID, possibly on
// another node, and must never see (or release) its predecessor's handle.
type podState struct {
	uid      types.UID
	node     string
	handle   string
	ip       string
	started  time.Time
	released bool
}

type agent struct {
	kube       kubernetes.Interface
	cal        clientv3.Interface
	restCfg    *rest.Config
	nodes      []string
	nodeIP     map[string]string
	nodeIdx    map[string]int
	fam        families
	zones      bool
	queues     map[string]workqueue.TypedRateLimitingInterface[string]
	readyDelay time.Duration
	// tunnelDelay: how long a tunnel address outside every qualifying pool is kept before it moves
	// (calico-node notices pool changes only on its next check); tunnelStale: since when, per node+kind.
	tunnelDelay time.Duration
	tunnelStale map[string]time.Time
	podLister   corelisters.PodLister
	nsLister    corelisters.NamespaceLister
	podsSynced  cache.InformerSynced
	recorder    record.EventRecorder
	mu          sync.Mutex
	state       map[types.UID]*podState
	lastErr     map[types.UID]string
	// With --dataplane: the namespaces and servers (dpagent.go), and the nodes' underlay addresses.
	dp         *dataplane.Plane
	dps        *dpState
	nodeIPv6   func(int) string
	nodeV4Mask int
}

func newAgent(kube kubernetes.Interface, cal clientv3.Interface, restCfg *rest.Config, n int, readyDelay time.Duration) *agent {
	a := &agent{kube: kube, cal: cal, restCfg: restCfg, nodeIP: map[string]string{}, nodeIdx: map[string]int{}, fam: families{v4: true}, queues: map[string]workqueue.TypedRateLimitingInterface[string]{},
		readyDelay: readyDelay, tunnelStale: map[string]time.Time{}, state: map[types.UID]*podState{}, lastErr: map[types.UID]string{},
		nodeIPv6: nodeIPv6, nodeV4Mask: 8}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("kubesim-node-%d", i)
		a.nodes = append(a.nodes, name)
		a.nodeIP[name] = fmt.Sprintf("127.0.%d.%d", 1+(i+1)/256, (i+1)%256)
		a.nodeIdx[name] = i
		rl := workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, 8*time.Second)
		a.queues[name] = workqueue.NewTypedRateLimitingQueue[string](rl)
	}
	return a
}

func (a *agent) enqueuePod(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || !a.isOurNode(p.Spec.NodeName) {
		return
	}
	a.queues[p.Spec.NodeName].Add(podKey(p))
}

// podKey is the work-queue key of one pod incarnation: "ns/name/uid".
func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name + "/" + string(p.UID) }

func splitPodKey(key string) (ns, name string, uid types.UID) {
	ns, rest, _ := strings.Cut(key, "/")
	name, u, _ := strings.Cut(rest, "/")
	return ns, name, types.UID(u)
}

func (a *agent) enqueueTunnels() {
	for _, n := range a.nodes {
		a.queues[n].Add(tunnelKeyPrefix)
	}
}

// start runs informers and per-node workers.
func (a *agent) start(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(a.kube, 0)
	podInf := f.Core().V1().Pods()
	a.podLister = podInf.Lister()
	a.nsLister = f.Core().V1().Namespaces().Lister()
	a.podsSynced = podInf.Informer().HasSynced
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    a.enqueuePod,
		UpdateFunc: func(_, n interface{}) { a.enqueuePod(n) },
		DeleteFunc: a.enqueuePod,
	})
	f.Core().V1().Namespaces().Informer()
	f.Start(ctx.Done())

	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.kube.CoreV1().Events("")})
	a.recorder = bc.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet"})
	go func() { <-ctx.Done(); bc.Shutdown() }()

	dyn, err := dynamic.NewForConfig(a.restCfg)
	if err != nil {
		return err
	}
	df := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	df.ForResource(ippoolGVR).Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { a.enqueueTunnels() },
		UpdateFunc: func(interface{}, interface{}) { a.enqueueTunnels() },
		DeleteFunc: func(interface{}) { a.enqueueTunnels() },
	})
	df.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.podsSynced, f.Core().V1().Namespaces().Informer().HasSynced) {
		return fmt.Errorf("informer sync failed")
	}
	for _, n := range a.nodes {
		q := a.queues[n]
		go func() { <-ctx.Done(); q.ShutDown() }()
		go a.worker(ctx, n, q)
	}
	go func() {
		t := time.NewTicker(60 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.enqueueTunnels()
			}
		}
	}()
	a.enqueueTunnels()
	return nil
}

func (a *agent) worker(ctx context.Context, node string, q workqueue.TypedRateLimitingInterface[string]) {
	for {
		key, quit := q.Get()
		if quit {
			return
		}
		var after time.Duration
		var err error
		if key == tunnelKeyPrefix {
			after, err = a.syncTunnels(ctx, node)
		} else {
			after, err = a.syncPod(ctx, node, key)
		}
		switch {
		case ctx.Err() != nil:
		case err != nil:
			klog.V(2).Infof("%s %s: %v", node, key, err)
			q.AddRateLimited(key)
		case after > 0:
			q.Forget(key)
			q.AddAfter(key, after)
		default:
			q.Forget(key)
		}
		q.Done(key)
	}
}

func randomContainerID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func annDuration(p *corev1.Pod, k string, def time.Duration) time.Duration {
	if s, ok := p.Annotations[k]; ok {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return def
}

func (a *agent) release(ctx context.Context, handle string) error {
	if handle == "" {
		return nil
	}
	err := a.cal.IPAM().ReleaseByHandle(ctx, handle)
	if err != nil {
		if _, ok := err.(cerrors.ErrorResourceDoesNotExist); ok {
			return nil
		}
		return fmt.Errorf("release %s: %w", handle, err)
	}
	return nil
}

// syncPod drives one pod towards its desired state. Returns a requeue delay.
func (a *agent) syncPod(ctx context.Context, node, key string) (time.Duration, error) {
	// The key names one pod incarnation (UID). Everything below touches only that UID's state, so
	// the delete event of an old pod can never release the allocation of a same-name replacement
	// (the old bug: state was keyed by ns/name and shared by all per-node workers, so the old
	// pod's node worker, seeing "shop/db-0" now on another node, released the NEW pod's handle).
	ns, name, uid := splitPodKey(key)
	pod, err := a.podLister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		pod = nil
	} else if err != nil {
		return 0, err
	}
	if pod != nil && (pod.UID != uid || pod.Spec.NodeName != node) {
		pod = nil // this incarnation is gone (a same-name successor has its own key)
	}
	a.mu.Lock()
	st := a.state[uid]
	a.mu.Unlock()

	// Pod gone (deleted, force-deleted or replaced by a new pod with the same name).
	if pod == nil {
		a.dpStopPod(uid)
		if st != nil && st.node == node {
			if !st.released {
				if err := a.release(ctx, st.handle); err != nil {
					return 0, err
				}
			}
			a.mu.Lock()
			if a.state[uid] == st {
				delete(a.state, uid)
			}
			a.mu.Unlock()
		}
		a.mu.Lock()
		delete(a.lastErr, uid)
		a.mu.Unlock()
		return 0, nil
	}
	// Adopt a pod that already has an IP from us (e.g. state lost).
	if st == nil && pod.Annotations[annContainerID] != "" && pod.Status.PodIP != "" && !pod.Spec.HostNetwork {
		st = &podState{uid: pod.UID, node: node, handle: "k8s-pod-network." + pod.Annotations[annContainerID], ip: pod.Status.PodIP, started: time.Now()}
		if pod.Status.StartTime != nil {
			st.started = pod.Status.StartTime.Time
		}
		a.mu.Lock()
		a.state[uid] = st
		a.mu.Unlock()
	}

	if pod.DeletionTimestamp != nil {
		grace := int64(0)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		requested := pod.DeletionTimestamp.Time.Add(-time.Duration(grace) * time.Second)
		serve := annDuration(pod, annTerminate, 0)
		if a.dp != nil {
			// The kubelet runs preStop and waits for the containers to exit while they keep serving.
			serve = max(serve, terminationWait(pod))
		}
		if wait := serve - time.Since(requested); wait > 0 {
			return wait, nil
		}
		a.dpStopPod(uid)
		maybeLeak(pod, st)
		if err := a.releaseOnce(ctx, pod, st); err != nil {
			return 0, err
		}
		err := a.kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0),
			Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, err
		}
		return 0, nil
	}

	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		a.dpStopPod(uid)
		if err := a.releaseOnce(ctx, pod, st); err != nil {
			return 0, err
		}
		return 0, nil
	}

	// A hostNetwork pod has no state here: it was started once it has a start time.
	if st == nil && !(pod.Spec.HostNetwork && pod.Status.StartTime != nil) {
		return a.startPod(ctx, node, pod)
	}

	if a.connectsWithoutNetwork(pod) {
		return 0, nil // its container never starts (see connectsWithoutNetwork)
	}
	// Running: readiness and completion.
	started := time.Now()
	if pod.Status.StartTime != nil {
		started = pod.Status.StartTime.Time
	}
	if d, ok := pod.Annotations[annComplete]; ok {
		if cd, err := time.ParseDuration(d); err == nil {
			if rem := cd - time.Since(started); rem > 0 {
				defer func() {}()
				if !isPodReady(pod) {
					if r := annDuration(pod, annReadyAfter, a.readyDelay) - time.Since(started); r > 0 {
						return minDur(r, rem), nil
					}
					return 0, a.patchStatus(ctx, pod, nil, readyStatus(pod, true))
				}
				return rem, nil
			}
			return 0, a.completePod(ctx, pod, st)
		}
	}
	if !isPodReady(pod) {
		if r := annDuration(pod, annReadyAfter, a.readyDelay) - time.Since(started); r > 0 {
			return r, nil
		}
		if a.dp != nil {
			if ready, again := a.dpProbe(pod); !ready {
				return max(again, 200*time.Millisecond), nil
			}
		}
		return 0, a.patchStatus(ctx, pod, nil, readyStatus(pod, true))
	}
	if a.dp != nil {
		ready, again := a.dpProbe(pod)
		if !ready {
			return again, a.patchStatus(ctx, pod, nil, readyStatus(pod, false))
		}
		return again, nil
	}
	return 0, nil
}

func minDur(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}

func isPodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func containerStatuses(p *corev1.Pod, ready bool, started metav1.Time, terminated bool) []interface{} {
	var out []interface{}
	for _, c := range p.Spec.Containers {
		state := map[string]interface{}{"running": map[string]interface{}{"startedAt": started}}
		if terminated {
			state = map[string]interface{}{"terminated": map[string]interface{}{"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": metav1.Now()}}
		}
		out = append(out, map[string]interface{}{
			"name": c.Name, "image": c.Image, "imageID": "docker.io/kubesim/" + c.Image, "ready": ready && !terminated,
			"started": !terminated, "restartCount": 0, "state": state,
			"containerID": "containerd://" + strings.Repeat("0", 8) + hexName(p.Name+c.Name),
		})
	}
	return out
}

func hexName(s string) string { return hex.EncodeToString([]byte(s))[:16%(len(s)*2+1)] }

func conditions(ready bool, now metav1.Time) []interface{} {
	s := "False"
	if ready {
		s = "True"
	}
	return []interface{}{
		map[string]interface{}{"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
		map[string]interface{}{"type": "Initialized", "status": "True", "lastTransitionTime": now},
		map[string]interface{}{"type": "ContainersReady", "status": s, "lastTransitionTime": now},
		map[string]interface{}{"type": "Ready", "status": s, "lastTransitionTime": now},
	}
}

func readyStatus(p *corev1.Pod, ready bool) map[string]interface{} {
	started := metav1.Now()
	if p.Status.StartTime != nil {
		started = *p.Status.StartTime
	}
	return map[string]interface{}{
		"conditions":        conditions(ready, metav1.Now()),
		"containerStatuses": containerStatuses(p, ready, started, false),
	}
}

// patchStatus applies a strategic merge patch through pods/status (as Calico's CNI plugin does for
// its annotations and the kubelet does for status).
func (a *agent) patchStatus(ctx context.Context, p *corev1.Pod, anns map[string]interface{}, status map[string]interface{}) error {
	patch := map[string]interface{}{"metadata": map[string]interface{}{"uid": string(p.UID)}}
	if anns != nil {
		patch["metadata"].(map[string]interface{})["annotations"] = anns
	}
	if status != nil {
		patch["status"] = status
	}
	b, _ := json.Marshal(patch)
	_, err := a.kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, b, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (a *agent) completePod(ctx context.Context, p *corev1.Pod, st *podState) error {
	return a.finishPod(ctx, p, st, "Succeeded")
}

// finishPod ends a pod whose containers exited (phase Succeeded or Failed) and releases its address.
func (a *agent) finishPod(ctx context.Context, p *corev1.Pod, st *podState, phase string) error {
	started := metav1.Now()
	if p.Status.StartTime != nil {
		started = *p.Status.StartTime
	}
	status := map[string]interface{}{
		"phase":             phase,
		"conditions":        conditions(false, metav1.Now()),
		"containerStatuses": containerStatuses(p, false, started, true),
	}
	if phase == "Failed" {
		for _, c := range status["containerStatuses"].([]interface{}) {
			t := c.(map[string]interface{})["state"].(map[string]interface{})["terminated"].(map[string]interface{})
			t["exitCode"], t["reason"] = 1, "Error"
		}
	}
	a.dpStopPod(p.UID)
	if err := a.patchStatus(ctx, p, nil, status); err != nil {
		return err
	}
	if st != nil && !st.released {
		if err := a.release(ctx, st.handle); err != nil {
			return err
		}
		st.released = true
		_ = a.patchStatus(ctx, p, map[string]interface{}{annPodIP: "", annPodIPs: ""}, nil)
	}
	return nil
}

// resolvePools re-implements cni-plugin/internal/pkg/utils.ResolvePools.
func (a *agent) resolvePools(ctx context.Context, pools []string, v6 bool) ([]cnet.IPNet, error) {
	if len(pools) == 0 {
		return nil, nil
	}
	pl, err := a.cal.IPPools().List(ctx, options.ListOptions{})
	if err != nil {
		return nil, err
	}
	var result []cnet.IPNet
	for _, p := range pools {
		_, cidr, err := net.ParseCIDR(p)
		if err != nil {
			for _, ipp := range pl.Items {
				if ipp.Name == p {
					_, cidr, err = net.ParseCIDR(ipp.Spec.CIDR)
					if err != nil {
						return nil, fmt.Errorf("failed to parse IP pool cidr: %s", err)
					}
				}
			}
			if cidr == nil {
				return nil, fmt.Errorf("error parsing pool %q: %s", p, err)
			}
		}
		if !v6 && cidr.IP.To4() == nil {
			return nil, fmt.Errorf("%q isn't a IPv4 address", cidr.IP)
		}
		if v6 && cidr.IP.To4() != nil {
			return nil, fmt.Errorf("%q isn't a IPv6 address", cidr.IP)
		}
		result = append(result, cnet.IPNet{IPNet: *cidr})
	}
	return result, nil
}

func (a *agent) failPod(ctx context.Context, p *corev1.Pod, containerID string, cause error) error {
	msg := fmt.Sprintf("Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox %q: plugin type=\"calico\" failed (add): %v", containerID, cause)
	key := p.Namespace + "/" + p.Name
	a.mu.Lock()
	changed := a.lastErr[p.UID] != cause.Error()
	a.lastErr[p.UID] = cause.Error()
	a.mu.Unlock()
	a.recorder.Event(p, corev1.EventTypeWarning, "FailedCreatePodSandBox", msg)
	if changed {
		logf("pod %s on %s: sandbox failed: %v", key, p.Spec.NodeName, cause)
		var cs []interface{}
		for _, c := range p.Spec.Containers {
			cs = append(cs, map[string]interface{}{"name": c.Name, "image": c.Image, "imageID": "", "ready": false, "started": false, "restartCount": 0,
				"state": map[string]interface{}{"waiting": map[string]interface{}{"reason": "ContainerCreating"}}})
		}
		now := metav1.Now()
		status := map[string]interface{}{
			"phase": "Pending", "hostIP": a.hostIPs(p.Spec.NodeName)[0],
			"hostIPs":   ipList(a.hostIPs(p.Spec.NodeName)),
			"startTime": now,
			"conditions": []interface{}{
				map[string]interface{}{"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": now},
				map[string]interface{}{"type": "Initialized", "status": "True", "lastTransitionTime": now},
				map[string]interface{}{"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
				map[string]interface{}{"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": now},
			},
			"containerStatuses": cs,
		}
		if err := a.patchStatus(ctx, p, nil, status); err != nil {
			return err
		}
	}
	return fmt.Errorf("sandbox: %w", cause)
}

func (a *agent) startPod(ctx context.Context, node string, p *corev1.Pod) (time.Duration, error) {
	key := p.Namespace + "/" + p.Name
	now := metav1.Now()
	hostIPs := a.hostIPs(node)
	hostIP := hostIPs[0]
	ready := annDuration(p, annReadyAfter, a.readyDelay) <= 0
	if a.dp != nil && (readinessProbed(p) || a.readyDelay > 0) {
		ready = false
	}
	if p.Spec.HostNetwork {
		outcome := ""
		if a.dp != nil {
			var err error
			if outcome, err = a.dpStartPod(node, p, hostIPs); err != nil {
				return 0, a.failPod(ctx, p, "", err)
			}
		}
		status := map[string]interface{}{
			"phase": "Running", "podIP": hostIP, "podIPs": ipList(hostIPs),
			"hostIP": hostIP, "hostIPs": ipList(hostIPs), "startTime": now,
			"conditions": conditions(ready, now), "containerStatuses": containerStatuses(p, ready, now, false),
		}
		if a.connectsWithoutNetwork(p) {
			status["phase"], status["conditions"], status["containerStatuses"] = "Pending", conditions(false, now), notCreated(p)
		}
		if err := a.patchStatus(ctx, p, nil, status); err != nil || outcome == "" {
			return 0, err
		}
		// An agnhost `connect` on the host network ends as it does in a pod.
		return 0, a.finishPod(ctx, p, nil, outcome)
	}
	containerID := randomContainerID()
	handle := "k8s-pod-network." + containerID
	nsObj, err := a.nsLister.Get(p.Namespace)
	if err != nil {
		nsObj, err = a.kube.CoreV1().Namespaces().Get(ctx, p.Namespace, metav1.GetOptions{})
		if err != nil {
			return 0, fmt.Errorf("failed to get namespace %s: %w", p.Namespace, err)
		}
	}
	attrs := map[string]string{
		ipam.AttributeNode: node, ipam.AttributeNamespace: p.Namespace, ipam.AttributePod: p.Name,
		ipam.AttributeTimestamp: time.Now().UTC().String(),
	}
	ips, err := a.assignPodIPs(ctx, node, p, nsObj, handle, attrs)
	if err != nil {
		return 0, a.failPod(ctx, p, containerID, err)
	}
	outcome := ""
	if a.dp != nil {
		if outcome, err = a.dpStartPod(node, p, ips); err != nil {
			a.dp.RemovePod(string(p.UID))
			_ = a.release(ctx, handle)
			return 0, a.failPod(ctx, p, containerID, err)
		}
	}
	ip := ips[0]
	st := &podState{uid: p.UID, node: node, handle: handle, ip: ip, started: now.Time}
	a.mu.Lock()
	a.state[p.UID] = st
	hadErr := a.lastErr[p.UID] != ""
	delete(a.lastErr, p.UID)
	a.mu.Unlock()
	var cidrs []string
	for _, a := range ips {
		cidrs = append(cidrs, hostCIDR(a))
	}
	anns := map[string]interface{}{annPodIP: cidrs[0], annPodIPs: strings.Join(cidrs, ","), annContainerID: containerID}
	status := map[string]interface{}{
		"phase": "Running", "podIP": ip, "podIPs": ipList(ips),
		"hostIP": hostIP, "hostIPs": ipList(hostIPs), "startTime": now,
		"conditions": conditions(ready, now), "containerStatuses": containerStatuses(p, ready, now, false),
	}
	stuck := a.connectsWithoutNetwork(p)
	if stuck {
		status["phase"], status["conditions"], status["containerStatuses"] = "Pending", conditions(false, now), notCreated(p)
	}
	if err := a.patchStatus(ctx, p, anns, status); err != nil {
		// The pod may be gone or changed: release and retry from scratch.
		a.dpStopPod(p.UID)
		_ = a.release(ctx, handle)
		a.mu.Lock()
		if a.state[p.UID] == st {
			delete(a.state, p.UID)
		}
		a.mu.Unlock()
		return 0, err
	}
	if hadErr {
		logf("pod %s on %s: started with %s after earlier failures", key, node, ip)
	}
	if stuck {
		return 0, nil
	}
	if outcome != "" {
		return 0, a.finishPod(ctx, p, st, outcome)
	}
	// Verify the pod we patched is still the same object (UID precondition in patch covers it).
	if !ready {
		return max(annDuration(p, annReadyAfter, a.readyDelay), 100*time.Millisecond), nil
	}
	if _, ok := p.Annotations[annComplete]; ok {
		return time.Millisecond, nil
	}
	return 0, nil
}

// releaseOnce gives the pod's address back to IPAM (as Calico's CNI DEL
// does) and blanks its podIP annotations; a no-op once done.
func (a *agent) releaseOnce(ctx context.Context, pod *corev1.Pod, st *podState) error {
	if st == nil || st.released {
		return nil
	}
	if err := a.release(ctx, st.handle); err != nil {
		return err
	}
	st.released = true
	if pod.Annotations[annPodIP] != "" {
		_ = a.patchStatus(ctx, pod, map[string]interface{}{annPodIP: "", annPodIPs: ""}, nil)
	}
	return nil
}
