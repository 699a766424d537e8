package policy

import (
	"net/netip"
	"testing"

	"mailgate/config"
)

func TestInterfaceAccess(t *testing.T) {
	a := netip.MustParseAddr
	table := []KernelInterface{
		{Index: 3, Name: "eth1", Addrs: []netip.Addr{a("198.51.100.1")}},
		{Index: 1, Name: "lo", Loopback: true, Addrs: []netip.Addr{a("127.0.0.1"), a("::1")}},
		{Index: 2, Name: "eth0", Addrs: []netip.Addr{a("192.0.2.10"), a("2001:db8::10")}},
		{Index: 4, Name: "eth2", Addrs: []netip.Addr{a("203.0.113.1")}},
	}
	for name, want := range map[string]string{"eth0": "port1", "eth1": "port2", "eth2": "port3", "lo": "", "wlan0": ""} {
		if got := PortName(table, name); got != want {
			t.Errorf("PortName(%s) = %q, want %q", name, got, want)
		}
	}
	reads := 0
	kernel := func() []KernelInterface { reads++; return table }
	cfg := []config.Interface{
		{Name: "port1", AllowAccess: []string{"ssh", "https"}},
		{Name: "port2", MailAccess: []string{"smtp"}},
	}
	for _, tc := range []struct {
		local, service string
		want           bool
		port           string
	}{
		{"192.0.2.10", "ssh", true, "port1"},
		{"192.0.2.10", "https", true, "port1"},
		{"192.0.2.10", "smtp", false, "port1"},
		{"2001:db8::10", "smtp", false, "port1"},
		{"::ffff:192.0.2.10", "smtp", false, "port1"},
		{"198.51.100.1", "ssh", false, "port2"},
		{"198.51.100.1", "smtp", true, "port2"},
		{"198.51.100.1", "smtps", false, "port2"}, // mailaccess lists it apart
		{"203.0.113.1", "ssh", true, "port3"},     // no entry: the factory's allowaccess
		{"127.0.0.1", "ssh", true, ""},            // the appliance itself
		{"::1", "smtp", true, ""},
		{"192.0.2.99", "ssh", true, ""}, // held by no interface (yet)
	} {
		got, port := InterfaceAccess(cfg, kernel, a(tc.local), tc.service)
		if got != tc.want || port != tc.port {
			t.Errorf("%s %s: %v on %q, want %v on %q", tc.service, tc.local, got, port, tc.want, tc.port)
		}
	}
	// A service every entry allows is allowed without reading the kernel's
	// table (the factory configuration, on every accepted connection).
	reads = 0
	everywhere := []config.Interface{{Name: "port1", AllowAccess: []string{"ssh"}, MailAccess: []string{"smtp"}}, {Name: "port2", MailAccess: []string{"smtp"}}}
	if ok, port := InterfaceAccess(everywhere, kernel, a("198.51.100.1"), "smtp"); !ok || port != "" || reads != 0 {
		t.Errorf("smtp allowed everywhere: %v on %q, %d table reads", ok, port, reads)
	}
	if ok, _ := InterfaceAccess(everywhere, kernel, a("198.51.100.1"), "ssh"); ok || reads != 1 {
		t.Errorf("ssh on port2: %v, %d table reads", ok, reads)
	}
	// An empty allowaccess allows nothing.
	if ok, _ := InterfaceAccess([]config.Interface{{Name: "port1"}}, kernel, a("192.0.2.10"), "https"); ok {
		t.Error("empty allowaccess allowed https")
	}
}

func TestPingAllowed(t *testing.T) {
	if !PingAllowed(nil) {
		t.Error("no interfaces configured: ping must be answered")
	}
	if PingAllowed([]config.Interface{{Name: "port1", AllowAccess: []string{"ssh"}}, {Name: "port2"}}) {
		t.Error("no interface allows ping")
	}
	if !PingAllowed([]config.Interface{{Name: "port1", AllowAccess: []string{"ssh"}}, {Name: "port2", AllowAccess: []string{"ping"}}}) {
		t.Error("port2 allows ping")
	}
}
