package intercept

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Feature is a kernel feature interception needs, and whether the
// running kernel has it (Err nil).
type Feature struct {
	Name string // what it is, with the kernel option
	Err  error
}

// Probe tries, each alone and undone at once, what Apply and Dial need:
// FIB rules matching TCP ports, transparent sockets, nftables sets of
// address and port pairs with timeouts, and setting the packet mark.
func (m *Manager) Probe() []Feature {
	return []Feature{
		{"routing rules matching TCP ports (CONFIG_IP_MULTIPLE_TABLES, FIB rules with ipproto/dport)", m.probeRule()},
		{"transparent sockets (IP_TRANSPARENT)", probeTransparent()},
		{"nftables sets of address and port with timeouts, and meta mark set (CONFIG_NF_TABLES_INET)", m.probeNFT()},
	}
}

// Missing is the error naming every feature of fs the kernel lacks, nil
// when it has them all.
func Missing(fs []Feature) error {
	var errs []error
	for _, f := range fs {
		if f.Err != nil {
			errs = append(errs, fmt.Errorf("transparent mode needs %s, which this kernel refuses: %v", f.Name, f.Err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) probeRule() error {
	r := netlink.NewRule()
	r.Family, r.Table, r.Priority = unix.AF_INET, Table, rulePriority-1
	r.IifName, r.IPProto = "lo", unix.IPPROTO_TCP
	r.Dport = netlink.NewRulePortRange(9, 9)
	if err := m.h.RuleAdd(r); err != nil {
		return err
	}
	return m.h.RuleDel(r)
}

func probeTransparent() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1)
}

func (m *Manager) probeNFT() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.nft.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable + "_probe"})
	defer func() {
		m.nft.DelTable(t)
		m.nft.Flush()
	}()
	for _, set := range returnSets(t) {
		if err := m.nft.AddSet(set, nil); err != nil {
			return err
		}
	}
	c := m.nft.AddChain(&nftables.Chain{Name: "probe", Table: t})
	for _, v6 := range []bool{false, true} {
		m.nft.AddRule(&nftables.Rule{Table: t, Chain: c, Exprs: returnExprs(v6)})
	}
	return m.nft.Flush()
}
