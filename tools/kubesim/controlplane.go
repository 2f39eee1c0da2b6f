package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/util/wait"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/compatibility"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
	apiapp "k8s.io/kubernetes/cmd/kube-apiserver/app"
	apioptions "k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	kcmapp "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	schedapp "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

func init() {
	logsapi.ReapplyHandling = logsapi.ReapplyHandlingIgnoreUnchanged
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(ctx context.Context, dir string, verbose bool) (*embed.Etcd, string, error) {
	cp, err := freePort()
	if err != nil {
		return nil, "", err
	}
	pp, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "kubesim"
	cfg.Dir = filepath.Join(dir, "etcd")
	cu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(cp)}
	pu := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(pp)}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.Logger = "zap"
	if !verbose {
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	}
	cfg.QuotaBackendBytes = 4 << 30
	cfg.UnsafeNoFsync = true // test cluster: speed over durability
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd did not become ready")
	case <-ctx.Done():
		e.Close()
		return nil, "", ctx.Err()
	}
	return e, cu.String(), nil
}

type cpConfig struct {
	dir         string
	pki         *pki
	etcdURL     string
	port        int
	serviceCIDR string
	clusterCIDR string
	advertise   string
	verbose     bool
	// admissionConfig: --admission-control-config-file (Pod Security defaults), if any.
	admissionConfig string
	// extraArgs: more kube-apiserver flags (the aggregator's front-proxy settings).
	extraArgs []string
}

func componentLogFlags(verbose bool) []string {
	if verbose {
		return []string{"--v=2"}
	}
	return nil
}

// startAPIServer runs kube-apiserver in-process (the body of NewAPIServerCommand without cobra
// and without its process-global signal handler).
func startAPIServer(ctx context.Context, c *cpConfig, errCh chan<- error) error {
	s := apioptions.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	nfs := s.Flags()
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=" + c.advertise,
		"--secure-port=" + strconv.Itoa(c.port),
		"--tls-cert-file=" + c.pki.servingCert,
		"--tls-private-key-file=" + c.pki.servingKey,
		"--client-ca-file=" + c.pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.saKey,
		"--service-account-signing-key-file=" + c.pki.saKey,
		"--service-cluster-ip-range=" + c.serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--cert-dir=" + filepath.Join(c.dir, "pki", "apiserver-certs"),
		"--max-requests-inflight=2000",
		"--max-mutating-requests-inflight=1000",
		"--profiling=false",
		"--http2-max-streams-per-connection=5000",
	}
	if c.admissionConfig != "" {
		args = append(args, "--admission-control-config-file="+c.admissionConfig)
	}
	args = append(args, c.extraArgs...)
	args = append(args, strings.Fields(os.Getenv("KUBESIM_APISERVER_ARGS"))...)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	completed, err := s.Complete(ctx)
	if err != nil {
		return err
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("apiserver options: %v", errs)
	}
	go func() {
		err := apiapp.Run(ctx, completed)
		if err != nil {
			errCh <- fmt.Errorf("kube-apiserver: %w", err)
		} else {
			errCh <- nil
		}
	}()
	return nil
}

func waitAPIServer(ctx context.Context, cs kubernetes.Interface, errCh <-chan error) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-errCh:
			return false, fmt.Errorf("apiserver exited: %v", err)
		default:
		}
		res := cs.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx)
		status := 0
		res.StatusCode(&status)
		return status == 200, nil
	})
}

func privateRegistry() (compatibility.ComponentGlobalsRegistry, error) {
	fg := utilfeature.DefaultMutableFeatureGate.DeepCopy()
	ev := utilcompatibility.DefaultKubeEffectiveVersionForTest()
	ev.SetEmulationVersion(fg.EmulationVersion())
	r := compatibility.NewComponentGlobalsRegistry()
	if err := r.Register(compatibility.DefaultKubeComponent, ev, fg); err != nil {
		return nil, err
	}
	return r, nil
}

var kcmControllers = []string{
	"serviceaccount-controller", "serviceaccount-token-controller", "namespace-controller",
	"garbage-collector-controller", "deployment-controller", "replicaset-controller",
	"statefulset-controller", "daemonset-controller", "job-controller", "disruption-controller",
	"endpointslice-controller", "pod-garbage-collector-controller", "root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller", "service-cidr-controller", "ttl-after-finished-controller",
}

func startKCM(ctx context.Context, c *cpConfig, kubeconfig string, errCh chan<- error) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return err
	}
	reg, err := privateRegistry()
	if err != nil {
		return err
	}
	s.ComponentGlobalsRegistry = reg
	all, disabled, aliases := kcmapp.KnownControllers(), kcmapp.ControllersDisabledByDefault(), kcmapp.ControllerAliases()
	nfs := s.Flags(all, disabled, aliases)
	fs := pflag.NewFlagSet("kcm", pflag.ContinueOnError)
	for _, f := range nfs.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(kcmControllers, ","),
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--cluster-cidr=" + c.clusterCIDR,
		"--allocate-node-cidrs=false",
		"--service-cluster-ip-range=" + c.serviceCIDR,
		"--service-account-private-key-file=" + c.pki.saKey,
		"--root-ca-file=" + c.pki.caCert,
		"--use-service-account-credentials=false",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=20",
		"--concurrent-gc-syncs=20",
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
		"--profiling=false",
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	s.ParsedFlags = &nfs
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cfg, err := s.Config(all, disabled, aliases)
	if err != nil {
		return err
	}
	go func() {
		if err := kcmapp.Run(ctx, cfg.Complete()); err != nil {
			errCh <- fmt.Errorf("kube-controller-manager: %w", err)
		}
	}()
	return nil
}

func startScheduler(ctx context.Context, kubeconfig string, errCh chan<- error) error {
	reg, err := privateRegistry()
	if err != nil {
		return err
	}
	opts := schedoptions.NewOptionsWithComponentGlobalsRegistry(reg)
	fs := pflag.NewFlagSet("sched", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=0",
		"--kube-api-qps=500",
		"--kube-api-burst=1000",
		"--profiling=false",
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	cc, sched, err := schedapp.Setup(ctx, opts)
	if err != nil {
		return err
	}
	go func() {
		if err := schedapp.Run(ctx, cc, sched); err != nil {
			errCh <- fmt.Errorf("kube-scheduler: %w", err)
		}
	}()
	return nil
}

var _ = logs.NewOptions
var _ = klog.Info
