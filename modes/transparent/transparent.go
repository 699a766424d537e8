// Package transparent runs transparent mode: the appliance sits in the
// network path and picks up SMTP connections addressed to other servers,
// without clients or servers changing an address. The appliance routes
// between its ports; per interface and direction (`proxy-smtp-in-mode`
// for connections to a protected domain's server, `proxy-smtp-out-mode`
// for any other), connections to port 25 are picked up, dropped or
// passed through (package intercept installs the rules). A picked-up
// connection is received by the mail transfer core (modes/mta) exactly
// as in gateway mode, the receive policy deciding each recipient and the
// message queued durably before 250; the queue relays protected domains
// to their servers and other mail by relay host or MX.
package transparent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailgate/config"
	"mailgate/delivery"
	"mailgate/eventlog"
	"mailgate/intercept"
	"mailgate/modes/mta"
	"mailgate/policy"
	"mailgate/queue"
)

// Port is the SMTP port transparent mode picks up.
const Port = 25

// Options configure transparent mode.
type Options struct {
	mta.Options
	// Manager installs the interception rules (nil: in the appliance's
	// own network namespace).
	Manager *intercept.Manager
	// Resolve looks up the addresses of a protected domain's server
	// named by host name (nil: the system resolver).
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// Sysctl writes a kernel setting (nil: /proc/sys).
	Sysctl func(key, value string) error
}

// Mode is running transparent mode.
type Mode struct {
	*mta.MTA
	opt   Options
	mgr   *intercept.Manager
	own   bool // mgr was opened here
	mu    sync.Mutex
	spec  intercept.Spec
	spoof *intercept.Spoofer
	// servers are the protected domains' server addresses, with their
	// domains, as the rules were last made.
	servers map[netip.Addr][]string
	// picked counts the picked-up sessions since start: incoming,
	// outgoing.
	picked [2]atomic.Uint64
	logs   *eventlog.Log
}

// Start checks that the kernel has what interception needs, turns on
// routing between the ports, starts the mail transfer core with
// transparent listeners and installs the interception rules.
func Start(o Options) (*Mode, error) {
	c, _ := o.Service.Config()
	ms := &c.System.Mailserver
	if port := pick(o.SMTPPort, ms.SMTPPort); port != Port || o.ListenHost != "" || !ms.SMTPService {
		return nil, fmt.Errorf("transparent mode picks up connections to port %d: the SMTP service must be on and listen on port %d of every address (smtp-port %d, listen address %q)", Port, Port, port, o.ListenHost)
	}
	m := &Mode{opt: o, mgr: o.Manager, logs: o.Service.Log()}
	if m.mgr == nil {
		mgr, err := intercept.Open()
		if err != nil {
			return nil, fmt.Errorf("transparent mode: %w", err)
		}
		m.mgr, m.own = mgr, true
	}
	if err := intercept.Missing(m.mgr.Probe()); err != nil {
		m.closeManager()
		return nil, err
	}
	sysctl := o.Sysctl
	if sysctl == nil {
		sysctl = writeSysctl
	}
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		if err := sysctl(k, "1"); err != nil {
			m.closeManager()
			return nil, fmt.Errorf("transparent mode routes between its ports: %w", err)
		}
	}
	m.spoof = m.mgr.Spoofer()
	core := o.Options
	core.Mode = "transparent"
	core.Listen = m.listen
	core.Source = m.source
	core.Hidden = m.hidden
	var err error
	if m.MTA, err = mta.Start(core); err != nil {
		m.closeManager()
		return nil, err
	}
	if err := m.applyRules(c); err != nil {
		m.Close()
		return nil, err
	}
	o.Service.SetInterception(m)
	return m, nil
}

// Check refuses a transparent-mode configuration that picks up or drops
// connections when the kernel lacks a feature that needs, naming it: mail
// is never passed through unseen because a rule could not be installed.
func Check(c *config.Config) error {
	if c.System.Global.OperationMode != "transparent" || !slices.ContainsFunc(c.System.Interface, func(ifc config.Interface) bool {
		return ifc.ProxySMTPInMode != "pass-through" || ifc.ProxySMTPOutMode != "pass-through"
	}) {
		return nil
	}
	mgr, err := intercept.Open()
	if err != nil {
		return fmt.Errorf("transparent mode needs the kernel's routing rules and nftables (netlink): %w", err)
	}
	defer mgr.Close()
	return intercept.Missing(mgr.Probe())
}

func pick(override, configured int) int {
	if override != 0 {
		return override
	}
	return configured
}

func writeSysctl(key, value string) error {
	return os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), 0o644)
}

// Apply brings the listeners and the interception rules in line with c.
func (m *Mode) Apply(c *config.Config) error {
	return errors.Join(m.MTA.Apply(c), m.applyRules(c))
}

