// Package netif owns the appliance's network interfaces in the kernel:
// their link state and MTU, the static addresses of `config system
// interface` and the static routes of `config system route`. Desired
// turns the configuration and the kernel's link list into the state the
// kernel should have; a Manager brings the kernel in line with it through
// netlink, idempotently, at start and at every commit.
//
// What netif leaves alone: a link without a `system interface` entry, the
// addresses of an interface in dhcp mode (the DHCP client's), and every
// route it did not add. Its own routes carry the route protocol Protocol,
// so that a route that is no longer configured can be removed without
// touching the kernel's, the DHCP client's or anyone else's.
package netif

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"mailgate/config"
	"mailgate/policy"
)

// Protocol marks the routes mailgate adds (`ip route show proto 77`); the
// number is not among iproute2's registered ones (rt_protos).
const Protocol netlink.RouteProtocol = 77

// State is what the kernel should have.
type State struct {
	Links  []Link
	Routes []Route
}

// Link is one configured interface.
type Link struct {
	Port  string // the configuration's name: port1, port2, ...
	Name  string // the kernel's name: eth0, ...
	Index int
	MTU   int // 0: left as it is
	// Static is set in static mode: Addr is then the interface's only
	// global address that mailgate keeps (addresses with a lifetime, as
	// IPv6 autoconfiguration gives, are left to the kernel).
	Static bool
	Addr   netip.Prefix
}

// Route is one static route in the main table.
type Route struct {
	ID      int
	Dst     netip.Prefix // masked
	Gateway netip.Addr
	// Port and Index name the link the gateway is on; "" and 0 let the
	// kernel choose it from the gateway.
	Port  string
	Index int
}

func (r Route) String() string {
	s := fmt.Sprintf("route %d %s via %s", r.ID, r.Dst, r.Gateway)
	if r.Port != "" {
		s += " " + r.Port
	}
	return s
}

// Desired is the state c asks of the kernel, whose interfaces are links
// (port names as policy.PortName gives them: the non-loopback links in
// index order). An entry or route naming a port the kernel does not have
// is left out, with an error that says so; the rest is still returned.
func Desired(c *config.Config, links []policy.KernelInterface) (State, error) {
	byPort := map[string]policy.KernelInterface{}
	var have []string
	sorted := slices.Clone(links)
	slices.SortFunc(sorted, func(a, b policy.KernelInterface) int { return a.Index - b.Index })
	for _, k := range sorted {
		if p := policy.PortName(links, k.Name); p != "" {
			byPort[p] = k
			have = append(have, p+" ("+k.Name+")")
		}
	}
	missing := func() error {
		if len(have) == 0 {
			return fmt.Errorf("no such network interface: the appliance has none")
		}
		return fmt.Errorf("no such network interface: the appliance has %s", strings.Join(have, ", "))
	}
	var st State
	var errs []error
	for _, ifc := range c.System.Interface {
		k, ok := byPort[ifc.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("system interface %s: %w", ifc.Name, missing()))
			continue
		}
		l := Link{Port: ifc.Name, Name: k.Name, Index: k.Index, MTU: ifc.MTU}
		if ifc.Mode == "static" {
			p, err := netip.ParsePrefix(ifc.IP)
			if err != nil {
				errs = append(errs, fmt.Errorf("system interface %s: static mode needs ip, not %q", ifc.Name, ifc.IP))
				continue
			}
			l.Static, l.Addr = true, p
		}
		st.Links = append(st.Links, l)
	}
	for _, r := range c.System.Route {
		dst, err1 := netip.ParsePrefix(r.Destination)
		gw, err2 := netip.ParseAddr(r.Gateway)
		if err1 != nil || err2 != nil {
			errs = append(errs, fmt.Errorf("system route %d: needs a destination and a gateway", r.ID))
			continue
		}
		rt := Route{ID: r.ID, Dst: dst.Masked(), Gateway: gw}
		if r.Interface != "" {
			k, ok := byPort[r.Interface]
			if !ok {
				errs = append(errs, fmt.Errorf("system route %d: interface %s: %w", r.ID, r.Interface, missing()))
				continue
			}
			rt.Port, rt.Index = r.Interface, k.Index
		}
		st.Routes = append(st.Routes, rt)
	}
	return st, errors.Join(errs...)
}

