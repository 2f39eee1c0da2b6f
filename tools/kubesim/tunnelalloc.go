package main

// calico-node's own tunnel-address allocator (node/pkg/allocateip of the Calico module) per node.
// allocateip.Run reads NODENAME and the datastore settings from the environment, so each node gets
// its own child process: kubesim re-executed as `kubesim tunnel-allocator --node NAME`.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/projectcalico/calico/libcalico-go/lib/options"
	"github.com/projectcalico/calico/node/pkg/allocateip"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var realTunnelAllocator bool

// realTunnelAllocatorMaxNodes: below this many nodes the real allocator is the default; above,
// one child process per node costs too much and the agent's emulation takes over.
const realTunnelAllocatorMaxNodes = 20

func registerTunnelFlags(fs *flag.FlagSet) {
	fs.BoolVar(&realTunnelAllocator, "real-tunnel-allocator", false, fmt.Sprintf("run calico-node's own tunnel-address allocator (one child process per node) instead of the agent's emulation (default: on below %d nodes unless --tunnel-delay is set; =false turns it off)", realTunnelAllocatorMaxNodes))
}

// resolveTunnelAllocator picks the default after parsing: the real allocator below
// realTunnelAllocatorMaxNodes nodes, unless --tunnel-delay asks for the emulation's delayed move
// (calico-node has no such delay). An explicit --real-tunnel-allocator[=bool] always wins.
func resolveTunnelAllocator(fs *flag.FlagSet, nodes int, tunnelDelay time.Duration) {
	set := false
	fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "real-tunnel-allocator" })
	if !set {
		realTunnelAllocator = nodes < realTunnelAllocatorMaxNodes && tunnelDelay == 0
	}
}

// startTunnelAllocators starts one allocator child per node; they stop with ctx, or by themselves
// when kubesim dies.
func startTunnelAllocators(ctx context.Context, kubeconfig string, nodes []string, verbose bool) error {
	if !realTunnelAllocator {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		args := []string{"tunnel-allocator", "--node", n}
		if verbose {
			args = append(args, "-v")
		}
		start := func() (*exec.Cmd, error) {
			cmd := exec.CommandContext(ctx, self, args...)
			cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
			cmd.WaitDelay = 5 * time.Second
			cmd.Env = append(os.Environ(), "NODENAME="+n, "DATASTORE_TYPE=kubernetes", "KUBECONFIG="+kubeconfig)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			return cmd, cmd.Start()
		}
		cmd, err := start()
		if err != nil {
			return fmt.Errorf("tunnel allocator for %s: %w", n, err)
		}
		// calico-node exits (log.Fatal) when a reconciliation fails and relies on being restarted,
		// as kubelet restarts its container: so do we.
		go restartOnExit(ctx, "tunnel allocator for "+n, cmd, start)
	}
	logf("calico-node tunnel-address allocator running for %d nodes", len(nodes))
	return nil
}

// restartOnExit waits for a child and starts it again a second after it exits, until ctx ends, as
// the kubelet restarts a container: "<what> exited (<err>), restarting it".
func restartOnExit(ctx context.Context, what string, cmd *exec.Cmd, start func() (*exec.Cmd, error)) {
	for {
		err := cmd.Wait()
		if ctx.Err() != nil {
			return
		}
		logf("%s exited (%v), restarting it", what, err)
		time.Sleep(time.Second)
		if cmd, err = start(); err != nil {
			logf("%s: %v", what, err)
			return
		}
	}
}

// runTunnelAllocator is the child: allocateip.Run until SIGTERM or until the parent is gone.
func runTunnelAllocator(args []string) int {
	fs := flag.NewFlagSet("tunnel-allocator", flag.ExitOnError)
	node := fs.String("node", "", "node name (also NODENAME)")
	verbose := fs.Bool("v", false, "verbose")
	_ = fs.Parse(args)
	if *node != "" {
		_ = os.Setenv("NODENAME", *node)
	}
	setupLogging(*verbose)
	done := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	ppid := os.Getppid()
	go func() {
		for {
			select {
			case <-sig:
				close(done)
				return
			case <-time.After(time.Second):
				if os.Getppid() != ppid {
					close(done)
					return
				}
			}
		}
	}()
	allocateip.Run(done)
	return 0
}

// waitTunnelAddresses waits until calico-node's allocator has given every node the tunnel
// addresses its pools call for: tests and users read them as soon as the ready file exists, and
// the allocator children start (and may restart) independently of the rest of kubesim.
func (a *agent) waitTunnelAddresses(ctx context.Context, timeout time.Duration) error {
	if !realTunnelAllocator {
		return nil
	}
	start := time.Now()
	var missing []string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pools, err := a.cal.IPPools().List(ctx, options.ListOptions{})
		if err != nil {
			return false, nil
		}
		nodes, err := a.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		missing = missing[:0]
		for _, n := range nodes.Items {
			for _, tk := range tunnelKinds {
				cands := tunnelPools(pools.Items, tk, n.Labels)
				if len(cands) == 0 {
					continue
				}
				if cur := n.Annotations[tk.annotation]; !tunnelAddressIn(cur, cands) {
					missing = append(missing, fmt.Sprintf("%s: %s=%q, want an address in %v", n.Name, tk.annotation, cur, cands))
				}
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("calico-node's tunnel allocator did not give every node its tunnel address within %s (see the allocator lines above): %s", timeout, strings.Join(missing, "; "))
	}
	logf("every node has its tunnel addresses from calico-node's allocator (waited %.1fs)", time.Since(start).Seconds())
	return nil
}
