package dataplane

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Removing a pod the plane does not know (a second CNI DEL, or after a restart) once closed file
// descriptor 0, and with every later removal whatever the process had opened as fd 0 since: now
// and then a pod's freshly accepted connection, which its client saw as EOF.
func TestRemovingAnUnknownPodClosesNoDescriptorItDoesNotOwn(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	saved, err := unix.Dup(0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Dup3(saved, 0, 0); _ = unix.Close(saved) }()
	if err := unix.Dup3(int(r.Fd()), 0, 0); err != nil {
		t.Fatal(err)
	}
	p := &Plane{Prefix: "kstest-", nodes: map[string]*Node{}, order: []*Node{{Name: "n0"}, {Name: "n1"}}, pods: map[string]*Pod{}}
	p.RemovePod("no-such-pod")
	if _, err := unix.FcntlInt(0, unix.F_GETFD, 0); err != nil {
		t.Fatalf("fd 0 was closed by RemovePod of an unknown pod: %v", err)
	}
}
