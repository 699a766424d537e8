package intercept

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// transparent sets IP_TRANSPARENT (and IPV6_TRANSPARENT) on a socket: a
// listener then accepts connections addressed to any address, and an
// outgoing socket may bind an address that is not the appliance's.
func transparent(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		// IPV6_TRANSPARENT for IPv6 and dual-stack sockets, else
		// IP_TRANSPARENT: both set the one flag of the socket.
		if network != "tcp4" {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1); serr == nil {
				return
			}
		}
		if network != "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("IP_TRANSPARENT: %w", serr)
	}
	return nil
}

// Listen opens a transparent TCP listener on addr (e.g. ":25"): it
// accepts the connections the interception rules deliver, whatever their
// destination; a connection's LocalAddr is the destination the client
// addressed.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: transparent}
	return lc.Listen(ctx, "tcp", addr)
}

// OriginalDestination is where the client of an intercepted connection
// meant to connect.
func OriginalDestination(c net.Conn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// Spoofer connects from clients' addresses, registering each connection
// in the return-path set so that the server's replies come back to it.
type Spoofer struct {
	m *Manager
	// Lifetime bounds how long a connection's return path stays without
	// being refreshed: a crash leaves no permanent entry.
	Lifetime time.Duration
}

// Spoofer returns a Spoofer whose return paths go into m's sets.
func (m *Manager) Spoofer() *Spoofer {
	return &Spoofer{m: m, Lifetime: 2 * time.Hour}
}

func (s *Spoofer) set(name string) *nftables.Set {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: nftTable}
	for _, set := range returnSets(t) {
		if set.Name == name {
			return set
		}
	}
	return nil
}

func (s *Spoofer) add(a netip.AddrPort) error {
	name, key := spoofKey(a)
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if err := s.m.nft.SetAddElements(s.set(name), []nftables.SetElement{{Key: key, Timeout: s.Lifetime}}); err != nil {
		return err
	}
	return s.m.nft.Flush()
}

func (s *Spoofer) del(a netip.AddrPort) error {
	name, key := spoofKey(a)
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if err := s.m.nft.SetDeleteElements(s.set(name), []nftables.SetElement{{Key: key}}); err != nil {
		return err
	}
	return s.m.nft.Flush()
}

// Dial connects to dst from the address client (a port of its own, never
// the client's). The return path is in place before the SYN leaves, and
// taken away when the connection is closed.
func (s *Spoofer) Dial(ctx context.Context, client netip.Addr, dst netip.AddrPort) (net.Conn, error) {
	client = client.Unmap()
	network := "tcp4"
	if client.Is6() {
		network = "tcp6"
	}
	var lastErr error
	for range 8 {
		local := netip.AddrPortFrom(client, uint16(20000+rand.IntN(40000)))
		if err := s.add(local); err != nil {
			return nil, fmt.Errorf("return path for %s: %w", local, err)
		}
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(local), Control: transparent}
		c, err := d.DialContext(ctx, network, dst.String())
		if err == nil {
			return &spoofedConn{Conn: c, s: s, local: local}, nil
		}
		s.del(local)
		lastErr = err
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	return nil, lastErr
}

type spoofedConn struct {
	net.Conn
	s     *Spoofer
	local netip.AddrPort
	once  sync.Once
}

func (c *spoofedConn) Close() error {
	err := c.Conn.Close()
	// The entry goes with a delay: the last packets of the close (FIN,
	// ACK) still come back through it.
	c.once.Do(func() { time.AfterFunc(5*time.Second, func() { c.s.del(c.local) }) })
	return err
}
