package main

// Calico's own aggregated API server (apiserver/cmd/apiserver/server of the Calico module), which
// serves projectcalico.org/v3 over the crd.projectcalico.org/v1 CRDs, as on most operator installs.
//
// It runs as a child process (`kubesim calico-apiserver ...`), not in kubesim's process: Calico's
// main force-disables the ConsistentListFromCache and WatchList feature gates in the process-wide
// DefaultMutableFeatureGate, which must not change the kube-apiserver's behaviour.
//
// The kube-apiserver's aggregator reaches it through APIService v3.projectcalico.org → Service
// calico-apiserver/calico-api of type ExternalName (localhost): Endpoints may not hold loopback
// addresses, and the aggregator's service resolver turns an ExternalName Service into
// https://<externalName>:<APIService port>, verifying the serving cert for calico-api.calico-apiserver.svc.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/projectcalico/calico/apiserver/cmd/apiserver/server"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/features"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	calicoAPINamespace = "calico-apiserver"
	calicoAPIService   = "calico-api"
	frontProxyName     = "front-proxy-client"
)

var calicoAPIServerFlag optionalBool

// optionalBool is a bool flag that remembers whether it was given (its default depends on --operator).
type optionalBool struct {
	set, val bool
}

func (b *optionalBool) String() string   { return strconv.FormatBool(b.val) }
func (b *optionalBool) IsBoolFlag() bool { return true }
func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.val = true, v
	return nil
}

func registerCalicoAPIServerFlags(fs *flag.FlagSet) {
	fs.Var(&calicoAPIServerFlag, "calico-apiserver", "serve projectcalico.org/v3 through Calico's aggregated API server (child process); default on with --operator, off otherwise")
}

// calicoAPIServerEnabled: on by default with --operator, as on a real operator install.
func calicoAPIServerEnabled(operator bool) bool {
	if calicoAPIServerFlag.set {
		return calicoAPIServerFlag.val
	}
	return operator
}

// frontProxyArgs issues the aggregator's proxy client cert and returns the kube-apiserver flags that
// make it forward the caller's identity to aggregated servers (and publish the request-header
// settings in ConfigMap kube-system/extension-apiserver-authentication for them).
func frontProxyArgs(p *pki) ([]string, error) {
	cert, key, err := issueFromCA(p, &x509.Certificate{
		Subject:     pkix.Name{CommonName: frontProxyName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(p.dir, "front-proxy-client.crt"), filepath.Join(p.dir, "front-proxy-client.key")
	if err := os.WriteFile(certPath, cert, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		return nil, err
	}
	return []string{
		"--requestheader-client-ca-file=" + p.caCert,
		"--requestheader-allowed-names=" + frontProxyName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + certPath,
		"--proxy-client-key-file=" + keyPath,
	}, nil
}

// issueFromCA signs tmpl (a fresh P-256 key, 10 years) with kubesim's CA; PEM cert and PKCS#8 key.
func issueFromCA(p *pki, tmpl *x509.Certificate) ([]byte, []byte, error) {
	k, kDER, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now().Add(-time.Hour)
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = serial(), now, now.Add(10*365*24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caX509, &k.PublicKey, p.caPriv)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kDER}), nil
}

// startCalicoAPIServer starts the child (restarted if it exits: Calico's server exits by design when
// extension-apiserver-authentication changes) and, once it answers, registers it with the
// aggregator. It returns at once; waitCalicoAPIServer says when v3 is served.
func startCalicoAPIServer(ctx context.Context, p *pki, kubeconfig string, restCfg *rest.Config, verbose bool) (<-chan error, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	svcHost := calicoAPIService + "." + calicoAPINamespace + ".svc"
	cert, key, err := issueFromCA(p, &x509.Certificate{
		Subject:     pkix.Name{CommonName: svcHost},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{svcHost, "localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(p.dir, "calico-apiserver.crt"), filepath.Join(p.dir, "calico-apiserver.key")
	if err := os.WriteFile(certPath, cert, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyPath, key, 0o600); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"calico-apiserver", "--kubeconfig", kubeconfig, "--port", strconv.Itoa(port), "--cert", certPath, "--key", keyPath}
	if verbose {
		args = append(args, "-v")
	}
	start := func() (*exec.Cmd, error) {
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 5 * time.Second
		cmd.Env = append(os.Environ(), "DATASTORE_TYPE=kubernetes", "KUBECONFIG="+kubeconfig)
		cmd.Stdout = os.Stderr
		cmd.Stderr = &lineFilter{out: os.Stderr, drop: calicoAPINoise}
		if verbose {
			cmd.Stderr = os.Stderr
		}
		return cmd, cmd.Start()
	}
	started := time.Now()
	cmd, err := start()
	if err != nil {
		return nil, fmt.Errorf("calico-apiserver: %w", err)
	}
	go func() {
		for {
			err := cmd.Wait()
			if ctx.Err() != nil {
				return
			}
			logf("calico-apiserver exited (%v), restarting it", err)
			time.Sleep(time.Second)
			if cmd, err = start(); err != nil {
				logf("calico-apiserver: %v", err)
				return
			}
		}
	}()
	registered := make(chan error, 1)
	go func() {
		// Registering only once the child answers keeps the aggregator from logging failed probes.
		direct := rest.CopyConfig(restCfg)
		direct.Host = "https://127.0.0.1:" + strconv.Itoa(port)
		child, err := kubernetes.NewForConfig(direct)
		if err != nil {
			registered <- err
			return
		}
		if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			status := 0
			child.CoreV1().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&status)
			return status == 200, nil
		}); err != nil {
			registered <- fmt.Errorf("calico-apiserver on 127.0.0.1:%d never became ready: %w", port, err)
			return
		}
		logf("calico-apiserver answering on 127.0.0.1:%d after %.1fs; registering APIService v3.projectcalico.org", port, time.Since(started).Seconds())
		registered <- registerAPIService(ctx, kubernetes.NewForConfigOrDie(restCfg), dynamic.NewForConfigOrDie(restCfg), port, p.caCertPEM)
	}()
	return registered, nil
}

