package dataplane

import (
	"net"
	"reflect"
	"testing"
)

func cidr(s string) *net.IPNet {
	_, c, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return c
}

// The derived MAC is Felix's (felix/calc/vxlan_resolver.go vtepMACForHost): "f" and sha1(name)[0:5];
// for IPv6 sha1(name+"-v6"). Locally administered and unicast.
func TestVTEPMACIsFelixsDerivation(t *testing.T) {
	// `printf %s kubesim-node-0 | sha1sum` = 6094fa157f...; with -v6: f0002eb98e...
	for _, tc := range []struct {
		node string
		v6   bool
		want string
	}{
		{"kubesim-node-0", false, "66:60:94:fa:15:7f"},
		{"kubesim-node-0", true, "66:f0:00:2e:b9:8e"},
	} {
		got := VTEPMAC(tc.node, tc.v6)
		if got.String() != tc.want {
			t.Errorf("VTEPMAC(%s, v6=%v) = %s, want %s", tc.node, tc.v6, got, tc.want)
		}
		if got[0]&0x02 == 0 || got[0]&0x01 != 0 {
			t.Errorf("%s: not a locally administered unicast MAC", got)
		}
	}
	if VTEPMAC("a", false).String() == VTEPMAC("b", false).String() {
		t.Error("two nodes, one MAC")
	}
	// An annotated MAC wins over the derived one.
	v := VTEP{MAC: "aa:bb:cc:dd:ee:ff"}
	if got := v.mac("a", false).String(); got != "aa:bb:cc:dd:ee:ff" {
		t.Errorf("annotated MAC ignored: %s", got)
	}
}

func TestBlockModesFollowThePoolAndKeepTheLastModeOfADeletedPool(t *testing.T) {
	last := map[string]bool{}
	blocks := []Block{{"192.168.1.0/26", "n1"}, {"10.0.1.0/26", "n1"}, {"172.16.0.0/26", "n1"}}
	pools := []Pool{{cidr("192.168.0.0/16"), true}, {cidr("10.0.0.0/16"), false}}
	got := BlockModes(blocks, pools, last)
	want := map[string]bool{"192.168.1.0/26": true, "10.0.1.0/26": false, "172.16.0.0/26": false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("modes %v, want %v", got, want)
	}
	// The VXLAN pool is deleted while its block still exists: the block stays on VXLAN.
	got = BlockModes(blocks[:2], pools[1:], last)
	if !got["192.168.1.0/26"] {
		t.Errorf("block of a deleted VXLAN pool lost its mode: %v", got)
	}
	if _, ok := last["172.16.0.0/26"]; ok {
		t.Errorf("a block no longer listed is still remembered: %v", last)
	}
}

func TestPlanNodeRoutesVXLANBlocksViaTunnelAddressesAndOthersViaTheUnderlay(t *testing.T) {
	nodes := []*Node{{Name: "n0", IPv4: "198.18.0.1"}, {Name: "n1", IPv4: "198.18.0.2"}, {Name: "n2", IPv4: "198.18.0.3"}}
	vteps := map[string]VTEP{"n0": {IPv4: "10.0.0.1"}, "n1": {IPv4: "10.0.1.1"}} // n2: none yet
	blocks := []Block{
		{"10.0.0.0/26", "n0"}, {"10.0.1.0/26", "n1"}, {"10.0.2.0/26", "n2"},
		{"172.16.1.0/26", "n1"}, {"10.99.1.0/26", "n1"},
	}
	modes := map[string]bool{"10.0.0.0/26": true, "10.0.1.0/26": true, "10.0.2.0/26": true, "10.99.1.0/26": true}
	pl := PlanNode(nodes[0], nodes, vteps, blocks, modes, []*net.IPNet{cidr("10.99.0.0/16")})
	wantRoutes := map[string]Route{
		"10.0.1.0/26":   {Via: "10.0.1.1", Dev: VXLANDevice},
		"172.16.1.0/26": {Via: "198.18.0.2", Dev: "eth0"},
	}
	if !reflect.DeepEqual(pl.Routes, wantRoutes) {
		t.Errorf("routes %v, want %v", pl.Routes, wantRoutes)
	}
	mac1 := VTEPMAC("n1", false).String()
	if want := map[string]map[string]string{VXLANDevice: {"10.0.1.1": mac1}}; !reflect.DeepEqual(pl.Neighbours, want) {
		t.Errorf("neighbours %v, want %v", pl.Neighbours, want)
	}
	if want := map[string]map[string]string{VXLANDevice: {mac1: "198.18.0.2"}}; !reflect.DeepEqual(pl.FDB, want) {
		t.Errorf("fdb %v, want %v", pl.FDB, want)
	}
	if !reflect.DeepEqual(pl.NoVTEP, []string{"n2"}) {
		t.Errorf("NoVTEP %v, want [n2]", pl.NoVTEP)
	}
	// n2 has no tunnel address: no device, so none of its VXLAN routes; underlay ones stay.
	pl = PlanNode(nodes[2], nodes, vteps, blocks, modes, nil)
	if len(pl.Neighbours) != 0 || len(pl.Routes) != 1 || pl.Routes["172.16.1.0/26"].Dev != "eth0" {
		t.Errorf("node without a VTEP: %+v", pl)
	}
	// n1's tunnel address moves: n0's route and neighbour follow it.
	vteps["n1"] = VTEP{IPv4: "10.1.0.1"}
	pl = PlanNode(nodes[0], nodes, vteps, blocks, modes, nil)
	if pl.Routes["10.0.1.0/26"] != (Route{Via: "10.1.0.1", Dev: VXLANDevice}) || pl.Neighbours[VXLANDevice]["10.1.0.1"] != mac1 || len(pl.Neighbours[VXLANDevice]) != 1 {
		t.Errorf("after the move: %+v", pl)
	}
}

func TestPlanNodeIPv6UsesTheV6DeviceAndMAC(t *testing.T) {
	nodes := []*Node{{Name: "n0", IPv4: "198.18.0.1", IPv6: "2001:2::1"}, {Name: "n1", IPv4: "198.18.0.2", IPv6: "2001:2::2"}}
	vteps := map[string]VTEP{"n0": {IPv4: "10.0.0.1", IPv6: "fd00::1"}, "n1": {IPv4: "10.0.1.1", IPv6: "fd00:0:0:1::1"}}
	blocks := []Block{{"fd00:0:0:1::/122", "n1"}}
	pl := PlanNode(nodes[0], nodes, vteps, blocks, map[string]bool{"fd00:0:0:1::/122": true}, nil)
	if r := pl.Routes["fd00:0:0:1::/122"]; r != (Route{Via: "fd00:0:0:1::1", Dev: VXLANDeviceV6}) {
		t.Errorf("route %v", r)
	}
	mac := VTEPMAC("n1", true).String()
	if pl.FDB[VXLANDeviceV6][mac] != "2001:2::2" || pl.Neighbours[VXLANDeviceV6]["fd00:0:0:1::1"] != mac {
		t.Errorf("v6 entries: %+v", pl)
	}
}

func TestTunnelAddrReadsBothForms(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.1": "10.0.0.1", "10.0.0.1/32": "10.0.0.1", "": "", "x": "", "fd00::1/128": "fd00::1"} {
		if got := TunnelAddr(in); got != want {
			t.Errorf("TunnelAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
