// Package intercept picks up TCP connections that pass through the
// appliance addressed to someone else (transparent mode), and connects
// onward from the client's own address.
//
// It is built on what the appliance's own kernel has (no TPROXY, no
// nftables socket match, no conntrack marks):
//
//   - Interception is policy routing alone: per ingress interface and
//     port, a FIB rule `iif <if> ipproto tcp dport <port> lookup <Table>`,
//     and in Table a `local` route for every address (0.0.0.0/0, ::/0)
//     on lo. The packets of those connections are delivered locally, to
//     a listener bound to the wildcard address with IP_TRANSPARENT; the
//     accepted connection's local address is the original destination.
//   - Connecting onward from the client's address ("hide the transparent
//     box"): the upstream socket has IP_TRANSPARENT and binds the client's
//     address and a port of its own. The server's replies go to the
//     client's address, so they are pulled back precisely: an nftables
//     set of the (client address, port) pairs in use marks the packets to
//     exactly those, and a FIB rule sends that mark to Table. Traffic that
//     is not intercepted is left alone.
//   - Dropping is an nftables rule in the prerouting hook, per ingress
//     interface and port.
//
// Every rule is made through netlink (vishvananda/netlink, google/nftables);
// Apply rebuilds them idempotently and Remove takes them all away.
package intercept

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// Table is the routing table of the intercepted packets: a local route
	// for every address.
	Table = 2525
	// priority of the FIB rules: before the main table (32766), after the
	// local one (0). The mark rule comes first, then the interception
	// rules in their order.
	rulePriority = 10250
	ruleRange    = 5000 // the priorities of mailgate's rules
	// ReturnMark marks the replies to the connections that connect onward
	// from a client's address.
	ReturnMark = 0x6d67
	// nftTable is the nftables table (family inet) of the drop rules and
	// the return path.
	nftTable = "mailgate"
)

// Spec is the interception wanted: rules per ingress interface and TCP
// port, the first that matches a connection deciding it.
type Spec struct {
	Rules []Rule
}

// Action is what a rule does with the connections it matches.
type Action int

const (
	// Pass leaves them to the routing table (pass-through).
	Pass Action = iota
	// Intercept delivers them to the appliance's transparent listener.
	Intercept
	// Drop drops them.
	Drop
)

func (a Action) String() string {
	return [...]string{"pass-through", "intercept", "drop"}[a]
}

// Rule matches the TCP connections to Port that come in on Iface and are
// addressed to To (every destination when To is not valid).
type Rule struct {
	Iface  string
	Port   uint16
	To     netip.Prefix
	Action Action
}

func (r Rule) String() string {
	to := "any"
	if r.To.IsValid() {
		to = r.To.String()
	}
	return fmt.Sprintf("%s tcp/%d to %s: %s", r.Iface, r.Port, to, r.Action)
}

// Manager installs a Spec in one network namespace.
type Manager struct {
	h   *netlink.Handle
	mu  sync.Mutex // nft: one batch at a time (Apply, Remove, Spoofer)
	nft *nftables.Conn
}

// NewManager manages the namespace of h; nft must be a connection to the
// same namespace.
func NewManager(h *netlink.Handle, nft *nftables.Conn) *Manager {
	return &Manager{h: h, nft: nft}
}

// Open manages the current network namespace.
func Open() (*Manager, error) {
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, err
	}
	nft, err := nftables.New()
	if err != nil {
		h.Close()
		return nil, err
	}
	return NewManager(h, nft), nil
}

// Close releases the netlink sockets (the rules stay).
func (m *Manager) Close() {
	m.h.Close()
	m.nft.CloseLasting()
}

var families = []int{unix.AF_INET, unix.AF_INET6}

// wantRules are the FIB rules of s, in priority order: the mark rule,
// then a rule for each Intercept (to Table) and Pass (to the main table)
// rule of s; Drop is nftables' (prerouting comes before routing).
func wantRules(s Spec) []*netlink.Rule {
	var out []*netlink.Rule
	prio := rulePriority
	for _, fam := range families {
		r := netlink.NewRule()
		r.Family, r.Table, r.Priority, r.Mark = fam, Table, prio, ReturnMark
		mask := uint32(0xffffffff)
		r.Mask = &mask
		out = append(out, r)
	}
	for _, sr := range s.Rules {
		if sr.Action == Drop {
			continue
		}
		prio++
		for _, fam := range families {
			r := netlink.NewRule()
			r.Family, r.Priority = fam, prio
			r.Table = Table
			if sr.Action == Pass {
				r.Table = unix.RT_TABLE_MAIN
			}
			if sr.To.IsValid() {
				if sr.To.Addr().Is4() != (fam == unix.AF_INET) {
					continue
				}
				r.Dst = &net.IPNet{IP: sr.To.Addr().AsSlice(), Mask: net.CIDRMask(sr.To.Bits(), sr.To.Addr().BitLen())}
			}
			r.IifName, r.IPProto = sr.Iface, unix.IPPROTO_TCP
			r.Dport = netlink.NewRulePortRange(sr.Port, sr.Port)
			out = append(out, r)
		}
	}
	return out
}