func (m *Mode) applyRules(c *config.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	servers, err := protectedServers(ctx, c, m.resolve)
	if err != nil {
		return err
	}
	spec, err := Spec(c, kernelNames(), servers)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mgr.Apply(spec); err != nil {
		return fmt.Errorf("interception rules: %w", err)
	}
	m.servers = servers
	if !slices.Equal(spec.Rules, m.spec.Rules) {
		m.spec = spec
		desc := make([]string, len(spec.Rules))
		for i, r := range spec.Rules {
			desc[i] = r.String()
		}
		if len(desc) == 0 {
			desc = []string{"none (every connection passes through)"}
		}
		m.logs.Logf(eventlog.Notice, "transparent", "interception rules: %s", strings.Join(desc, "; "))
	}
	return nil
}

func (m *Mode) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if m.opt.Resolve != nil {
		return m.opt.Resolve(ctx, host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// Close removes the interception rules (connections then pass through),
// then stops the mail transfer core.
func (m *Mode) Close() error {
	m.opt.Service.SetInterception(nil)
	m.mu.Lock()
	err := m.mgr.Remove()
	m.mu.Unlock()
	errs := []error{err}
	if m.MTA != nil {
		errs = append(errs, m.MTA.Close())
	}
	m.closeManager()
	return errors.Join(errs...)
}

func (m *Mode) closeManager() {
	if m.own {
		m.mgr.Close()
	}
}

// pickedUp reports whether server, the address a client connected to,
// is another server's: the session was picked up.
func pickedUp(server netip.AddrPort) bool {
	return server.IsValid() && !server.Addr().IsLoopback() && !ownAddress(server.Addr())
}

// hideDomain reports whether domain is protected with
// hide-transparent-box.
func hideDomain(c *config.Config, domain string) bool {
	domain = strings.TrimSuffix(domain, ".")
	for _, d := range c.Domain {
		if strings.EqualFold(d.Name, domain) {
			return d.HideBox
		}
	}
	return false
}

// hidden: no Received header for a picked-up message whose every
// recipient is in a domain that hides the appliance.
func (m *Mode) hidden(c *config.Config, env *queue.Envelope) bool {
	if !pickedUp(env.Server) || len(env.Recipients) == 0 {
		return false
	}
	for _, r := range env.Recipients {
		_, domain, _ := strings.Cut(r, "@")
		if !hideDomain(c, domain) {
			return false
		}
	}
	return true
}

// source: the delivery of a picked-up message to a domain that hides the
// appliance connects from the client's address with its HELO name.
func (m *Mode) source(job *queue.Job) (delivery.Source, bool) {
	c, _ := m.opt.Service.Config()
	if !job.ClientIP.IsValid() || !pickedUp(job.Server) || !hideDomain(c, job.Domain) {
		return delivery.Source{}, false
	}
	helo := job.Helo
	if helo == "" {
		helo = "[" + job.ClientIP.String() + "]"
	}
	client := job.ClientIP
	return delivery.Source{Addr: client, Helo: helo, Dial: func(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
		return m.spoof.Dial(ctx, client, dst)
	}}, true
}

// Status describes the interception for `diagnose system transparent`:
// the kernel features, the rules as configured and as installed, the
// counters, the sessions picked up.
func (m *Mode) Status() (string, error) {
	var b strings.Builder
	b.WriteString("kernel features:\n")
	for _, f := range m.mgr.Probe() {
		state := "ok"
		if f.Err != nil {
			state = "missing: " + f.Err.Error()
		}
		fmt.Fprintf(&b, "    %s: %s\n", f.Name, state)
	}
	m.mu.Lock()
	spec := m.spec
	m.mu.Unlock()
	b.WriteString("pick-up (first match decides):\n")
	if len(spec.Rules) == 0 {
		b.WriteString("    none: every connection passes through\n")
	}
	for _, r := range spec.Rules {
		fmt.Fprintf(&b, "    %s\n", r)
	}
	rules, err := m.mgr.Rules()
	if err != nil {
		return b.String(), err
	}
	b.WriteString("routing rules:\n")
	for _, r := range rules {
		fmt.Fprintf(&b, "    %s\n", r)
	}
	cnt, err := m.mgr.Counters()
	if err != nil {
		return b.String(), err
	}
	b.WriteString("counters:\n")
	for _, k := range slices.Sorted(maps.Keys(cnt.Dropped)) {
		fmt.Fprintf(&b, "    dropped %s: %d packets\n", k, cnt.Dropped[k])
	}
	fmt.Fprintf(&b, "    replies to connections from clients' addresses: %d packets\n", cnt.Returned)
	fmt.Fprintf(&b, "sessions picked up since start: %d incoming, %d outgoing\n", m.picked[0].Load(), m.picked[1].Load())
	return b.String(), nil
}

// protectedServers resolves the servers of the protected domains
// (smtp-server, fallback-host): each address, with the domains it serves.
func protectedServers(ctx context.Context, c *config.Config, resolve func(context.Context, string) ([]netip.Addr, error)) (map[netip.Addr][]string, error) {
	out := map[netip.Addr][]string{}
	var errs []error
	for _, d := range c.Domain {
		for _, host := range []string{d.SMTPServer, d.FallbackHost} {
			if host == "" {
				continue
			}
			addrs := []netip.Addr{}
			if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
				addrs = append(addrs, a)
			} else if addrs, err = resolve(ctx, host); err != nil || len(addrs) == 0 {
				errs = append(errs, fmt.Errorf("the server %s of protected domain %s has no address (%v): its connections cannot be told from outgoing ones", host, d.Name, err))
				continue
			}
			for _, a := range addrs {
				a = a.Unmap()
				if !slices.Contains(out[a], d.Name) {
					out[a] = append(out[a], d.Name)
				}
			}
		}
	}
	return out, errors.Join(errs...)
}

// kernelNames maps the configuration's port names to the kernel's
// interface names (port1 is the first non-loopback interface).
func kernelNames() map[string]string {
	ifs, _ := net.Interfaces()
	table := make([]policy.KernelInterface, 0, len(ifs))
	for _, ifc := range ifs {
		table = append(table, policy.KernelInterface{Index: ifc.Index, Name: ifc.Name, Loopback: ifc.Flags&net.FlagLoopback != 0})
	}
	out := map[string]string{}
	for _, k := range table {
		if port := policy.PortName(table, k.Name); port != "" {
			out[port] = k.Name
		}
	}
	return out
}

func action(mode string) intercept.Action {
	switch mode {
	case "proxy":
		return intercept.Intercept
	case "drop":
		return intercept.Drop
	}
	return intercept.Pass
}

// Spec is the interception c asks for: per interface whose pick-up is
// not pass-through both ways, first a rule per protected server address
// (proxy-smtp-in-mode), then one for every other destination
// (proxy-smtp-out-mode). names maps port names to kernel interfaces.
func Spec(c *config.Config, names map[string]string, servers map[netip.Addr][]string) (intercept.Spec, error) {
	addrs := slices.SortedFunc(maps.Keys(servers), func(a, b netip.Addr) int { return a.Compare(b) })
	var spec intercept.Spec
	var errs []error
	for _, ifc := range c.System.Interface {
		in, out := action(ifc.ProxySMTPInMode), action(ifc.ProxySMTPOutMode)
		if in == intercept.Pass && out == intercept.Pass {
			continue
		}
		kname, ok := names[ifc.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("interface %s picks up SMTP connections but the appliance has no such port", ifc.Name))
			continue
		}
		if in != out {
			for _, a := range addrs {
				spec.Rules = append(spec.Rules, intercept.Rule{Iface: kname, Port: Port, To: netip.PrefixFrom(a, a.BitLen()), Action: in})
			}
		}
		spec.Rules = append(spec.Rules, intercept.Rule{Iface: kname, Port: Port, Action: out})
	}
	return spec, errors.Join(errs...)
}

