package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	apiv3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	calicocrds "github.com/projectcalico/calico/libcalico-go/config"
	"github.com/projectcalico/calico/libcalico-go/lib/apiconfig"
	"github.com/projectcalico/calico/libcalico-go/lib/clientv3"
	cerrors "github.com/projectcalico/calico/libcalico-go/lib/errors"
	"github.com/projectcalico/calico/libcalico-go/lib/ipam"
	"github.com/projectcalico/calico/libcalico-go/lib/options"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

func newCalicoClient(kubeconfig string) (clientv3.Interface, error) {
	cfg := apiconfig.NewCalicoAPIConfig()
	cfg.Spec.DatastoreType = apiconfig.Kubernetes
	cfg.Spec.Kubeconfig = kubeconfig
	cfg.Spec.K8sClientQPS = 1000
	return clientv3.New(*cfg)
}

func installCRDs(ctx context.Context, ax apiextclient.Interface, crds []*apiextv1.CustomResourceDefinition) error {
	for _, crd := range crds {
		_, err := ax.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			c, err := ax.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			for _, cond := range c.Status.Conditions {
				if cond.Type == apiextv1.Established && cond.Status == apiextv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not established: %w", crd.Name, err)
		}
	}
	return nil
}

func calicoCRDs() ([]*apiextv1.CustomResourceDefinition, error) {
	return calicocrds.AllCRDs()
}

type poolDef struct {
	name      string
	cidr      string
	ipipMode  apiv3.IPIPMode
	vxlanMode apiv3.VXLANMode // "" = Never
	nat       bool
	// nodeSelector: "" = all()
	nodeSelector string
	// blockSize: 0 = 26 (IPv4) or 122 (IPv6), Calico's defaults
	blockSize int
}

func setupCalico(ctx context.Context, cal clientv3.Interface, clusterType string, pools []poolDef, operator bool) error {
	if err := cal.EnsureInitialized(ctx, "", clusterType); err != nil {
		return fmt.Errorf("EnsureInitialized: %w", err)
	}
	if err := cal.IPAM().SetIPAMConfig(ctx, ipam.IPAMConfig{AutoAllocateBlocks: true, StrictAffinity: false}); err != nil {
		return fmt.Errorf("SetIPAMConfig: %w", err)
	}
	kcc := apiv3.NewKubeControllersConfiguration()
	kcc.Name = "default"
	kcc.Spec = apiv3.KubeControllersConfigurationSpec{
		LogSeverityScreen:      "Info",
		HealthChecks:           apiv3.Enabled,
		EtcdV3CompactionPeriod: &metav1.Duration{Duration: 10 * time.Minute},
		Controllers: apiv3.ControllersConfig{
			Node: &apiv3.NodeControllerConfig{
				ReconcilerPeriod: &metav1.Duration{Duration: 5 * time.Minute},
				SyncLabels:       apiv3.Enabled,
				LeakGracePeriod:  &metav1.Duration{Duration: 15 * time.Minute},
			},
			Policy:           &apiv3.PolicyControllerConfig{ReconcilerPeriod: &metav1.Duration{Duration: 5 * time.Minute}},
			WorkloadEndpoint: &apiv3.WorkloadEndpointControllerConfig{ReconcilerPeriod: &metav1.Duration{Duration: 5 * time.Minute}},
			ServiceAccount:   &apiv3.ServiceAccountControllerConfig{ReconcilerPeriod: &metav1.Duration{Duration: 5 * time.Minute}},
			Namespace:        &apiv3.NamespaceControllerConfig{ReconcilerPeriod: &metav1.Duration{Duration: 5 * time.Minute}},
		},
	}
	if _, err := cal.KubeControllersConfiguration().Create(ctx, kcc, options.SetOptions{}); err != nil {
		if _, ok := err.(cerrors.ErrorResourceAlreadyExists); !ok {
			return fmt.Errorf("create KubeControllersConfiguration: %w", err)
		}
	}
	if operator {
		return nil // pools come from the Installation reconciler
	}
	for _, p := range pools {
		pool := apiv3.NewIPPool()
		pool.Name = p.name
		pool.Spec = apiv3.IPPoolSpec{
			CIDR: p.cidr, BlockSize: p.blockSize, IPIPMode: p.ipipMode, VXLANMode: p.vxlanMode,
			NATOutgoing: p.nat, NodeSelector: p.nodeSelector,
		}
		if pool.Spec.IPIPMode == "" {
			pool.Spec.IPIPMode = apiv3.IPIPModeNever
		}
		if pool.Spec.VXLANMode == "" {
			pool.Spec.VXLANMode = apiv3.VXLANModeNever
		}
		if pool.Spec.NodeSelector == "" {
			pool.Spec.NodeSelector = "all()"
		}
		if pool.Spec.BlockSize == 0 {
			pool.Spec.BlockSize = 26
			if strings.Contains(p.cidr, ":") {
				pool.Spec.BlockSize = 122
			}
		}
		if _, err := cal.IPPools().Create(ctx, pool, options.SetOptions{}); err != nil {
			if _, ok := err.(cerrors.ErrorResourceAlreadyExists); !ok {
				return fmt.Errorf("create IPPool %s: %w", p.name, err)
			}
		}
	}
	return nil
}

