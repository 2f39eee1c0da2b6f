package main

// The real kube-proxy (k8s.io/kubernetes/cmd/kube-proxy/app, nftables mode), one per node
// namespace. Each runs as a child process started by `ip netns exec NODE-NS kubesim kube-proxy`,
// so all of it (its nft tables, sysctls, conntrack cleanup and health/metrics listeners) lives in
// the node's namespace. Its API connection must still reach kube-apiserver on the host's
// loopback: the child listens on 127.0.0.1:<apiserver port> inside the node's namespace and
// forwards each connection through a socket it creates in the host's namespace (handed down as
// file descriptor 3), so the kubeconfig stays the cluster's own.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"k8s.io/kubernetes/cmd/kube-proxy/app"

	"example.invalid/kubesim/dataplane"
)

// startKubeProxies starts one kube-proxy child per node namespace; a child that exits is restarted
// after a second, as the kubelet restarts kube-proxy's pod.
func startKubeProxies(ctx context.Context, dp *dataplane.Plane, dir, kubeconfig string, apiPort int, verbose bool) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("--dataplane runs kube-proxy in nftables mode, which needs the nft command (Debian/Ubuntu: apt-get install -y nftables; scripts/build-kubesim.sh installs it): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	host, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); host.Close() }()
	for _, n := range dp.Nodes() {
		args := []string{"netns", "exec", n.Netns, self, "kube-proxy", "--node", n.Name, "--kubeconfig", kubeconfig, "--api-port", strconv.Itoa(apiPort)}
		if verbose {
			args = append(args, "-v")
		}
		start := func() (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, "ip", args...)
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
			cmd.WaitDelay = 5 * time.Second
			cmd.ExtraFiles = []*os.File{host}
			// kube-proxy logs at info level whatever -v says: its log goes to a file of its own.
			log, err := os.OpenFile(filepath.Join(dir, "kube-proxy-"+n.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, err
			}
			defer log.Close()
			cmd.Stdout, cmd.Stderr = log, log
			if verbose {
				cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			}
			return cmd, cmd.Start()
		}
		cmd, err := start()
		if err != nil {
			return fmt.Errorf("kube-proxy for %s: %w", n.Name, err)
		}
		go restartOnExit(ctx, "kube-proxy for "+n.Name, cmd, start)
	}
	logf("kube-proxy (nftables mode) running in %d node namespaces (logs: %s)", len(dp.Nodes()), filepath.Join(dir, "kube-proxy-NODE.log"))
	return nil
}

// runKubeProxy is the child, already inside the node's namespace.
func runKubeProxy(args []string) int {
	fs := flag.NewFlagSet("kube-proxy", flag.ExitOnError)
	node := fs.String("node", "", "node name")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	apiPort := fs.Int("api-port", 0, "kube-apiserver's port on the host's loopback")
	verbose := fs.Bool("v", false, "verbose")
	_ = fs.Parse(args)
	setupLogging(*verbose)
	hostNS := netns.NsHandle(3)
	addr := fmt.Sprintf("127.0.0.1:%d", *apiPort)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "kube-proxy %s: API forwarder: %v\n", *node, err)
		return 1
	}
	go forwardToHost(ln, hostNS, addr)
	ppid := os.Getppid()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		for {
			select {
			case <-sig:
				os.Exit(0)
			case <-time.After(time.Second):
				if os.Getppid() != ppid {
					os.Exit(0)
				}
			}
		}
	}()
	cmd := app.NewProxyCommand()
	v := "0"
	if *verbose {
		v = "2"
	}
	// No conntrack tuning: those sysctls are global or read-only outside the host's namespace.
	cmd.SetArgs([]string{"--proxy-mode=nftables", "--hostname-override=" + *node, "--kubeconfig=" + *kubeconfig,
		"--conntrack-max-per-core=0", "--conntrack-min=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--conntrack-tcp-be-liberal=false", "--conntrack-udp-timeout=0", "--conntrack-udp-timeout-stream=0",
		"--iptables-min-sync-period=0s", "--v=" + v})
	if err := cmd.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "kube-proxy %s: %v\n", *node, err)
		return 1
	}
	return 0
}

// forwardToHost relays every connection accepted in this namespace to addr in the host's namespace.
func forwardToHost(ln net.Listener, hostNS netns.NsHandle, addr string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := dataplane.DialIn(context.Background(), hostNS, addr, 5*time.Second)
			if err != nil {
				return
			}
			defer up.Close()
			go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(c, up)
		}()
	}
}
