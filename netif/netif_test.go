package netif_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"mailgate/config"
	"mailgate/config/configtest"
	"mailgate/netif"
	"mailgate/policy"
)

func TestDesired(t *testing.T) {
	c := configtest.Apply(t, config.New(), `config system interface
    edit port1
        set mode static
        set ip 192.0.2.10/24
        set mtu 1400
    next
    edit port2
    next
    edit port3
    next
end
config system route
    edit 1
        set gateway 192.0.2.1
    next
    edit 2
        set destination 198.51.100.7/24
        set gateway 203.0.113.1
        set interface port2
    next
    edit 3
        set destination 2001:db8:1::/48
        set gateway 2001:db8::1
        set interface port3
    next
end
`)
	links := []policy.KernelInterface{{Index: 3, Name: "eth1"}, {Index: 1, Name: "lo", Loopback: true}, {Index: 2, Name: "eth0"}}
	st, err := netif.Desired(c, links)
	want := netif.State{
		Links: []netif.Link{
			{Port: "port1", Name: "eth0", Index: 2, MTU: 1400, Static: true, Addr: netip.MustParsePrefix("192.0.2.10/24")},
			{Port: "port2", Name: "eth1", Index: 3, MTU: 1500},
		},
		Routes: []netif.Route{
			{ID: 1, Dst: netip.MustParsePrefix("0.0.0.0/0"), Gateway: netip.MustParseAddr("192.0.2.1")},
			{ID: 2, Dst: netip.MustParsePrefix("198.51.100.0/24"), Gateway: netip.MustParseAddr("203.0.113.1"), Port: "port2", Index: 3},
		},
	}
	if !slices.Equal(st.Links, want.Links) || !slices.Equal(st.Routes, want.Routes) {
		t.Errorf("state\n%+v\nwant\n%+v", st, want)
	}
	for _, w := range []string{
		"system interface port3: no such network interface: the appliance has port1 (eth0), port2 (eth1)",
		"system route 3: interface port3: no such network interface",
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

// testNamespace makes a network namespace with two links, eth0 and eth1
// (port1 and port2), and returns a netlink handle into it and
// an ip command that runs there.
func testNamespace(t *testing.T) (*netlink.Handle, func(args ...string) string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root (ip netns add): run the tests as root")
	}
	b := make([]byte, 3)
	rand.Read(b)
	name := "mgnetif" + hex.EncodeToString(b)
	ip := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })

	// The handle's sockets are made inside ns; this thread comes back to
	// its own namespace.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if now, err := netns.Get(); err != nil || !now.Equal(orig) {
		t.Fatalf("the thread did not return to its namespace (%v)", err)
	}
	// eth0 and eth1 are veths whose peers are in a second namespace (this
	// kernel has no dummy links), so that the first is the only one
	// with links.
	peer := name + "p"
	if out, err := exec.Command("ip", "netns", "add", peer).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", peer).Run() })
	ip("link", "set", "lo", "up")
	for _, l := range []string{"eth0", "eth1"} {
		ip("link", "add", l, "type", "veth", "peer", "name", "p"+l, "netns", peer)
		if out, err := exec.Command("ip", "-n", peer, "link", "set", "p"+l, "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set up: %v\n%s", err, out)
		}
	}
	return h, ip
}

type linkState struct {
	up    bool
	mtu   int
	addrs []string // global ones
}

func readLink(t *testing.T, h *netlink.Handle, name string) linkState {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	s := linkState{up: l.Attrs().Flags&unix.IFF_UP != 0, mtu: l.Attrs().MTU}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE {
			s.addrs = append(s.addrs, a.IPNet.String())
		}
	}
	slices.Sort(s.addrs)
	return s
}