func ruleKey(r *netlink.Rule) string {
	k := fmt.Sprintf("%d/%d/%d/%s/%d/%#x", r.Family, r.Table, r.Priority, r.IifName, r.IPProto, r.Mark)
	if r.Dst != nil {
		k += "/" + r.Dst.String()
	}
	if r.Dport != nil {
		k += fmt.Sprintf("/%d-%d", r.Dport.Start, r.Dport.End)
	}
	return k
}

// Apply makes the namespace's interception what s says: the local
// routes of Table, the FIB rules, the nftables table. Rules of Table that
// s does not have are removed; the set of connections in progress is
// kept.
func (m *Manager) Apply(s Spec) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.localRoutes(); err != nil {
		return err
	}
	if err := m.applyRules(wantRules(s)); err != nil {
		return err
	}
	return m.applyNFT(s)
}

func (m *Manager) localRoutes() error {
	lo, err := m.h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	// The IPv6 local route needs lo up.
	if err := m.h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	for _, dst := range []string{"0.0.0.0/0", "::/0"} {
		_, n, _ := net.ParseCIDR(dst)
		r := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: n, Table: Table, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST}
		if err := m.h.RouteReplace(r); err != nil {
			return fmt.Errorf("local route %s in table %d: %w", dst, Table, err)
		}
	}
	return nil
}

func (m *Manager) ourRules() ([]netlink.Rule, error) {
	var out []netlink.Rule
	for _, fam := range families {
		rs, err := m.h.RuleList(fam)
		if err != nil {
			return nil, fmt.Errorf("listing the routing rules: %w", err)
		}
		for _, r := range rs {
			if r.Priority >= rulePriority && r.Priority < rulePriority+ruleRange {
				r.Family = fam
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (m *Manager) applyRules(want []*netlink.Rule) error {
	have, err := m.ourRules()
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	for _, r := range want {
		wanted[ruleKey(r)] = true
	}
	present := map[string]bool{}
	for i := range have {
		r := &have[i]
		k := ruleKey(r)
		if wanted[k] && !present[k] {
			present[k] = true
			continue
		}
		if err := m.h.RuleDel(r); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing routing rule %s: %w", r, err)
		}
	}
	for _, r := range want {
		if present[ruleKey(r)] {
			continue
		}
		if err := m.h.RuleAdd(r); err != nil {
			return fmt.Errorf("adding routing rule %s: %w", describeRule(r), err)
		}
	}
	return nil
}

func describeRule(r *netlink.Rule) string {
	fam := "ipv4"
	if r.Family == unix.AF_INET6 {
		fam = "ipv6"
	}
	if r.Dport != nil {
		to, table := "", "interception"
		if r.Dst != nil {
			to = " to " + r.Dst.String()
		}
		if r.Table == unix.RT_TABLE_MAIN {
			table = "main"
		}
		return fmt.Sprintf("%s iif %s tcp dport %d%s lookup %s", fam, r.IifName, r.Dport.Start, to, table)
	}
	return fmt.Sprintf("%s fwmark %#x lookup %d", fam, r.Mark, r.Table)
}

// Rules describes the namespace's interception rules, for diagnose.
func (m *Manager) Rules() ([]string, error) {
	have, err := m.ourRules()
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(have))
	for i := range have {
		out = append(out, fmt.Sprintf("%d: %s", have[i].Priority, describeRule(&have[i])))
	}
	sort.Strings(out)
	return out, nil
}

func (m *Manager) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable}
}

func returnSets(t *nftables.Table) []*nftables.Set {
	return []*nftables.Set{
		{Table: t, Name: "spoofed4", KeyType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService), Concatenation: true, HasTimeout: true},
		{Table: t, Name: "spoofed6", KeyType: nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService), Concatenation: true, HasTimeout: true},
	}
}

// applyNFT (re)writes the prerouting chain of the nftables table; the
// sets are created when missing and otherwise kept with their elements.
func (m *Manager) applyNFT(s Spec) error {
	t := m.nft.AddTable(m.table())
	have := map[string]bool{}
	if sets, err := m.nft.GetSets(t); err == nil {
		for _, set := range sets {
			have[set.Name] = true
		}
	}
	for _, set := range returnSets(t) {
		if !have[set.Name] {
			if err := m.nft.AddSet(set, nil); err != nil {
				return fmt.Errorf("nftables set %s: %w", set.Name, err)
			}
		}
	}
	accept := nftables.ChainPolicyAccept
	c := m.nft.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	m.nft.FlushChain(c)
	for _, v6 := range []bool{false, true} {
		m.nft.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: returnExprs(v6)})
	}
	// The rules in order, so that the first match decides: a drop drops,
	// the others accept (leaving the packet to routing).
	drops := slices.ContainsFunc(s.Rules, func(r Rule) bool { return r.Action == Drop })
	for _, r := range s.Rules {
		if drops {
			m.nft.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: ruleExprs(r)})
		}
	}
	if err := m.nft.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", nftTable, err)
	}
	return nil
}

