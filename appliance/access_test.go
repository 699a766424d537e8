package appliance

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"mailgate/config"
	"mailgate/policy"
)

// tcpConn is an accepted connection as far as the guard looks at it.
type tcpConn struct {
	net.Conn
	local, remote string
}

func (c tcpConn) LocalAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(c.local))
}
func (c tcpConn) RemoteAddr() net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(c.remote))
}

func TestAccessGuard(t *testing.T) {
	c := config.New()
	c.System.Interface = []config.Interface{{Name: "port1", AllowAccess: []string{"ssh"}}}
	var events []string
	g := newAccessGuard(func() *config.Config { return c }, func(m string) { events = append(events, m) })
	reads := 0
	g.readKernel = func() []policy.KernelInterface {
		reads++
		return []policy.KernelInterface{{Index: 2, Name: "eth0", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}}}
	}
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return clock }
	conn := tcpConn{local: "192.0.2.10:443", remote: "198.51.100.7:40000"}

	if !g.allow(tcpConn{local: "192.0.2.10:22", remote: "198.51.100.7:40000"}, "ssh") {
		t.Fatal("ssh refused on port1")
	}
	if g.allow(conn, "https") {
		t.Fatal("https allowed on port1")
	}
	want := "https connection from 198.51.100.7 refused on port1: not in its allowaccess"
	if len(events) != 1 || events[0] != want {
		t.Fatalf("events %q", events)
	}
	// A flood logs once a second; the kernel's table is read every 2 s.
	clock = clock.Add(900 * time.Millisecond)
	if g.allow(conn, "https") || len(events) != 1 || reads != 1 {
		t.Fatalf("within a second: %d events, %d table reads", len(events), reads)
	}
	clock = clock.Add(200 * time.Millisecond)
	if g.allow(conn, "https") || len(events) != 2 || reads != 1 {
		t.Fatalf("after a second: %d events, %d table reads", len(events), reads)
	}
	clock = clock.Add(kernelTableAge)
	g.allow(conn, "https")
	if reads != 2 {
		t.Fatalf("%d table reads after %v", reads, kernelTableAge)
	}
	// The appliance's own address is always served, without a table read.
	if !g.allow(tcpConn{local: "127.0.0.1:443", remote: "127.0.0.1:40000"}, "https") || reads != 2 {
		t.Fatal("loopback refused or looked up")
	}
}
