package appliance

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"mailgate/config"
	"mailgate/policy"
)

// accessGuard enforces `system interface … allowaccess` and `mailaccess`: a connection
// to a service that its interface does not allow is closed as soon as it
// is accepted (policy.InterfaceAccess decides).
type accessGuard struct {
	config func() *config.Config
	event  func(msg string)
	// readKernel and now are kernelInterfaces and time.Now but in tests.
	readKernel func() []policy.KernelInterface
	now        func() time.Time

	mu      sync.Mutex
	table   []policy.KernelInterface
	read    time.Time
	lastLog map[string]time.Time
}

// kernelTableAge is how long the kernel's interface table is reused.
const kernelTableAge = 2 * time.Second

func newAccessGuard(cfg func() *config.Config, event func(string)) *accessGuard {
	return &accessGuard{config: cfg, event: event, readKernel: kernelInterfaces, now: time.Now, lastLog: map[string]time.Time{}}
}

// Listener returns ln with the guard on its accepted connections.
func (g *accessGuard) Listener(ln net.Listener, service string) net.Listener {
	return &guardedListener{Listener: ln, g: g, service: service}
}

func (g *accessGuard) kernel() []policy.KernelInterface {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := g.now(); g.table == nil || now.Sub(g.read) >= kernelTableAge {
		g.table, g.read = g.readKernel(), now
	}
	return g.table
}

// allow decides for one accepted connection and logs a refusal (at most
// once a second per service and interface, so a flood cannot fill the
// event log).
func (g *accessGuard) allow(c net.Conn, service string) bool {
	local, ok := addrOf(c.LocalAddr())
	if !ok {
		return true
	}
	allowed, port := policy.InterfaceAccess(g.config().System.Interface, g.kernel, local, service)
	if allowed {
		return true
	}
	key := service + " " + port
	g.mu.Lock()
	now := g.now()
	quiet := now.Sub(g.lastLog[key]) < time.Second
	if !quiet {
		g.lastLog[key] = now
	}
	g.mu.Unlock()
	if !quiet {
		remote, _ := addrOf(c.RemoteAddr())
		g.event(fmt.Sprintf("%s connection from %s refused on %s: not in its %s", service, remote, port, policy.AccessAttribute(service)))
	}
	return false
}

func addrOf(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ip.Unmap(), ok
}

// kernelInterfaces reads the kernel's interfaces and their addresses.
func kernelInterfaces() []policy.KernelInterface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	out := make([]policy.KernelInterface, 0, len(ifs))
	for _, ifc := range ifs {
		k := policy.KernelInterface{Index: ifc.Index, Name: ifc.Name, Loopback: ifc.Flags&net.FlagLoopback != 0}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					k.Addrs = append(k.Addrs, ip.Unmap())
				}
			}
		}
		out = append(out, k)
	}
	return out
}

type guardedListener struct {
	net.Listener
	g       *accessGuard
	service string
}

func (l *guardedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.g.allow(c, l.service) {
			return c, nil
		}
		c.Close()
	}
}

// icmpEchoFiles are the kernel's switches for answering echo requests
// (IPv4 and IPv6).
var icmpEchoFiles = []string{"/proc/sys/net/ipv4/icmp_echo_ignore_all", "/proc/sys/net/ipv6/icmp/echo_ignore_all"}

// applyPing makes the kernel answer ping when an interface's allowaccess
// has ping, and ignore it otherwise (Options.ManageICMP).
func applyPing(c *config.Config) error {
	v := "1\n"
	if policy.PingAllowed(c.System.Interface) {
		v = "0\n"
	}
	var errs []error
	for _, f := range icmpEchoFiles {
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("allowaccess ping: %w", err))
		}
	}
	return errors.Join(errs...)
}