// listen opens the core's listeners as transparent ones, which also
// accept the picked-up connections, and logs each picked-up session.
func (m *Mode) listen(network, addr string) (net.Listener, error) {
	ln, err := intercept.Listen(context.Background(), addr)
	if err != nil {
		return nil, err
	}
	return &loggedListener{Listener: ln, m: m}, nil
}

type loggedListener struct {
	net.Listener
	m *Mode
}

func (l *loggedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.m.logSession(c)
	}
	return c, err
}

// logSession logs a picked-up session: one whose destination is not one
// of the appliance's own addresses.
func (m *Mode) logSession(c net.Conn) {
	dst := intercept.OriginalDestination(c)
	if !pickedUp(dst) {
		return
	}
	client := netip.AddrPort{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = a.AddrPort()
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	}
	port := "?"
	if k, err := m.mgr.Ingress(client.Addr()); err == nil {
		for p, name := range kernelNames() {
			if name == k {
				port = p
			}
		}
	}
	cfg, _ := m.opt.Service.Config()
	m.mu.Lock()
	domains := m.servers[dst.Addr()]
	m.mu.Unlock()
	how := "outgoing"
	if len(domains) == 0 {
		m.picked[1].Add(1)
	} else {
		m.picked[0].Add(1)
		how = "incoming for " + strings.Join(domains, ", ")
		if slices.ContainsFunc(domains, func(d string) bool { return hideDomain(cfg, d) }) {
			how += ", hidden"
		}
	}
	m.logs.Logf(eventlog.Information, "transparent", "picked up SMTP session on %s from %s to %s: relay, %s", port, client, dst, how)
}

func ownAddress(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if n, ok := x.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}