// routes lists mailgate's routes as `ip route show proto 77` prints them.
func routes(ip func(...string) string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(ip("route", "show", "proto", "77")+ip("-6", "route", "show", "proto", "77")), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func TestApplyInNamespace(t *testing.T) {
	h, ip := testNamespace(t)
	// Left over from DHCP on port2: static mode removes it.
	ip("addr", "add", "192.0.2.99/24", "dev", "eth1")
	m := netif.NewManager(h)
	apply := func(c *config.Config) []string {
		t.Helper()
		changes, err := m.Apply(c)
		if err != nil {
			t.Fatalf("Apply: %v (changes %q)", err, changes)
		}
		return changes
	}
	check := func(name string, want linkState) {
		t.Helper()
		if got := readLink(t, h, name); got.up != want.up || got.mtu != want.mtu || !slices.Equal(got.addrs, want.addrs) {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}

	c := configtest.Apply(t, config.New(), `config system interface
    edit port1
        set mode static
        set ip 192.0.2.10/24
        set mtu 1400
    next
    edit port2
        set mode static
        set ip 203.0.113.10/24
        set mtu 1400
    next
end
config system route
    edit 1
        set gateway 192.0.2.1
    next
    edit 2
        set destination 198.51.100.0/24
        set gateway 203.0.113.1
        set interface port2
    next
    edit 3
        set destination 2001:db8:1::/48
        set gateway fe80::1
        set interface port1
    next
end
`)
	changes := apply(c)
	for _, w := range []string{"port1 mtu 1400", "port1 up", "port1 address 192.0.2.10/24", "port2 removed address 192.0.2.99/24",
		"route 1 0.0.0.0/0 via 192.0.2.1", "route 2 198.51.100.0/24 via 203.0.113.1 port2"} {
		if !slices.Contains(changes, w) {
			t.Errorf("changes %q lack %q", changes, w)
		}
	}
	check("eth0", linkState{up: true, mtu: 1400, addrs: []string{"192.0.2.10/24"}})
	check("eth1", linkState{up: true, mtu: 1400, addrs: []string{"203.0.113.10/24"}})
	want := []string{
		"198.51.100.0/24 via 203.0.113.1 dev eth1",
		"2001:db8:1::/48 via fe80::1 dev eth0 metric 1024 pref medium",
		"default via 192.0.2.1 dev eth0",
	}
	if got := routes(ip); !slices.Equal(got, want) {
		t.Errorf("routes\n%q\nwant\n%q", got, want)
	}
	if changes := apply(c); len(changes) != 0 {
		t.Errorf("applied again: %q", changes)
	}

	// Someone else's route stays through every change.
	ip("route", "add", "10.9.0.0/16", "via", "192.0.2.1", "proto", "static")

	// A route removed, port1's MTU changed, port2's address switched,
	// the default route to another gateway.
	c = configtest.Apply(t, c, `config system interface
    edit port1
        set mtu 1300
    next
    edit port2
        set ip 203.0.113.20/24
    next
end
config system route
    delete 2
    delete 3
    edit 1
        set gateway 192.0.2.254
    next
end
`)
	// (Route 2 goes with port2's old address, its link's last IPv4 one:
	// the kernel removes the routes of a link that has none.)
	changes = apply(c)
	for _, w := range []string{"port1 mtu 1300", "port2 removed address 203.0.113.10/24", "port2 address 203.0.113.20/24",
		"removed route 2001:db8:1::/48 via fe80::1", "removed route 0.0.0.0/0 via 192.0.2.1", "route 1 0.0.0.0/0 via 192.0.2.254"} {
		if !slices.Contains(changes, w) {
			t.Errorf("changes %q lack %q", changes, w)
		}
	}
	check("eth0", linkState{up: true, mtu: 1300, addrs: []string{"192.0.2.10/24"}})
	check("eth1", linkState{up: true, mtu: 1400, addrs: []string{"203.0.113.20/24"}})
	if got, want := routes(ip), []string{"default via 192.0.2.254 dev eth0"}; !slices.Equal(got, want) {
		t.Errorf("routes %q, want %q", got, want)
	}
	if out := ip("route", "show", "proto", "static"); !strings.Contains(out, "10.9.0.0/16 via 192.0.2.1 dev eth0") {
		t.Errorf("someone else's route is gone: %q", out)
	}
	if changes := apply(c); len(changes) != 0 {
		t.Errorf("applied again: %q", changes)
	}
	// gokrazy's DHCP client moves the routes of its link to its own
	// metric: the route is still the configured one.
	ip("route", "add", "default", "via", "192.0.2.254", "dev", "eth0", "proto", "77", "metric", "1")
	ip("route", "del", "default", "via", "192.0.2.254", "dev", "eth0", "proto", "77", "metric", "0")
	if changes := apply(c); len(changes) != 0 {
		t.Errorf("applied with the route at metric 1: %q", changes)
	}

	// port2 to dhcp: the address mailgate gave it goes, a DHCP client's
	// would stay. A route on a port the kernel does not have is an error;
	// the rest still applies.
	c = configtest.Apply(t, c, `config system interface
    edit port2
        set mode dhcp
    next
    edit port3
    next
end
config system route
    edit 4
        set destination 198.51.100.0/24
        set gateway 192.0.2.2
        set interface port3
    next
    edit 5
        set destination 203.0.113.0/24
        set gateway 192.0.2.3
    next
end
`)
	changes, err := m.Apply(c)
	if err == nil || !strings.Contains(err.Error(), "system interface port3: no such network interface: the appliance has port1 (eth0), port2 (eth1)") ||
		!strings.Contains(err.Error(), "system route 4: interface port3: no such network interface") {
		t.Errorf("Apply with port3: %v", err)
	}
	if !slices.Equal(changes, []string{"port2 removed address 203.0.113.20/24", "route 5 203.0.113.0/24 via 192.0.2.3"}) {
		t.Errorf("changes %q", changes)
	}
	check("eth1", linkState{up: true, mtu: 1400})
	ip("addr", "add", "203.0.113.30/24", "dev", "eth1") // the DHCP client's
	if changes, _ := m.Apply(c); len(changes) != 0 {
		t.Errorf("applied again: %q", changes)
	}
	check("eth1", linkState{up: true, mtu: 1400, addrs: []string{"203.0.113.30/24"}})

	// No routes configured: mailgate's go, the others stay.
	c = configtest.Apply(t, c, "config system route\n    purge\nend\nconfig system interface\n    delete port3\nend\n")
	apply(c)
	if got := routes(ip); len(got) != 0 {
		t.Errorf("routes left: %q", got)
	}
	if out := ip("route", "show", "proto", "static"); !strings.Contains(out, "10.9.0.0/16") {
		t.Errorf("someone else's route is gone: %q", out)
	}
}