// calicoAPINoise: error lines Calico's server logs for every aggregator availability probe the
// aggregator itself abandons (it sends several at once and cancels the rest on the first answer).
var calicoAPINoise = []string{"Timeout or abort while handling", "Post-timeout activity", "http2: stream closed", "http: Handler timeout"}

// lineFilter passes whole lines to out, except those containing one of drop.
type lineFilter struct {
	out     io.Writer
	drop    []string
	pending []byte
}

func (f *lineFilter) Write(b []byte) (int, error) {
	f.pending = append(f.pending, b...)
	for {
		i := bytes.IndexByte(f.pending, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := f.pending[:i+1]
		keep := true
		for _, d := range f.drop {
			keep = keep && !bytes.Contains(line, []byte(d))
		}
		if keep {
			if _, err := f.out.Write(line); err != nil {
				return len(b), err
			}
		}
		f.pending = f.pending[i+1:]
	}
}

func registerAPIService(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, port int, caPEM []byte) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: calicoAPINamespace,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: calicoAPIService, Namespace: calicoAPINamespace},
		Spec: corev1.ServiceSpec{
			Type:         corev1.ServiceTypeExternalName,
			ExternalName: "localhost",
			Ports:        []corev1.ServicePort{{Name: "apiserver", Port: int32(port), Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := kube.CoreV1().Services(calicoAPINamespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	apisvc := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "apiregistration.k8s.io/v1",
		"kind":       "APIService",
		"metadata":   map[string]interface{}{"name": "v3.projectcalico.org"},
		"spec": map[string]interface{}{
			"group":                "projectcalico.org",
			"version":              "v3",
			"groupPriorityMinimum": int64(1500),
			"versionPriority":      int64(200),
			"caBundle":             base64.StdEncoding.EncodeToString(caPEM),
			"service": map[string]interface{}{
				"namespace": calicoAPINamespace,
				"name":      calicoAPIService,
				"port":      int64(port),
			},
		},
	}}
	gvr := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	if _, err := dyn.Resource(gvr).Create(ctx, apisvc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("APIService v3.projectcalico.org: %w", err)
	}
	return nil
}

// waitCalicoAPIServer waits until the aggregator serves projectcalico.org/v3: the group is in
// discovery and a LIST of ippools.projectcalico.org succeeds through it.
func waitCalicoAPIServer(ctx context.Context, registered <-chan error, restCfg *rest.Config) error {
	select {
	case err := <-registered:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	kube, dyn := kubernetes.NewForConfigOrDie(restCfg), dynamic.NewForConfigOrDie(restCfg)
	gvr := schema.GroupVersionResource{Group: "projectcalico.org", Version: "v3", Resource: "ippools"}
	var last error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 120*time.Second, true, func(ctx context.Context) (bool, error) {
		groups, err := kube.Discovery().ServerGroups()
		if err != nil {
			last = err
			return false, nil
		}
		found := false
		for _, g := range groups.Groups {
			found = found || g.Name == "projectcalico.org"
		}
		if !found {
			last = fmt.Errorf("group projectcalico.org not in discovery yet")
			return false, nil
		}
		_, err = dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		last = err
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("projectcalico.org/v3 not served through the aggregator: %v (last: %v)", err, last)
	}
	return nil
}

// runCalicoAPIServer is the child: Calico's API server command until SIGTERM or until the parent is gone.
func runCalicoAPIServer(args []string) int {
	fs := flag.NewFlagSet("calico-apiserver", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for the kube-apiserver (datastore, delegated authn/authz)")
	port := fs.Int("port", 0, "secure port on 127.0.0.1")
	cert := fs.String("cert", "", "serving cert")
	key := fs.String("key", "", "serving key")
	verbose := fs.Bool("v", false, "verbose")
	_ = fs.Parse(args)
	setupLogging(*verbose)
	_ = os.Setenv("DATASTORE_TYPE", "kubernetes")
	_ = os.Setenv("KUBECONFIG", *kubeconfig)
	if os.Getenv("LOG_LEVEL") == "" && !*verbose {
		_ = os.Setenv("LOG_LEVEL", "error")
	}
	// As Calico's main does: its resource store supports neither consistent lists from the watch
	// cache nor watch-list streams.
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(map[string]bool{
		string(features.ConsistentListFromCache): false,
		string(features.WatchList):               false,
	}); err != nil {
		fmt.Fprintf(os.Stderr, "calico-apiserver: feature gates: %v\n", err)
		return 1
	}
	cmd, _, err := server.NewCommandStartCalicoServer(os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "calico-apiserver: %v\n", err)
		return 1
	}
	cmd.SetArgs([]string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(*port),
		"--tls-cert-file=" + *cert,
		"--tls-private-key-file=" + *key,
		"--kubeconfig=" + *kubeconfig,
		"--authentication-kubeconfig=" + *kubeconfig,
		"--authorization-kubeconfig=" + *kubeconfig,
	})
	ppid := os.Getppid()
	go func() {
		for {
			time.Sleep(time.Second)
			if os.Getppid() != ppid {
				_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
				return
			}
		}
	}()
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "calico-apiserver: %v\n", err)
		return 1
	}
	return 0
}
