// Package dataplane gives kubesim's fake nodes and pods real network namespaces: nodes on an
// underlay bridge, pods wired the way Calico's CNI plugin wires them, routes to other nodes' IPAM
// blocks, and real sockets serving in the pods. Nothing is linked to the host's own interfaces:
// every device lives in a namespace this package created, and every namespace is named from
// kubesim's data directory so that a later start (or `kubesim sweep`) can remove leftovers.
package dataplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
)

const netnsDir = "/run/netns"

// Prefix is the name prefix of every namespace made for the cluster in dir: "ks" and a hash of the
// directory's absolute path, so two clusters on one machine never touch each other's namespaces.
func Prefix(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	h := sha256.Sum256([]byte(abs))
	return "ks" + hex.EncodeToString(h[:])[:10] + "-"
}

// Sweep removes every namespace whose name starts with prefix and returns how many it removed.
// Deleting a namespace's name drops its devices, routes and (once no socket holds it) the
// namespace itself.
func Sweep(prefix string) (int, error) {
	entries, err := os.ReadDir(netnsDir)
	if os.IsNotExist(err) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	n := 0
	var firstErr error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if err := netns.DeleteNamed(e.Name()); err != nil && !os.IsNotExist(err) {
			// A name whose bind mount is already gone is a plain file: remove it.
			if rmErr := os.Remove(filepath.Join(netnsDir, e.Name())); rmErr != nil && firstErr == nil {
				firstErr = fmt.Errorf("remove namespace %s: %w", e.Name(), err)
			}
		}
		n++
	}
	return n, firstErr
}

// List returns the names of the namespaces that start with prefix.
func List(prefix string) []string {
	entries, _ := os.ReadDir(netnsDir)
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// createNamed makes a named namespace without leaving the calling thread in it: NewNamed unshares
// the current thread, so it runs on a locked thread that is switched back before it is released.
func createNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		// The thread is stuck in another namespace: keep it locked so Go retires it.
		return netns.None(), fmt.Errorf("restore namespace: %w", serr)
	}
	runtime.UnlockOSThread()
	return h, err
}

// Do runs f on a locked OS thread that has entered ns. Sockets f creates belong to ns and keep
// working after the thread has gone back to the original namespace.
func Do(ns netns.NsHandle, f func() error) error {
	errCh := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errCh <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errCh <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: Go terminates it when this goroutine ends.
			errCh <- fmt.Errorf("restore namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errCh <- ferr
	}()
	return <-errCh
}

// writeSysctl writes a net.* sysctl inside ns (/proc/sys/net is per namespace of the opener).
func writeSysctl(ns netns.NsHandle, path, value string) error {
	return Do(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644)
	})
}