// Links reads the kernel's links as Desired takes them.
func Links(h *netlink.Handle) ([]policy.KernelInterface, error) {
	ls, err := retry(h.LinkList)
	if err != nil {
		return nil, fmt.Errorf("network interfaces: %w", err)
	}
	out := make([]policy.KernelInterface, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		out = append(out, policy.KernelInterface{Index: a.Index, Name: a.Name, Loopback: a.Flags&net.FlagLoopback != 0})
	}
	return out, nil
}

// Manager applies states to one network namespace's kernel.
type Manager struct {
	h  *netlink.Handle
	mu sync.Mutex
	// static is the address this Manager last gave each link in static
	// mode, removed when the link goes to dhcp mode.
	static map[int]netip.Prefix
}

// NewManager manages the kernel through h (netlink.NewHandle() for the
// process's own namespace, netlink.NewHandleAt for another).
func NewManager(h *netlink.Handle) *Manager {
	return &Manager{h: h, static: map[int]netip.Prefix{}}
}

// Close closes the Manager's netlink handle.
func (m *Manager) Close() { m.h.Close() }

// Apply brings the kernel in line with c and returns what it changed, one
// item each ("port1 mtu 1400", "removed route 2 ..."); nothing when the
// kernel already was. It applies what it can and joins the errors of the
// rest.
func (m *Manager) Apply(c *config.Config) ([]string, error) {
	links, err := Links(m.h)
	if err != nil {
		return nil, err
	}
	want, derr := Desired(c, links)
	changes, aerr := m.ApplyState(want)
	return changes, errors.Join(derr, aerr)
}

// ApplyState brings the kernel in line with want: for each link its MTU,
// up, and in static mode its address (other permanent global addresses
// removed first); then the routes: those of Protocol that want does not
// have are removed, the missing ones added (RouteReplace).
func (m *Manager) ApplyState(want State) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var changes []string
	var errs []error
	for _, w := range want.Links {
		ch, err := m.applyLink(w)
		changes = append(changes, ch...)
		if err != nil {
			errs = append(errs, fmt.Errorf("system interface %s (%s): %w", w.Port, w.Name, err))
		}
	}
	ch, err := m.applyRoutes(want.Routes)
	changes = append(changes, ch...)
	if err != nil {
		errs = append(errs, err)
	}
	return changes, errors.Join(errs...)
}

func (m *Manager) applyLink(w Link) ([]string, error) {
	l, err := m.h.LinkByIndex(w.Index)
	if err != nil {
		return nil, err
	}
	var changes []string
	a := l.Attrs()
	if w.MTU != 0 && a.MTU != w.MTU {
		if err := m.h.LinkSetMTU(l, w.MTU); err != nil {
			return changes, fmt.Errorf("mtu %d: %w", w.MTU, err)
		}
		changes = append(changes, fmt.Sprintf("%s mtu %d", w.Port, w.MTU))
	}
	if a.Flags&net.FlagUp == 0 {
		if err := m.h.LinkSetUp(l); err != nil {
			return changes, fmt.Errorf("up: %w", err)
		}
		changes = append(changes, w.Port+" up")
	}
	addrs, err := retry(func() ([]netlink.Addr, error) { return m.h.AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return changes, fmt.Errorf("addresses: %w", err)
	}
	if !w.Static {
		// dhcp mode: the addresses are the DHCP client's, but for the one
		// this Manager gave the link in static mode.
		if old, ok := m.static[w.Index]; ok {
			for _, a := range addrs {
				if prefixOf(a) == old {
					if err := m.h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
						return changes, fmt.Errorf("remove address %s: %w", old, err)
					}
					changes = append(changes, fmt.Sprintf("%s removed address %s", w.Port, old))
				}
			}
			delete(m.static, w.Index)
		}
		return changes, nil
	}
	has := false
	for _, a := range addrs {
		p := prefixOf(a)
		switch {
		case p == w.Addr:
			has = true
		case a.Scope == unix.RT_SCOPE_UNIVERSE && a.Flags&unix.IFA_F_PERMANENT != 0:
			if err := m.h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return changes, fmt.Errorf("remove address %s: %w", p, err)
			}
			changes = append(changes, fmt.Sprintf("%s removed address %s", w.Port, p))
		}
	}
	if !has {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: w.Addr.Addr().AsSlice(), Mask: net.CIDRMask(w.Addr.Bits(), w.Addr.Addr().BitLen())}}
		if err := m.h.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return changes, fmt.Errorf("address %s: %w", w.Addr, err)
		}
		changes = append(changes, fmt.Sprintf("%s address %s", w.Port, w.Addr))
	}
	m.static[w.Index] = w.Addr
	return changes, nil
}