func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}

func tcpDport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// ruleExprs: iifname <iface> [ip[6] daddr <prefix>] meta l4proto tcp
// tcp dport <port> counter drop|accept.
func ruleExprs(r Rule) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(r.Iface)},
	}
	if r.To.IsValid() {
		proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
		if r.To.Addr().Is6() {
			proto, off, n = unix.NFPROTO_IPV6, 24, 16
		}
		mask := net.CIDRMask(r.To.Bits(), r.To.Addr().BitLen())
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: mask, Xor: make([]byte, n)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.To.Masked().Addr().AsSlice()},
		)
	}
	e = append(e, tcpDport(r.Port)...)
	verdict := expr.VerdictAccept
	if r.Action == Drop {
		verdict = expr.VerdictDrop
	}
	return append(e, &expr.Counter{}, &expr.Verdict{Kind: verdict})
}

// returnExprs: meta nfproto ipv4|ipv6 meta l4proto tcp
// ip[6] daddr . tcp dport @spoofed4|6 meta mark set ReturnMark.
func returnExprs(v6 bool) []expr.Any {
	proto, set, off, n, portReg := byte(unix.NFPROTO_IPV4), "spoofed4", uint32(16), uint32(4), uint32(9)
	if v6 {
		proto, set, off, n, portReg = unix.NFPROTO_IPV6, "spoofed6", 24, 16, 12
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Payload{DestRegister: portReg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: set},
		&expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, ReturnMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
		&expr.Counter{},
	}
}

// Remove takes away every rule, route and table Apply made.
func (m *Manager) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	have, err := m.ourRules()
	errs = append(errs, err)
	for i := range have {
		if err := m.h.RuleDel(&have[i]); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("removing routing rule: %w", err))
		}
	}
	for _, fam := range families {
		routes, err := m.h.RouteListFiltered(fam, &netlink.Route{Table: Table}, netlink.RT_FILTER_TABLE)
		errs = append(errs, err)
		for i := range routes {
			if err := m.h.RouteDel(&routes[i]); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("removing route: %w", err))
			}
		}
	}
	if tables, err := m.nft.ListTablesOfFamily(nftables.TableFamilyINet); err == nil {
		for _, t := range tables {
			if t.Name == nftTable {
				m.nft.DelTable(t)
				errs = append(errs, m.nft.Flush())
			}
		}
	}
	return errors.Join(errs...)
}

// Counters are the packet counts of the nftables rules.
type Counters struct {
	Dropped  map[string]uint64 // "iface:port"
	Returned uint64            // replies pulled back to connections from a client's address
}

// Counters reads the rules' counters.
func (m *Manager) Counters() (Counters, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := Counters{Dropped: map[string]uint64{}}
	t := m.table()
	rules, err := m.nft.GetRules(t, &nftables.Chain{Name: "prerouting", Table: t})
	if err != nil {
		return out, err
	}
	for _, r := range rules {
		var iface string
		var port uint16
		var pkts uint64
		var lookup, drop bool
		for i, e := range r.Exprs {
			switch e := e.(type) {
			case *expr.Cmp:
				if i > 0 {
					if mt, ok := r.Exprs[i-1].(*expr.Meta); ok && mt.Key == expr.MetaKeyIIFNAME {
						iface = strings.TrimRight(string(e.Data), "\x00")
					}
					if _, ok := r.Exprs[i-1].(*expr.Payload); ok && len(e.Data) == 2 {
						port = binary.BigEndian.Uint16(e.Data)
					}
				}
			case *expr.Counter:
				pkts = e.Packets
			case *expr.Lookup:
				lookup = true
			case *expr.Verdict:
				drop = e.Kind == expr.VerdictDrop
			}
		}
		switch {
		case drop:
			out.Dropped[fmt.Sprintf("%s:%d", iface, port)] += pkts
		case lookup:
			out.Returned += pkts
		}
	}
	return out, nil
}

// Ingress returns the name of the interface the appliance reaches addr
// through: for a client, the interface its connection came in on.
func (m *Manager) Ingress(addr netip.Addr) (string, error) {
	routes, err := m.h.RouteGet(addr.Unmap().AsSlice())
	if err != nil || len(routes) == 0 {
		return "", fmt.Errorf("no route to %s: %v", addr, err)
	}
	l, err := m.h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", err
	}
	return l.Attrs().Name, nil
}

// spoofKey is the set element of a (client address, port) pair: the
// address, the port in network order, padded to the 32-bit registers.
func spoofKey(a netip.AddrPort) (set string, key []byte) {
	addr := a.Addr().Unmap()
	key = append(key, addr.AsSlice()...)
	key = binary.BigEndian.AppendUint16(key, a.Port())
	key = append(key, 0, 0)
	if addr.Is4() {
		return "spoofed4", key
	}
	return "spoofed6", key
}
