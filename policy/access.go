package policy

import (
	"net/netip"
	"slices"
	"strconv"

	"mailgate/config"
)

// KernelInterface is a network interface as the kernel reports it.
type KernelInterface struct {
	Index    int
	Name     string
	Loopback bool
	Addrs    []netip.Addr
}

// PortName is the configuration name of the kernel's non-loopback
// interfaces in index order: port1 is the first (eth0 on the appliance),
// port2 the second, and so on. It returns "" for a loopback interface or
// one not in kernel.
func PortName(kernel []KernelInterface, name string) string {
	ifs := slices.Clone(kernel)
	slices.SortFunc(ifs, func(a, b KernelInterface) int { return a.Index - b.Index })
	n := 0
	for _, k := range ifs {
		if k.Loopback {
			continue
		}
		n++
		if k.Name == name {
			return "port" + strconv.Itoa(n)
		}
	}
	return ""
}

// InterfaceAccess decides whether service ("ssh", "https", "smtp",
// "smtps") may be reached on local, the address a connection came in on,
// by the allowaccess or mailaccess (Allows) of the `system interface` entry of the interface that holds
// it. Loopback addresses are always allowed: they are the appliance
// itself. So is an address no interface holds (the table may be a moment
// old) and an interface without an entry, which has the factory's
// access. kernel returns the kernel's interfaces; it is only called
// when some entry leaves service out. port is the interface's
// configuration name ("" when none or not looked up).
func InterfaceAccess(cfg []config.Interface, kernel func() []KernelInterface, local netip.Addr, service string) (allowed bool, port string) {
	local = local.Unmap()
	if local.IsLoopback() || !slices.ContainsFunc(cfg, func(ifc config.Interface) bool { return !Allows(ifc, service) }) {
		return true, ""
	}
	table := kernel()
	for _, k := range table {
		if k.Loopback || !slices.Contains(k.Addrs, local) {
			continue
		}
		port = PortName(table, k.Name)
		for _, ifc := range cfg {
			if ifc.Name == port {
				return Allows(ifc, service), port
			}
		}
		return true, port
	}
	return true, ""
}

// Allows reports whether an interface entry lets service in: a mail
// service ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s") by its
// mailaccess, the others ("ssh", "https", "ping") by its allowaccess.
func Allows(ifc config.Interface, service string) bool {
	if AccessAttribute(service) == "mailaccess" {
		return slices.Contains(ifc.MailAccess, service)
	}
	return slices.Contains(ifc.AllowAccess, service)
}

// AccessAttribute names the interface attribute that lists service.
func AccessAttribute(service string) string {
	switch service {
	case "smtp", "smtps", "imap", "imaps", "pop3", "pop3s":
		return "mailaccess"
	}
	return "allowaccess"
}

// PingAllowed reports whether any configured interface allows ping. The
// kernel answers echo requests for all interfaces or none, so ping is
// answered when one interface allows it.
func PingAllowed(cfg []config.Interface) bool {
	if len(cfg) == 0 {
		return true
	}
	for _, ifc := range cfg {
		if slices.Contains(ifc.AllowAccess, "ping") {
			return true
		}
	}
	return false
}