func (m *Manager) applyRoutes(want []Route) ([]string, error) {
	filter := &netlink.Route{Protocol: Protocol, Table: unix.RT_TABLE_MAIN}
	have, err := retry(func() ([]netlink.Route, error) {
		return m.h.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	var changes []string
	var errs []error
	kept := make([]bool, len(have))
	missing := []Route{}
	for _, w := range want {
		i := slices.IndexFunc(have, func(r netlink.Route) bool { return matches(r, w) })
		if i < 0 {
			missing = append(missing, w)
			continue
		}
		kept[i] = true
	}
	// Removed first: a route replaced below may have the same key.
	for i, r := range have {
		if kept[i] {
			continue
		}
		if err := m.h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route %s: %w", describe(r), err))
			continue
		}
		changes = append(changes, "removed route "+describe(r))
	}
	for _, w := range missing {
		r := &netlink.Route{
			Dst:       &net.IPNet{IP: w.Dst.Addr().AsSlice(), Mask: net.CIDRMask(w.Dst.Bits(), w.Dst.Addr().BitLen())},
			Gw:        w.Gateway.AsSlice(),
			LinkIndex: w.Index,
			Protocol:  Protocol,
			Table:     unix.RT_TABLE_MAIN,
		}
		if err := m.h.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("system %s: %w", w, err))
			continue
		}
		changes = append(changes, w.String())
	}
	return changes, errors.Join(errs...)
}

// matches reports whether the kernel's route r is w: destination, gateway
// and, when w names one, link. Its priority may have changed (gokrazy's
// DHCP client moves every route of its link to its own).
func matches(r netlink.Route, w Route) bool {
	dst, ok := dstOf(r)
	if !ok || dst != w.Dst {
		return false
	}
	gw, ok := netip.AddrFromSlice(r.Gw)
	if !ok || gw.Unmap() != w.Gateway {
		return false
	}
	return w.Index == 0 || r.LinkIndex == w.Index
}

func dstOf(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		if r.Family == unix.AF_INET6 {
			return netip.MustParsePrefix("::/0"), true
		}
		return netip.MustParsePrefix("0.0.0.0/0"), true
	}
	ip, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := r.Dst.Mask.Size()
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	return netip.PrefixFrom(ip, ones).Masked(), true
}

func describe(r netlink.Route) string {
	dst, _ := dstOf(r)
	return fmt.Sprintf("%s via %s", dst, r.Gw)
}

func prefixOf(a netlink.Addr) netip.Prefix {
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}
	}
	ones, _ := a.Mask.Size()
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	return netip.PrefixFrom(ip, ones)
}

// retry runs a netlink dump again when the kernel reports it interrupted
// (the table changed while it was read).
func retry[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	for range 3 {
		if v, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
