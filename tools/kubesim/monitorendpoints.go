package main

import (
	"context"
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// endpointBook follows the cluster's Services and EndpointSlices, so that a failed sample can say
// which endpoints its Service had at that moment (as the API reported them, the view kube-proxy
// programs from).
type endpointBook struct {
	services cache.Store
	slices   cache.Store
}

func followEndpoints(ctx context.Context, kubeconfig string) (*endpointBook, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	svc := f.Core().V1().Services().Informer()
	sl := f.Discovery().V1().EndpointSlices().Informer()
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svc.HasSynced, sl.HasSynced) {
		return nil, fmt.Errorf("Service and EndpointSlice informers did not sync")
	}
	return &endpointBook{services: svc.GetStore(), slices: sl.GetStore()}, nil
}

// at lists the endpoints of the Service whose ClusterIP is target's host, one "ADDRESS CONDITIONS"
// entry per address (conditions: ready, serving, terminating, or "not-ready"), sorted. A target that
// is no Service's ClusterIP gets nil.
func (b *endpointBook) at(target string) []string {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	var ns, name string
	for _, o := range b.services.List() {
		s, ok := o.(*corev1.Service)
		if !ok {
			continue
		}
		for _, ip := range s.Spec.ClusterIPs {
			if ip == host {
				ns, name = s.Namespace, s.Name
			}
		}
	}
	if name == "" {
		return nil
	}
	out := []string{}
	for _, o := range b.slices.List() {
		es, ok := o.(*discoveryv1.EndpointSlice)
		if !ok || es.Namespace != ns || es.Labels[discoveryv1.LabelServiceName] != name {
			continue
		}
		for _, e := range es.Endpoints {
			var conds []string
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				conds = append(conds, "ready")
			}
			if e.Conditions.Serving != nil && *e.Conditions.Serving {
				conds = append(conds, "serving")
			}
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating {
				conds = append(conds, "terminating")
			}
			if len(conds) == 0 {
				conds = append(conds, "not-ready")
			}
			for _, a := range e.Addresses {
				out = append(out, a+" "+strings.Join(conds, ","))
			}
		}
	}
	sort.Strings(out)
	return out
}
