package appliance

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"mailgate/config"
)

// networkFile is read by the image's init at boot (image/init/netconfig.go):
// present, the first interface gets this static configuration; absent, it
// uses DHCP. The format is gokrazy DHCP client's static lease.
const networkFile = "network.json"

type staticLease struct {
	IP      net.IP
	Netmask net.IPMask
	Router  net.IP   `json:",omitempty"`
	DNS     []net.IP `json:",omitempty"`
}

// StaticNetwork renders the first interface of c as a static lease, or
// nil when it uses DHCP. The default route (system route, destination
// 0.0.0.0/0) is the router; system dns gives the name servers.
func StaticNetwork(c *config.Config) (*staticLease, error) {
	if len(c.System.Interface) == 0 || c.System.Interface[0].Mode != "static" {
		return nil, nil
	}
	p, err := netip.ParsePrefix(c.System.Interface[0].IP)
	if err != nil || !p.Addr().Is4() {
		return nil, fmt.Errorf("system interface %s: static mode needs an IPv4 address/prefix, not %q", c.System.Interface[0].Name, c.System.Interface[0].IP)
	}
	l := &staticLease{IP: net.IP(p.Addr().AsSlice()), Netmask: net.CIDRMask(p.Bits(), 32)}
	for _, r := range c.System.Route {
		if r.Destination == "0.0.0.0/0" && r.Gateway != "" {
			l.Router = net.ParseIP(r.Gateway).To4()
			break
		}
	}
	for _, d := range []string{c.System.DNS.Primary, c.System.DNS.Secondary} {
		if ip := net.ParseIP(d).To4(); ip != nil {
			l.DNS = append(l.DNS, ip)
		}
	}
	return l, nil
}

// writeNetwork keeps the network file in line with the configuration; it
// reports whether the file changed (the change applies at the next boot).
func writeNetwork(dataDir string, c *config.Config) (bool, error) {
	path := filepath.Join(dataDir, networkFile)
	l, err := StaticNetwork(c)
	if err != nil {
		return false, err
	}
	if l == nil {
		err := os.Remove(path)
		if os.IsNotExist(err) {
			return false, nil
		}
		return err == nil, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return false, err
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

// addresses lists the global unicast addresses of the machine.
func addresses() []string {
	var out []string
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() {
				out = append(out, i.Name+" "+n.String())
			}
		}
	}
	slices.Sort(out)
	return out
}

// announceAddresses prints the machine's addresses on the console when
// they appear or change (DHCP answers after the appliance started).
func (a *Appliance) announceAddresses(stop <-chan struct{}) {
	last := strings.Join(addresses(), ", ")
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := strings.Join(addresses(), ", ")
		if now == last {
			continue
		}
		last = now
		if now == "" {
			now = "none"
		}
		fmt.Fprintf(a.opt.Console, "mailgate: IP addresses: %s (SSH CLI port %s, web UI port %s)\n", now, port(a.SSHAddr()), port(a.WebAddr()))
	}
}

func port(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "-"
	}
	return p
}
