// kubesim: a one-process Kubernetes + Calico (IPAM) test cluster.
//
// It runs embedded etcd, kube-apiserver, kube-controller-manager and kube-scheduler
// in-process, installs the Calico CRDs, and plays kubelet + Calico CNI for N fake nodes
// using libcalico-go's IPAM, so all Calico data is written by the real library.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/projectcalico/calico/libcalico-go/lib/options"
	"github.com/sirupsen/logrus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

type flags struct {
	dir            string
	nodes          int
	scenario       string
	crdMode        string
	operator       bool
	readyDelay     time.Duration
	pods           int
	deployments    int
	replicas       int
	benchMix       bool
	benchPerNS     int
	exitWithParent bool
	verbose        bool
	pprofAddr      string
	faultProxy     bool
	omit           string
	podSecurity    string
	ipFamily       string
	encap          string
	tunnelDelay    time.Duration
}

var startTime = time.Now()

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kubesim [%6.1fs] %s\n", time.Since(startTime).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tunnel-allocator" {
		os.Exit(runTunnelAllocator(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "kube-proxy" {
		os.Exit(runKubeProxy(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "sweep" {
		os.Exit(runSweep(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "monitor" {
		os.Exit(runMonitor(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "calico-apiserver" {
		os.Exit(runCalicoAPIServer(os.Args[2:]))
	}
	var f flags
	fs := flag.NewFlagSet("kubesim", flag.ExitOnError)
	fs.StringVar(&f.dir, "dir", "", "data directory (required); kubeconfig, ready, kubesim.pid and etcd data go here")
	fs.IntVar(&f.nodes, "nodes", 3, "number of fake nodes (kubesim-node-0..N-1)")
	fs.StringVar(&f.scenario, "scenario", "seed", "seed|kops|empty|scale|bench|realistic|small|zones")
	fs.StringVar(&f.ipFamily, "ip-family", "ipv4", "ipv4|ipv6|dual: node addresses, pools, pod addresses, cluster and Service CIDRs")
	fs.DurationVar(&f.tunnelDelay, "tunnel-delay", 0, "keep a node tunnel address that left every qualifying pool this long before moving it")
	fs.StringVar(&f.encap, "encap", "", "seed pools' encapsulation: ipip|vxlan|vxlan-crosssubnet|none (default: the scenario's, IPIP)")
	fs.StringVar(&f.crdMode, "crd-mode", "v1", "v1 (crd.projectcalico.org) | v3 (native projectcalico.org/v3; needs Calico >= 3.32)")
	fs.BoolVar(&f.operator, "operator", false, "emulate a tigera-operator install (Installation CR + IPPool reconciler)")
	fs.DurationVar(&f.readyDelay, "readiness-delay", 0, "time from pod start to Ready (per pod: annotation kubesim.io/ready-after)")
	fs.IntVar(&f.pods, "pods", 10000, "scale scenario: number of pods")
	fs.IntVar(&f.deployments, "deployments", 100, "bench scenario: number of Deployments")
	fs.IntVar(&f.replicas, "replicas", 10, "bench scenario: replicas per Deployment")
	fs.IntVar(&f.benchPerNS, "bench-per-namespace", 0, "bench scenario: this many workloads per namespace, in bench-000, bench-001, ... (default 0: all in bench)")
	fs.BoolVar(&f.benchMix, "bench-mix", false, "bench scenario: of every 10 workloads, one is a StatefulSet and two are Deployments under one shared PDB; plus a DaemonSet")
	fs.BoolVar(&f.exitWithParent, "exit-with-parent", false, "exit when the parent process dies")
	fs.BoolVar(&f.verbose, "v", false, "verbose component logs")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this loopback address (debugging)")
	fs.BoolVar(&f.faultProxy, "fault-proxy", false, "also serve a fault-injecting HTTPS proxy in front of kube-apiserver (DIR/kubeconfig-faulty, DIR/faults.json)")
	fs.StringVar(&f.omit, "omit", "", "realistic scenario: comma-separated workloads to leave out ("+strings.Join(realisticWorkloads, ",")+"), e.g. --omit single")
	fs.StringVar(&f.podSecurity, "pod-security", "", "enforce this Pod Security Standard (privileged|baseline|restricted) in every namespace without its own label; kube-system is exempt and the scenario namespaces are labelled privileged")
	registerLeakFlags(fs)
	registerTunnelFlags(fs)
	registerCalicoAPIServerFlags(fs)
	registerDataplaneFlags(fs)
	_ = fs.Parse(os.Args[1:])
	resolveTunnelAllocator(fs, f.nodes, f.tunnelDelay)
	resolveDataplane(fs, f.nodes, f.scenario)
	if f.dir == "" {
		fmt.Fprintln(os.Stderr, "kubesim: --dir is required")
		os.Exit(2)
	}
	if err := validPodSecurityLevel(f.podSecurity); err != nil {
		fmt.Fprintf(os.Stderr, "kubesim: %v\n", err)
		os.Exit(2)
	}
	if _, err := parseOmit(f.scenario, f.omit); err != nil {
		fmt.Fprintf(os.Stderr, "kubesim: %v\n", err)
		os.Exit(2)
	}
	if err := run(&f); err != nil {
		logf("error: %v", err)
		os.Exit(1)
	}
}

func setupLogging(verbose bool) {
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	if verbose {
		_ = kfs.Set("v", "2")
		_ = kfs.Set("logtostderr", "true")
		logrus.SetLevel(logrus.InfoLevel)
	} else {
		_ = kfs.Set("logtostderr", "false")
		_ = kfs.Set("alsologtostderr", "false")
		_ = kfs.Set("stderrthreshold", "ERROR")
		klog.SetOutput(io.Discard)
		logrus.SetLevel(logrus.ErrorLevel)
	}
	logrus.SetOutput(os.Stderr)
}

func run(f *flags) error {
	setupLogging(f.verbose)
	// Everything runs in one heap; the default GOGC=100 makes GC assists the bottleneck under load
	// (3 000-pod scale run: 102 s with GOGC=100, 42 s with 400). A soft limit keeps memory bounded.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(8 << 30)
	}
	if f.pprofAddr != "" {
		go func() { logf("pprof: %v", http.ListenAndServe(f.pprofAddr, nil)) }()
	}
	sc, err := getScenario(f.scenario)
	if err != nil {
		return err
	}
	fam, err := parseFamily(f.ipFamily)
	if err != nil {
		return err
	}
	if err := applyFamily(sc, fam); err != nil {
		return err
	}
	if err := applyEncap(sc, f.encap); err != nil {
		return err
	}
	if f.benchMix && f.benchPerNS > 0 && f.benchPerNS%10 != 0 {
		return fmt.Errorf("--bench-per-namespace %d with --bench-mix: give a multiple of 10, so that the Deployments sharing a PDB stay in one namespace", f.benchPerNS)
	}
	if f.crdMode != "v1" {
		return fmt.Errorf("--crd-mode %s: this build uses Calico v3.31 (libcalico-go has no native projectcalico.org/v3 CRD mode before v3.32); only v1 is supported", f.crdMode)
	}
	dir, err := filepath.Abs(f.dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(dir, "ready"))
	if err := os.WriteFile(filepath.Join(dir, "kubesim.pid"), []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigCh := make(chan os.Signal, 2)
	signal.Notify(sigCh, syscall.SIGTERM, syscall.SIGINT)
	// parentGone starts a shutdown as a signal does, but is never the second signal that forces
	// exit: a parent killed with its process group (Ctrl-C, kill -- -PGID) sends kubesim a signal
	// too, and a forced exit would skip the cleanup (the dataplane's namespaces would be left).
	parentGone := make(chan struct{})
	go func() {
		select {
		case s := <-sigCh:
			logf("received %v, shutting down", s)
		case <-parentGone:
		}
		cancel()
		select {
		case <-sigCh:
		case <-time.After(15 * time.Second):
			logf("shutdown took too long, exiting")
		}
		os.Exit(0)
	}()
	if f.exitWithParent {
		ppid := os.Getppid()
		go func() {
			for {
				time.Sleep(time.Second)
				if ctx.Err() != nil {
					return // already shutting down
				}
				if os.Getppid() != ppid {
					logf("parent %d died, shutting down", ppid)
					close(parentGone)
					return
				}
			}
		}()
	}

	p, err := genPKI(dir)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	etcd, etcdURL, err := startEtcd(ctx, dir, f.verbose)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()
	logf("etcd ready at %s", etcdURL)

	port, err := freePort()
	if err != nil {
		return err
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, p); err != nil {
		return err
	}
	cp := &cpConfig{dir: dir, pki: p, etcdURL: etcdURL, port: port, serviceCIDR: sc.serviceCIDR, clusterCIDR: sc.clusterCIDR, verbose: f.verbose,
		advertise: "127.0.0.1"}
	if !fam.v4 {
		// kube-apiserver wants its advertised address in the primary Service family.
		cp.advertise = "::1"
	}
	calicoAPI := calicoAPIServerEnabled(f.operator)
	if calicoAPI {
		if cp.extraArgs, err = frontProxyArgs(p); err != nil {
			return err
		}
	}
	if f.podSecurity != "" {
		if cp.admissionConfig, err = writeAdmissionConfig(dir, f.podSecurity); err != nil {
			return err
		}
	}
	errCh := make(chan error, 8)
	apiDone := make(chan error, 1)
	if err := startAPIServer(ctx, cp, apiDone); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = 2000, 4000
	restCfg.UserAgent = "kubesim"
	kube := kubernetes.NewForConfigOrDie(restCfg)
	if err := waitAPIServer(ctx, kube, apiDone); err != nil {
		return err
	}
	if f.podSecurity != "" {
		logf("kube-apiserver ready at %s (Pod Security %s enforced by default, %s)", server, f.podSecurity, cp.admissionConfig)
	} else {
		logf("kube-apiserver ready at %s", server)
	}
	var proxyURL string
	if f.faultProxy {
		var stopProxy func()
		proxyURL, stopProxy, err = startFaultProxy(ctx, dir, p, restCfg, server, f.verbose)
		if err != nil {
			return fmt.Errorf("fault proxy: %w", err)
		}
		defer stopProxy()
		logf("fault proxy at %s (kubeconfig %s, faults from %s)", proxyURL, filepath.Join(dir, "kubeconfig-faulty"), filepath.Join(dir, "faults.json"))
	}

	if err := startKCM(ctx, cp, kubeconfig, errCh); err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	if err := startScheduler(ctx, kubeconfig, errCh); err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	logf("kube-controller-manager and kube-scheduler started")

	ax := apiextclient.NewForConfigOrDie(restCfg)
	crds, err := calicoCRDs()
	if err != nil {
		return err
	}
	if f.operator {
		crds = append(crds, installationCRD())
	}
	if err := installCRDs(ctx, ax, crds); err != nil {
		return err
	}
	logf("%d CRDs established", len(crds))
	cal, err := newCalicoClient(kubeconfig)
	if err != nil {
		return fmt.Errorf("calico client: %w", err)
	}
	clusterType := "k8s,bgp,kubeadm" // libcalico-go appends ",kdd"
	if f.operator {
		clusterType = "k8s,operator,bgp,kubeadm"
	}
	if err := setupCalico(ctx, cal, clusterType, sc.pools, f.operator); err != nil {
		return err
	}
	if f.operator {
		dyn := dynamic.NewForConfigOrDie(restCfg)
		if err := createInstallation(ctx, dyn, sc.pools[0].cidr); err != nil {
			return fmt.Errorf("installation: %w", err)
		}
		if err := runOperator(ctx, restCfg, cal); err != nil {
			return err
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			l, err := cal.IPPools().List(ctx, optionsList())
			return err == nil && len(l.Items) > 0, nil
		}); err != nil {
			return fmt.Errorf("operator did not create the pool: %w", err)
		}
	}
	logf("calico initialised (clusterType %s)", clusterType)
	var calicoAPIRegistered <-chan error
	if calicoAPI {
		if calicoAPIRegistered, err = startCalicoAPIServer(ctx, p, kubeconfig, restCfg, f.verbose); err != nil {
			return fmt.Errorf("calico-apiserver: %w", err)
		}
	}
	if err := startLeakHandling(ctx, kubeconfig, cal); err != nil {
		return err
	}

	ag := newAgent(kube, cal, restCfg, f.nodes, f.readyDelay)
	ag.fam = fam
	ag.zones = sc.name == "zones"
	ag.tunnelDelay = f.tunnelDelay
	if dataplaneOn && dataplaneByDefault {
		if why := dataplaneUnavailable(); why != "" {
			logf("dataplane: off: on by default below %d nodes, but %s (--dataplane=false runs without it and without this line; --dataplane makes it an error)", dataplaneMaxNodes, why)
			dataplaneOn = false
		}
	}
	if dataplaneOn {
		_, err := setupDataplane(ctx, ag, dir, kubeconfig, port, f.verbose)
		if err != nil && dataplaneByDefault && errors.Is(err, errNoNamespaces) {
			logf("dataplane: off: on by default below %d nodes, but %v (--dataplane=false runs without it and without this line; --dataplane makes it an error)", dataplaneMaxNodes, err)
			dataplaneOn = false
		} else if err != nil {
			return err
		}
	}
	if dataplaneOn {
		dp := ag.dp
		useDataplaneAddresses(ag)
		defer func() {
			n, mean := dp.Stats()
			logf("dataplane: wired %d pod namespaces, %.1f ms each on average; removing every namespace", n, float64(mean.Microseconds())/1000)
			dp.Close()
		}()
	}
	if err := ag.createNodes(ctx); err != nil {
		return err
	}
	if err := ag.start(ctx); err != nil {
		return err
	}
	go ag.renewLeases(ctx)
	if err := startTunnelAllocators(ctx, kubeconfig, ag.nodes, f.verbose); err != nil {
		return err
	}
	logf("%d nodes Ready", f.nodes)

	// The default ServiceAccount must exist before pods can be created.
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		for _, ns := range []string{"default", "kube-system"} {
			if _, err := kube.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return fmt.Errorf("default ServiceAccount not created: %w", err)
	}
	sd := &seeder{kube: kube, sc: sc, opts: f}
	if err := sd.run(ctx); err != nil {
		return fmt.Errorf("seeding scenario %s: %w", sc.name, err)
	}
	logf("scenario %s seeded, waiting for workloads", sc.name)
	// Namespaces created by the seeder also need their default ServiceAccount; the controllers retry.
	if err := waitWorkloads(ctx, kube, ag, f, errCh); err != nil {
		return err
	}
	if err := ag.waitTunnelAddresses(ctx, 90*time.Second); err != nil {
		return err
	}
	if calicoAPI {
		waitStart := time.Now()
		if err := waitCalicoAPIServer(ctx, calicoAPIRegistered, restCfg); err != nil {
			return err
		}
		logf("projectcalico.org/v3 served by the Calico API server through the aggregator (waited %.1fs for it after the workloads)", time.Since(waitStart).Seconds())
	}
	ready := map[string]interface{}{"kubeconfig": kubeconfig, "server": server, "pid": os.Getpid()}
	if proxyURL != "" {
		ready["faultyKubeconfig"] = filepath.Join(dir, "kubeconfig-faulty")
		ready["faultProxy"] = proxyURL
	}
	b, _ := json.Marshal(ready)
	tmp := filepath.Join(dir, "ready.tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "ready")); err != nil {
		return err
	}
	logf("READY: export KUBECONFIG=%s", kubeconfig)

	select {
	case <-ctx.Done():
	case err := <-errCh:
		if err != nil && ctx.Err() == nil {
			return err
		}
	case err := <-apiDone:
		if ctx.Err() == nil {
			return fmt.Errorf("kube-apiserver exited: %v", err)
		}
	}
	// Graceful shutdown: wait a little for the apiserver, then close etcd (deferred).
	select {
	case <-apiDone:
	case <-time.After(5 * time.Second):
	}
	_ = os.Remove(filepath.Join(dir, "ready"))
	logf("stopped")
	return nil
}

// waitWorkloads waits until all workload controllers report their pods ready and every pod that
// should run is Running with an IP.
func waitWorkloads(ctx context.Context, kube kubernetes.Interface, ag *agent, f *flags, errCh <-chan error) error {
	last := ""
	deadline := 30 * time.Minute
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, deadline, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-errCh:
			return false, err
		default:
		}
		var notReady []string
		ds, err := kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, d := range ds.Items {
			if d.Status.ReadyReplicas != ptrVal(d.Spec.Replicas) || d.Status.ObservedGeneration < d.Generation {
				notReady = append(notReady, "deploy/"+d.Namespace+"/"+d.Name)
			}
		}
		rss, err := kube.AppsV1().ReplicaSets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, r := range rss.Items {
			if len(r.OwnerReferences) == 0 && r.Status.ReadyReplicas != ptrVal(r.Spec.Replicas) {
				notReady = append(notReady, "rs/"+r.Namespace+"/"+r.Name)
			}
		}
		sss, err := kube.AppsV1().StatefulSets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, s := range sss.Items {
			if s.Status.ReadyReplicas != ptrVal(s.Spec.Replicas) {
				notReady = append(notReady, "sts/"+s.Namespace+"/"+s.Name)
			}
		}
		dss, err := kube.AppsV1().DaemonSets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, d := range dss.Items {
			if d.Status.DesiredNumberScheduled != int32(f.nodes) || d.Status.NumberReady != d.Status.DesiredNumberScheduled {
				notReady = append(notReady, "ds/"+d.Namespace+"/"+d.Name)
			}
		}
		jobs, err := kube.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, j := range jobs.Items {
			if (j.Status.Ready == nil || *j.Status.Ready < 1) && j.Status.Succeeded < 1 {
				notReady = append(notReady, "job/"+j.Namespace+"/"+j.Name)
			}
		}
		pods, err := ag.podLister.List(everything())
		if err != nil {
			return false, nil
		}
		pending := 0
		for _, p := range pods {
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				continue
			}
			if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
				pending++
			}
		}
		if pending > 0 {
			notReady = append(notReady, fmt.Sprintf("%d pods not running", pending))
		}
		// The disruption controller has caught up: every PDB's status is for its current spec and
		// counts all its pods healthy (so disruptionsAllowed is what a client would expect).
		pdbs, err := kube.PolicyV1().PodDisruptionBudgets("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range pdbs.Items {
			if p.Status.ObservedGeneration < p.Generation || p.Status.CurrentHealthy != p.Status.ExpectedPods {
				notReady = append(notReady, "pdb/"+p.Namespace+"/"+p.Name)
			}
		}
		// The EndpointSlice controller has caught up: every selector Service has one ready endpoint
		// per ready pod it selects.
		notReady = append(notReady, servicesBehind(ctx, kube, pods)...)
		msg := fmt.Sprintf("%d pods, waiting for: %s", len(pods), summarize(notReady))
		if len(notReady) == 0 {
			return true, nil
		}
		if msg != last && (f.verbose || time.Since(startTime) > 20*time.Second) {
			logf("%s", msg)
			last = msg
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("workloads did not become ready: %w", err)
	}
	return nil
}

// servicesBehind lists the Services with a selector whose EndpointSlices do not (yet) hold one
// ready endpoint per ready, non-terminating pod the Service selects.
func servicesBehind(ctx context.Context, kube kubernetes.Interface, pods []*corev1.Pod) []string {
	svcs, err := kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"services: " + err.Error()}
	}
	slices, err := kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{"endpointslices: " + err.Error()}
	}
	readyEndpoints := map[string]int{}
	for _, sl := range slices.Items {
		svc := sl.Labels[discoveryv1.LabelServiceName]
		for _, e := range sl.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				readyEndpoints[sl.Namespace+"/"+svc]++
			}
		}
	}
	var out []string
	for _, svc := range svcs.Items {
		if len(svc.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		want := 0
		for _, p := range pods {
			if p.Namespace == svc.Namespace && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning &&
				isPodReady(p) && sel.Matches(labels.Set(p.Labels)) {
				want++
			}
		}
		if readyEndpoints[svc.Namespace+"/"+svc.Name] != want {
			out = append(out, "svc/"+svc.Namespace+"/"+svc.Name)
		}
	}
	return out
}

func summarize(s []string) string {
	if len(s) > 5 {
		return strings.Join(s[:5], ", ") + fmt.Sprintf(" (+%d more)", len(s)-5)
	}
	return strings.Join(s, ", ")
}

func ptrVal(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func optionsList() options.ListOptions { return options.ListOptions{} }

func everything() labels.Selector { return labels.Everything() }

var _ = appsv1.SchemeGroupVersion
var _ = errors.New
var _ rest.Config
