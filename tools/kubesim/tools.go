//go:build tools

package main

import (
	_ "github.com/projectcalico/calico/calicoctl/calicoctl"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
