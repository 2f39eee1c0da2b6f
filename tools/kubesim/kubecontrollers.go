package main

// Calico's own kube-controllers (the node controller, whose IPAM sub-controller garbage-collects
// leaked addresses and empty blocks) run in-process, configured like the real binary: from
// KubeControllersConfiguration "default" merged with the environment by the module's
// RunConfigController. Only the node controller is started; the other controllers of the real
// binary (policy, namespace, service account, workload endpoint) have nothing to do here.

import (
	"context"
	"flag"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	kcconfig "github.com/projectcalico/calico/kube-controllers/pkg/config"
	kcnode "github.com/projectcalico/calico/kube-controllers/pkg/controllers/node"
	kcutils "github.com/projectcalico/calico/kube-controllers/pkg/controllers/utils"
	kcconverter "github.com/projectcalico/calico/kube-controllers/pkg/converter"
	"github.com/projectcalico/calico/libcalico-go/lib/clientv3"
	"github.com/projectcalico/calico/libcalico-go/lib/options"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// leakFlags are the kubesim flags for IPAM garbage collection and leaked addresses.
type leakFlags struct {
	kubeControllers bool
	leakGracePeriod time.Duration
	leakOnDelete    int
	leakCIDR        string
}

var leakOpts leakFlags

// leakBudget counts the pod deletions still to leak their address (see --leak-on-delete).
var leakBudget atomic.Int64

// leakNet limits the leaks to addresses of one CIDR (e.g. the pool being migrated from).
var leakNet *net.IPNet

func registerLeakFlags(fs *flag.FlagSet) {
	fs.BoolVar(&leakOpts.kubeControllers, "calico-kube-controllers", false, "run Calico's kube-controllers node controller (IPAM garbage collection) in-process")
	fs.DurationVar(&leakOpts.leakGracePeriod, "leak-grace-period", 0, "set KubeControllersConfiguration default spec.controllers.node.leakGracePeriod (0: keep 15m)")
	fs.IntVar(&leakOpts.leakOnDelete, "leak-on-delete", 0, "the first N pod deletions do not release the pod's IPAM address (as when CNI DEL fails)")
	fs.StringVar(&leakOpts.leakCIDR, "leak-cidr", "", "only pods whose address lies in this CIDR count for --leak-on-delete (default: any)")
}

// startLeakHandling applies the leak flags once Calico is initialised: the grace period goes into
// KubeControllersConfiguration, the leak budget is armed, and kube-controllers started if asked.
func startLeakHandling(ctx context.Context, kubeconfig string, cal clientv3.Interface) error {
	if leakOpts.leakCIDR != "" {
		_, n, err := net.ParseCIDR(leakOpts.leakCIDR)
		if err != nil {
			return fmt.Errorf("--leak-cidr: %w", err)
		}
		leakNet = n
	}
	leakBudget.Store(int64(leakOpts.leakOnDelete))
	if leakOpts.leakGracePeriod > 0 {
		kcc, err := cal.KubeControllersConfiguration().Get(ctx, "default", options.GetOptions{})
		if err != nil {
			return fmt.Errorf("read KubeControllersConfiguration default: %w", err)
		}
		if kcc.Spec.Controllers.Node != nil {
			kcc.Spec.Controllers.Node.LeakGracePeriod = &metav1.Duration{Duration: leakOpts.leakGracePeriod}
		}
		if _, err := cal.KubeControllersConfiguration().Update(ctx, kcc, options.SetOptions{}); err != nil {
			return fmt.Errorf("set leakGracePeriod: %w", err)
		}
	}
	if !leakOpts.kubeControllers {
		return nil
	}
	return startKubeControllers(ctx, kubeconfig, cal)
}

// leakThisDelete reports whether this pod deletion should leave its address allocated.
func leakThisDelete() bool {
	for {
		n := leakBudget.Load()
		if n <= 0 {
			return false
		}
		if leakBudget.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func startKubeControllers(ctx context.Context, kubeconfig string, cal clientv3.Interface) error {
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	restCfg.QPS, restCfg.Burst = 100, 200
	restCfg.UserAgent = "calico-kube-controllers"
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	cfg := kcconfig.Config{LogLevel: "info", DatastoreType: "kubernetes", Kubeconfig: kubeconfig,
		WorkloadEndpointWorkers: 1, ProfileWorkers: 1, PolicyWorkers: 1, NodeWorkers: 1}
	runCfgs := kcconfig.NewRunConfigController(ctx, cfg, cal.KubeControllersConfiguration())
	var first kcconfig.RunConfig
	select {
	case first = <-runCfgs.ConfigChan():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return fmt.Errorf("kube-controllers: no KubeControllersConfiguration snapshot after 30s")
	}
	go func() {
		rc := first
		for {
			stop := make(chan struct{})
			runNodeController(ctx, kube, cal, rc, stop)
			// Like the real binary, a configuration change restarts the controllers.
			select {
			case <-ctx.Done():
				close(stop)
				return
			case rc = <-runCfgs.ConfigChan():
				close(stop)
				logf("kube-controllers: configuration changed, restarting")
			}
		}
	}()
	return nil
}

func runNodeController(ctx context.Context, kube *kubernetes.Clientset, cal clientv3.Interface, rc kcconfig.RunConfig, stop chan struct{}) {
	if rc.Controllers.Node == nil {
		logf("kube-controllers: node controller disabled in KubeControllersConfiguration, IPAM garbage collection off")
		return
	}
	factory := informers.NewSharedInformerFactory(kube, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	nodeInformer := factory.Core().V1().Nodes().Informer()
	feed := kcutils.NewDataFeed(cal, "kubernetes")
	ctrl := kcnode.NewNodeController(ctx, kube, cal, *rc.Controllers.Node, nodeInformer, podInformer, feed)
	if err := podInformer.SetTransform(kcconverter.PodTransformer(false)); err != nil {
		logf("kube-controllers: pod transform: %v", err)
	}
	go podInformer.Run(stop)
	go nodeInformer.Run(stop)
	go ctrl.Run(stop)
	feed.Start()
	grace := "unset (garbage collection of addresses on live nodes off)"
	if g := rc.Controllers.Node.LeakGracePeriod; g != nil {
		grace = g.Duration.String()
	}
	logf("kube-controllers: node controller running (leakGracePeriod %s)", grace)
}

// maybeLeak marks a deleted pod's address as released without giving it back to IPAM while the
// leak budget lasts, so the allocation outlives its pod.
func maybeLeak(pod *corev1.Pod, st *podState) {
	if st == nil || st.released || st.handle == "" {
		return
	}
	if ip := net.ParseIP(st.ip); leakNet != nil && (ip == nil || !leakNet.Contains(ip)) {
		return
	}
	if !leakThisDelete() {
		return
	}
	st.released = true
	logf("leaking %s of deleted pod %s/%s (handle %s): not released, as when CNI DEL fails", st.ip, pod.Namespace, pod.Name, st.handle)
}