// ---- operator emulation ----

var installationGVR = schema.GroupVersionResource{Group: "operator.tigera.io", Version: "v1", Resource: "installations"}
var ippoolGVR = schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "ippools"}

const managedByLabel = "app.kubernetes.io/managed-by"
const managedByValue = "tigera-operator"

func installationCRD() *apiextv1.CustomResourceDefinition {
	t := true
	return &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "installations.operator.tigera.io"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "operator.tigera.io",
			Names: apiextv1.CustomResourceDefinitionNames{Plural: "installations", Singular: "installation", Kind: "Installation", ListKind: "InstallationList"},
			Scope: apiextv1.ClusterScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Subresources: &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
				Schema: &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: &t,
				}},
			}},
		},
	}
}

func createInstallation(ctx context.Context, dyn dynamic.Interface, poolCIDR string) error {
	obj := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "operator.tigera.io/v1",
		"kind":       "Installation",
		"metadata":   map[string]interface{}{"name": "default"},
		"spec": map[string]interface{}{
			"cni": map[string]interface{}{"type": "Calico", "ipam": map[string]interface{}{"type": "Calico"}},
			"calicoNetwork": map[string]interface{}{
				"ipPools": []interface{}{map[string]interface{}{
					"name": "default-ipv4-ippool", "cidr": poolCIDR, "encapsulation": "IPIP",
					"natOutgoing": "Enabled", "nodeSelector": "all()", "blockSize": int64(26),
				}},
			},
		},
	}}
	_, err := dyn.Resource(installationGVR).Create(ctx, obj, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// desiredPool converts an Installation ipPools entry the way tigera/operator's
// pool_controller ToProjectCalico() does.
func desiredPool(m map[string]interface{}) (*apiv3.IPPool, error) {
	str := func(k string) string { s, _ := m[k].(string); return s }
	p := apiv3.NewIPPool()
	p.Name = str("name")
	p.Labels = map[string]string{managedByLabel: managedByValue}
	p.Spec.CIDR = str("cidr")
	if p.Name == "" || p.Spec.CIDR == "" {
		return nil, fmt.Errorf("pool needs name and cidr: %v", m)
	}
	p.Spec.IPIPMode, p.Spec.VXLANMode = apiv3.IPIPModeNever, apiv3.VXLANModeNever
	switch str("encapsulation") {
	case "", "IPIP":
		p.Spec.IPIPMode = apiv3.IPIPModeAlways
	case "IPIPCrossSubnet":
		p.Spec.IPIPMode = apiv3.IPIPModeCrossSubnet
	case "VXLAN":
		p.Spec.VXLANMode = apiv3.VXLANModeAlways
	case "VXLANCrossSubnet":
		p.Spec.VXLANMode = apiv3.VXLANModeCrossSubnet
	case "None":
	default:
		return nil, fmt.Errorf("unknown encapsulation %q", str("encapsulation"))
	}
	p.Spec.NATOutgoing = str("natOutgoing") != "Disabled"
	p.Spec.NodeSelector = str("nodeSelector")
	if p.Spec.NodeSelector == "" {
		p.Spec.NodeSelector = "all()"
	}
	p.Spec.BlockSize = 26
	switch b := m["blockSize"].(type) {
	case int64:
		p.Spec.BlockSize = int(b)
	case float64:
		p.Spec.BlockSize = int(b)
	}
	if d, ok := m["disableBGPExport"].(bool); ok {
		p.Spec.DisableBGPExport = d
	}
	if d, ok := m["disableNewAllocations"].(bool); ok {
		p.Spec.Disabled = d
	}
	p.Spec.AllowedUses = []apiv3.IPPoolAllowedUse{apiv3.IPPoolAllowedUseWorkload, apiv3.IPPoolAllowedUseTunnel}
	if au, ok := m["allowedUses"].([]interface{}); ok {
		p.Spec.AllowedUses = nil
		for _, u := range au {
			if s, ok := u.(string); ok {
				p.Spec.AllowedUses = append(p.Spec.AllowedUses, apiv3.IPPoolAllowedUse(s))
			}
		}
	}
	am := apiv3.Automatic
	if s := str("assignmentMode"); s != "" {
		am = apiv3.AssignmentMode(s)
	}
	p.Spec.AssignmentMode = &am
	return p, nil
}

func poolSpecEqual(a, b apiv3.IPPoolSpec) bool {
	am := func(x *apiv3.AssignmentMode) apiv3.AssignmentMode {
		if x == nil {
			return apiv3.Automatic
		}
		return *x
	}
	mode := func(s string, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	return a.CIDR == b.CIDR &&
		mode(string(a.IPIPMode), "Never") == mode(string(b.IPIPMode), "Never") &&
		mode(string(a.VXLANMode), "Never") == mode(string(b.VXLANMode), "Never") &&
		a.NATOutgoing == b.NATOutgoing && a.Disabled == b.Disabled && a.DisableBGPExport == b.DisableBGPExport &&
		a.BlockSize == b.BlockSize && a.NodeSelector == b.NodeSelector &&
		reflect.DeepEqual(a.AllowedUses, b.AllowedUses) && am(a.AssignmentMode) == am(b.AssignmentMode)
}

// runOperator is a small reconciler modelled on tigera/operator pkg/controller/ippool/pool_controller.go.
func runOperator(ctx context.Context, restCfg *rest.Config, cal clientv3.Interface) error {
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	trigger := make(chan struct{}, 1)
	kick := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { kick() },
		UpdateFunc: func(interface{}, interface{}) { kick() },
		DeleteFunc: func(interface{}) { kick() },
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 5*time.Minute)
	f.ForResource(installationGVR).Informer().AddEventHandler(h)
	f.ForResource(ippoolGVR).Informer().AddEventHandler(h)
	f.Start(ctx.Done())
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-trigger:
			case <-time.After(30 * time.Second):
			}
			if err := reconcilePools(ctx, dyn, cal); err != nil && ctx.Err() == nil {
				klog.Errorf("operator: reconcile: %v", err)
				time.Sleep(time.Second)
				kick()
			}
		}
	}()
	kick()
	return nil
}

