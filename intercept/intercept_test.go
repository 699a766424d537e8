package intercept

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// topology is three network namespaces: a client, the appliance and a
// server, the appliance routing between them (router mode):
//
//	client c0 192.0.2.10 2001:db8:1::10 — a0 192.0.2.1 2001:db8:1::1 [appliance]
//	a1 198.51.100.1 2001:db8:2::1 — s0 198.51.100.25 2001:db8:2::25 server
type topology struct {
	t                 *testing.T
	client, box, serv netns.NsHandle
	names             [3]string
	mgr               *Manager
	nft               *nftables.Conn
}

var (
	clientV4 = netip.MustParseAddr("192.0.2.10")
	clientV6 = netip.MustParseAddr("2001:db8:1::10")
	serverV4 = netip.MustParseAddr("198.51.100.25")
	serverV6 = netip.MustParseAddr("2001:db8:2::25")
	boxOutV4 = netip.MustParseAddr("198.51.100.1")
)

func newTopology(t *testing.T) *topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("network namespaces need root (ip netns add): run the tests as root")
	}
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	tp := &topology{t: t, names: [3]string{"mgic" + id, "mgia" + id, "mgis" + id}}
	for _, n := range tp.names {
		run(t, "ip", "netns", "add", n)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", n).Run() })
		run(t, "ip", "-n", n, "link", "set", "lo", "up")
	}
	c, a, s := tp.names[0], tp.names[1], tp.names[2]
	run(t, "ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "a0", "netns", a)
	run(t, "ip", "-n", a, "link", "add", "a1", "type", "veth", "peer", "name", "s0", "netns", s)
	for _, x := range [][]string{
		{c, "c0", "192.0.2.10/24", "2001:db8:1::10/64"},
		{a, "a0", "192.0.2.1/24", "2001:db8:1::1/64"},
		{a, "a1", "198.51.100.1/24", "2001:db8:2::1/64"},
		{s, "s0", "198.51.100.25/24", "2001:db8:2::25/64"},
	} {
		run(t, "ip", "-n", x[0], "addr", "add", x[2], "dev", x[1])
		run(t, "ip", "-n", x[0], "addr", "add", x[3], "dev", x[1], "nodad")
		run(t, "ip", "-n", x[0], "link", "set", x[1], "up")
	}
	run(t, "ip", "-n", c, "route", "add", "default", "via", "192.0.2.1")
	run(t, "ip", "-n", c, "-6", "route", "add", "default", "via", "2001:db8:1::1")
	run(t, "ip", "-n", s, "route", "add", "default", "via", "198.51.100.1")
	run(t, "ip", "-n", s, "-6", "route", "add", "default", "via", "2001:db8:2::1")
	run(t, "ip", "netns", "exec", a, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	var err error
	for i, h := range []*netns.NsHandle{&tp.client, &tp.box, &tp.serv} {
		if *h, err = netns.GetFromName(tp.names[i]); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
	}
	nh, err := netlink.NewHandleAt(tp.box)
	if err != nil {
		t.Fatal(err)
	}
	if tp.nft, err = nftables.New(nftables.WithNetNSFd(int(tp.box))); err != nil {
		t.Fatal(err)
	}
	tp.mgr = NewManager(nh, tp.nft)
	t.Cleanup(tp.mgr.Close)
	return tp
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// in runs fn on a thread in namespace ns: the sockets it makes are ns's.
func in[T any](t *testing.T, ns netns.NsHandle, fn func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	ch := make(chan result)
	go func() {
		runtime.LockOSThread()
		// The thread is left locked, so it dies with the goroutine
		// instead of going back to the pool in ns.
		if err := netns.Set(ns); err != nil {
			var zero T
			ch <- result{zero, err}
			return
		}
		v, err := fn()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

// server answers every connection with a line naming the addresses it
// sees, then echoes.
func (tp *topology) server(port int) {
	t := tp.t
	ln, err := in(t, tp.serv, func() (net.Listener, error) { return net.Listen("tcp", fmt.Sprintf(":%d", port)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "remote=%s local=%s\n", c.RemoteAddr(), c.LocalAddr())
				io.Copy(c, c)
			}()
		}
	}()
}

// session is an intercepted connection as the interceptor saw it.
type session struct {
	client, orig netip.AddrPort
	ingress      string
}

// interceptor accepts the intercepted connections on the appliance and
// connects each to its original destination, from the client's address
// when hide is set.
func (tp *topology) interceptor(port int, hide bool) <-chan session {
	t := tp.t
	ln, err := in(t, tp.box, func() (net.Listener, error) { return Listen(context.Background(), fmt.Sprintf(":%d", port)) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	sp := tp.mgr.Spoofer()
	sessions := make(chan session, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
				client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
				s := session{client: client, orig: OriginalDestination(c)}
				s.ingress, _ = tp.mgr.Ingress(client.Addr())
				sessions <- s
				up, err := in(t, tp.box, func() (net.Conn, error) {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if hide {
						return sp.Dial(ctx, client.Addr(), s.orig)
					}
					var d net.Dialer
					return d.DialContext(ctx, "tcp", s.orig.String())
				})
				if err != nil {
					fmt.Fprintf(c, "upstream: %v\n", err)
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return sessions
}

// dial connects from the client namespace and returns the server's line.
func (tp *topology) dial(dst netip.AddrPort) (string, net.Conn, error) {
	c, err := in(tp.t, tp.client, func() (net.Conn, error) { return net.DialTimeout("tcp", dst.String(), 3*time.Second) })
	if err != nil {
		return "", nil, err
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return "", nil, err
	}
	c.SetDeadline(time.Time{})
	return strings.TrimSpace(line), c, nil
}

func remoteOf(line string) netip.AddrPort {
	f := strings.Fields(line)
	if len(f) == 0 {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(strings.TrimPrefix(f[0], "remote="))
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Policy routing picks up the connections to port 25 that come in on a0,
// whatever their destination; the accepted connection knows the
// destination the client addressed and the interface it came in on; the
// connection onward binds the client's address (not its port), and the
// server's replies find their way back, over IPv4 and IPv6.
func TestInterceptHidden(t *testing.T) {
	tp := newTopology(t)
	for _, f := range tp.mgr.Probe() {
		if f.Err != nil {
			t.Fatalf("this kernel lacks %s: %v", f.Name, f.Err)
		}
	}
	tp.server(25)
	tp.server(2525)
	if err := tp.mgr.Apply(Spec{Rules: []Rule{{Iface: "a0", Port: 25, Action: Intercept}}}); err != nil {
		t.Fatal(err)
	}
	sessions := tp.interceptor(25, true)
	var open []net.Conn
	for _, c := range []struct{ client, server netip.Addr }{{clientV4, serverV4}, {clientV6, serverV6}} {
		dst := netip.AddrPortFrom(c.server, 25)
		line, conn, err := tp.dial(dst)
		if err != nil {
			t.Fatalf("%s: %v", dst, err)
		}
		open = append(open, conn)
		s := <-sessions
		if s.orig != dst || s.ingress != "a0" || s.client.Addr() != c.client {
			t.Errorf("intercepted session %+v, want destination %s from %s on a0", s, dst, c.client)
		}
		seen := remoteOf(line)
		if seen.Addr() != c.client {
			t.Errorf("the server sees %q, want the client's address %s", line, c.client)
		}
		if seen.Port() == s.client.Port() {
			t.Errorf("the onward connection reuses the client's port %d", seen.Port())
		}
		// The session carries data both ways.
		fmt.Fprintf(conn, "ping %s\n", c.client)
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		echo, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil || echo != fmt.Sprintf("ping %s\n", c.client) {
			t.Errorf("echo through the intercepted session: %q %v", echo, err)
		}
	}
	// A flow that is not intercepted keeps working beside the hidden
	// ones: routed untouched, the server sees the client's own port.
	line, conn, err := tp.dial(netip.AddrPortFrom(serverV4, 2525))
	if err != nil {
		t.Fatalf("a flow that is not intercepted: %v", err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	if remoteOf(line) != netip.AddrPortFrom(clientV4, local.Port()) {
		t.Errorf("the server of the routed flow sees %q, want %s:%d", line, clientV4, local.Port())
	}
	conn.Close()
	select {
	case s := <-sessions:
		t.Errorf("port 2525 was intercepted: %+v", s)
	default:
	}
	counters, err := tp.mgr.Counters()
	if err != nil || counters.Returned == 0 {
		t.Errorf("the return path counted no packet: %+v %v", counters, err)
	}
	for _, c := range open {
		c.Close()
	}
}

// Without hiding, the server sees the appliance's address; pass-through
// (no rule) leaves the connection to the server itself; drop drops.
func TestInterceptModes(t *testing.T) {
	tp := newTopology(t)
	tp.server(25)
	tp.server(587)
	sessions := tp.interceptor(25, false)
	dst := netip.AddrPortFrom(serverV4, 25)

	// Pass-through: nothing installed, the server sees the client itself.
	line, conn, err := tp.dial(dst)
	if err != nil || remoteOf(line).Addr() != clientV4 {
		t.Fatalf("pass-through: %q %v", line, err)
	}
	conn.Close()
	select {
	case s := <-sessions:
		t.Fatalf("pass-through intercepted %+v", s)
	default:
	}

	spec := Spec{Rules: []Rule{{Iface: "a0", Port: 25, Action: Intercept}, {Iface: "a0", Port: 587, Action: Drop}}}
	if err := tp.mgr.Apply(spec); err != nil {
		t.Fatal(err)
	}
	line, conn, err = tp.dial(dst)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if s := <-sessions; s.orig != dst || remoteOf(line).Addr() != boxOutV4 {
		t.Errorf("not hidden: session %+v, the server sees %q, want %s", s, line, boxOutV4)
	}
	if _, _, err := tp.dial(netip.AddrPortFrom(serverV4, 587)); err == nil {
		t.Error("port 587 set to drop connects")
	}
	counters, err := tp.mgr.Counters()
	if err != nil || counters.Dropped["a0:587"] == 0 {
		t.Errorf("drop counters %+v %v", counters, err)
	}

	// Apply is idempotent, and follows a changed spec.
	first, _ := tp.mgr.Rules()
	if err := tp.mgr.Apply(spec); err != nil {
		t.Fatal(err)
	}
	if again, _ := tp.mgr.Rules(); strings.Join(again, "\n") != strings.Join(first, "\n") || len(first) != 4 {
		t.Errorf("rules after a second Apply:\n%s\nbefore:\n%s", strings.Join(again, "\n"), strings.Join(first, "\n"))
	}
	if err := tp.mgr.Apply(Spec{}); err != nil {
		t.Fatal(err)
	}
	if rules, _ := tp.mgr.Rules(); len(rules) != 2 {
		t.Errorf("rules after dropping the interception: %q", rules)
	}
	if line, conn, err := tp.dial(netip.AddrPortFrom(serverV4, 587)); err != nil || remoteOf(line).Addr() != clientV4 {
		t.Errorf("587 after removing its drop rule: %q %v", line, err)
	} else {
		conn.Close()
	}

	// Remove leaves nothing of ours.
	if err := tp.mgr.Remove(); err != nil {
		t.Fatal(err)
	}
	a := tp.names[1]
	for _, args := range [][]string{{"rule"}, {"-6", "rule"}, {"route", "show", "table", "2525"}, {"-6", "route", "show", "table", "2525"}} {
		if out := run(t, "ip", append([]string{"-n", a}, args...)...); strings.Contains(out, "2525") || strings.Contains(out, "local default") {
			t.Errorf("ip %v after Remove:\n%s", args, out)
		}
	}
	if tables, err := tp.nft.ListTables(); err != nil || len(tables) != 0 {
		t.Errorf("nftables tables after Remove: %v %v", tables, err)
	}
}

// The first rule that matches decides, by destination: connections to
// one server pass through while those to others are intercepted, and the
// other way round a server's connections are dropped while the others
// pass, over IPv4 and IPv6.
func TestInterceptByDestination(t *testing.T) {
	tp := newTopology(t)
	run(t, "ip", "-n", tp.names[2], "addr", "add", "198.51.100.26/24", "dev", "s0")
	run(t, "ip", "-n", tp.names[2], "addr", "add", "2001:db8:2::26/64", "dev", "s0", "nodad")
	tp.server(25)
	sessions := tp.interceptor(25, false)
	other := netip.MustParseAddr("198.51.100.26")
	other6 := netip.MustParseAddr("2001:db8:2::26")
	intercepted := func(dst netip.Addr) (bool, error) {
		line, c, err := tp.dial(netip.AddrPortFrom(dst, 25))
		if err != nil {
			return false, err
		}
		c.Close()
		select {
		case s := <-sessions:
			if s.orig.Addr() != dst {
				t.Errorf("intercepted %+v, dialled %s", s, dst)
			}
			return true, nil
		case <-time.After(200 * time.Millisecond):
			if remoteOf(line).Addr().Is4() && remoteOf(line).Addr() != clientV4 {
				t.Errorf("passed through, but the server sees %q", line)
			}
			return false, nil
		}
	}
	if err := tp.mgr.Apply(Spec{Rules: []Rule{
		{Iface: "a0", Port: 25, To: netip.PrefixFrom(serverV4, 32), Action: Pass},
		{Iface: "a0", Port: 25, To: netip.PrefixFrom(serverV6, 128), Action: Pass},
		{Iface: "a0", Port: 25, Action: Intercept},
	}}); err != nil {
		t.Fatal(err)
	}
	for dst, want := range map[netip.Addr]bool{serverV4: false, other: true, serverV6: false, other6: true} {
		if got, err := intercepted(dst); err != nil || got != want {
			t.Errorf("to %s: intercepted %v (%v), want %v", dst, got, err, want)
		}
	}
	if err := tp.mgr.Apply(Spec{Rules: []Rule{
		{Iface: "a0", Port: 25, To: netip.PrefixFrom(serverV4, 32), Action: Drop},
		{Iface: "a0", Port: 25, To: netip.MustParsePrefix("2001:db8:2::/64"), Action: Drop},
		{Iface: "a0", Port: 25, Action: Pass},
	}}); err != nil {
		t.Fatal(err)
	}
	for dst, dropped := range map[netip.Addr]bool{serverV4: true, other: false, serverV6: true} {
		got, err := intercepted(dst)
		if dropped != (err != nil) || got {
			t.Errorf("to %s: intercepted %v, error %v; want dropped %v", dst, got, err, dropped)
		}
	}
	if c, err := tp.mgr.Counters(); err != nil || c.Dropped["a0:25"] == 0 {
		t.Errorf("drop counters %+v %v", c, err)
	}
}