func reconcilePools(ctx context.Context, dyn dynamic.Interface, cal clientv3.Interface) error {
	inst, err := dyn.Resource(installationGVR).Get(ctx, "default", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	raw, found, _ := unstructured.NestedSlice(inst.Object, "spec", "calicoNetwork", "ipPools")
	if !found {
		return nil // nil list: out-of-band management in our emulation
	}
	want := map[string]*apiv3.IPPool{}
	for _, r := range raw {
		m, ok := r.(map[string]interface{})
		if !ok {
			continue
		}
		p, err := desiredPool(m)
		if err != nil {
			return err
		}
		want[p.Name] = p
	}
	existing, err := cal.IPPools().List(ctx, options.ListOptions{})
	if err != nil {
		return err
	}
	have := map[string]*apiv3.IPPool{}
	for i := range existing.Items {
		have[existing.Items[i].Name] = &existing.Items[i]
	}
	for name, w := range want {
		cur := have[name]
		if cur == nil {
			if _, err := cal.IPPools().Create(ctx, w, options.SetOptions{}); err != nil {
				return fmt.Errorf("create pool %s: %w", name, err)
			}
			logf("operator: created IPPool %s", name)
			continue
		}
		if cur.Labels[managedByLabel] != managedByValue {
			// Adopt only an exact match, like the operator.
			if !poolSpecEqual(cur.Spec, w.Spec) {
				klog.Errorf("operator: Cannot update an IP pool not owned by the operator: %s", name)
				continue
			}
		} else if poolSpecEqual(cur.Spec, w.Spec) {
			continue
		}
		upd := cur.DeepCopy()
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		upd.Labels[managedByLabel] = managedByValue
		upd.Spec = w.Spec
		if _, err := cal.IPPools().Update(ctx, upd, options.SetOptions{}); err != nil {
			return fmt.Errorf("update pool %s: %w", name, err)
		}
		logf("operator: reconciled IPPool %s", name)
	}
	for name, cur := range have {
		if _, ok := want[name]; ok || cur.Labels[managedByLabel] != managedByValue {
			continue
		}
		if _, err := cal.IPPools().Delete(ctx, name, options.DeleteOptions{}); err != nil {
			if _, ok := err.(cerrors.ErrorResourceDoesNotExist); !ok {
				return fmt.Errorf("delete pool %s: %w", name, err)
			}
		}
		logf("operator: deleted IPPool %s (no longer in Installation)", name)
	}
	return nil
}
