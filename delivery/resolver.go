package delivery

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Resolver looks up MX, address and PTR records with its own DNS client
// (github.com/miekg/dns), so that the servers are those of the appliance
// configuration rather than the machine's. Answers are cached for their
// TTL (at most an hour; negative answers at most five minutes), and
// positive ones for at least the minimum SetCache sets; SetCache also
// turns the cache off.
//
// Errors are *net.DNSError: IsNotFound for NXDOMAIN (and, for LookupHost
// and LookupAddr, for names without records of the asked types),
// IsTemporary/IsTimeout for SERVFAIL, refusals and timeouts.
type Resolver struct {
	// Timeout bounds one query to one server (default 3s).
	Timeout time.Duration

	mu      sync.Mutex
	servers []string
	cache   map[cacheKey]cacheEntry
	noCache bool
	minTTL  time.Duration
	noTCP   bool // a truncated answer is not asked again over TCP
	// resolvConf is the file the servers come from when none are set
	// (see SetResolvConf); fromFile says they do now, read when the file
	// had modification time fileTime, last looked at at checked.
	resolvConf string
	fromFile   bool
	fileTime   time.Time
	checked    time.Time
	now        func() time.Time
}

// resolvConfCheck is how often a resolver whose servers come from
// resolv.conf looks whether the file changed (a DHCP client rewrites it
// when it gets or renews a lease, possibly after mail started).
const resolvConfCheck = 2 * time.Second

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	msg     *dns.Msg
	expires time.Time
}

const (
	maxCacheEntries = 10000
	maxTTL          = time.Hour
	maxNegativeTTL  = 5 * time.Minute
)

// NewResolver returns a resolver asking servers ("127.0.0.1:53") in order;
// with none it uses the name servers of /etc/resolv.conf.
func NewResolver(servers []string) *Resolver {
	r := &Resolver{cache: map[cacheKey]cacheEntry{}, resolvConf: "/etc/resolv.conf", now: time.Now}
	r.SetServers(servers)
	return r
}

// SetResolvConf sets the file the name servers come from when SetServers
// sets none (default /etc/resolv.conf) and, if that is the case now, reads
// it.
func (r *Resolver) SetResolvConf(path string) {
	r.mu.Lock()
	r.resolvConf = path
	if r.fromFile {
		r.readResolvConf()
	}
	r.mu.Unlock()
}

// readResolvConf takes the servers from r.resolvConf (127.0.0.1:53 when it
// lists none) and empties the cache. r.mu is held.
func (r *Resolver) readResolvConf() {
	r.checked = r.now()
	r.fileTime = time.Time{}
	if fi, err := os.Stat(r.resolvConf); err == nil {
		r.fileTime = fi.ModTime()
	}
	r.servers = ResolvConfServers(r.resolvConf)
	if len(r.servers) == 0 {
		r.servers = []string{"127.0.0.1:53"}
	}
	r.cache = map[cacheKey]cacheEntry{}
}

// followResolvConf reads resolv.conf again when the servers come from it
// and it changed since. r.mu is held.
func (r *Resolver) followResolvConf() {
	if !r.fromFile || r.now().Sub(r.checked) < resolvConfCheck {
		return
	}
	r.checked = r.now()
	var mod time.Time
	if fi, err := os.Stat(r.resolvConf); err == nil {
		mod = fi.ModTime()
	}
	if !mod.Equal(r.fileTime) {
		r.readResolvConf()
	}
}

// SetServers replaces the name servers and empties the cache. With none,
// they are those of resolv.conf (see SetResolvConf), read again whenever
// the file changes.
func (r *Resolver) SetServers(servers []string) {
	var list []string
	for _, s := range servers {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), "53")
		}
		list = append(list, s)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fromFile = len(list) == 0
	if r.fromFile {
		r.readResolvConf()
		return
	}
	r.servers = list
	r.cache = map[cacheKey]cacheEntry{}
}

// SetCache turns the answer cache on or off (off empties it) and sets
// the least time a positive answer is kept, whatever its TTL (`config
// system dns` cache and cache-min-ttl); 0 keeps answers for their TTL.
func (r *Resolver) SetCache(on bool, minTTL time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !on {
		clear(r.cache)
	}
	r.noCache, r.minTTL = !on, max(minTTL, 0)
}

// SetTCPRetry says whether a truncated UDP answer is asked again over
// TCP (`config system dns` truncate-handling tcp-retry, the default) or
// used as it is (disable).
func (r *Resolver) SetTCPRetry(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.noTCP = !on
}

// ResolvConfServers returns the name servers (host:port) of a resolv.conf
// file; none when it cannot be read.
func ResolvConfServers(path string) []string {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out
}

// Servers returns the name servers in use.
func (r *Resolver) Servers() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.followResolvConf()
	return slices.Clone(r.servers)
}

func dnsErr(name, server, text string, notFound, temporary, timeout bool) *net.DNSError {
	return &net.DNSError{Err: text, Name: name, Server: server, IsNotFound: notFound, IsTemporary: temporary, IsTimeout: timeout}
}

// query returns a NOERROR or NXDOMAIN answer for name/qtype.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	name = dns.Fqdn(strings.ToLower(name))
	key := cacheKey{name, qtype}
	now := time.Now()
	r.mu.Lock()
	r.followResolvConf()
	servers, tcpRetry := r.servers, !r.noTCP
	if e, ok := r.cache[key]; ok && !r.noCache {
		if now.Before(e.expires) {
			r.mu.Unlock()
			return e.msg, nil
		}
		delete(r.cache, key)
	}
	r.mu.Unlock()

	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	req.RecursionDesired = true
	req.SetEdns0(1232, false)

	var lastErr error = dnsErr(name, "", "no name servers", false, true, false)
	for attempt := 0; attempt < 2; attempt++ {
		for _, server := range servers {
			if err := ctx.Err(); err != nil {
				return nil, dnsErr(name, server, err.Error(), false, true, errors.Is(err, context.DeadlineExceeded))
			}
			resp, err := exchange(ctx, req, server, timeout, tcpRetry)
			if err != nil {
				var ne net.Error
				isTimeout := errors.As(err, &ne) && ne.Timeout()
				lastErr = dnsErr(name, server, err.Error(), false, true, isTimeout)
				continue
			}
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				r.store(key, resp, now)
				return resp, nil
			default:
				lastErr = dnsErr(name, server, "server misbehaving: "+dns.RcodeToString[resp.Rcode], false, true, false)
			}
		}
	}
	return nil, lastErr
}

func exchange(ctx context.Context, req *dns.Msg, server string, timeout time.Duration, tcpRetry bool) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: timeout, UDPSize: 1232}
	resp, _, err := c.ExchangeContext(ctx, req, server)
	if err == nil && resp.Truncated && tcpRetry {
		c = &dns.Client{Net: "tcp", Timeout: timeout}
		resp, _, err = c.ExchangeContext(ctx, req, server)
	}
	if err == nil && resp.Id != req.Id {
		err = errors.New("reply id mismatch")
	}
	return resp, err
}

func (r *Resolver) store(key cacheKey, m *dns.Msg, now time.Time) {
	ttl := time.Duration(-1)
	for _, rr := range m.Answer {
		if t := time.Duration(rr.Header().Ttl) * time.Second; ttl < 0 || t < ttl {
			ttl = t
		}
	}
	if len(m.Answer) == 0 {
		ttl = 0
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = min(time.Duration(soa.Minttl), time.Duration(soa.Hdr.Ttl)) * time.Second
			}
		}
		ttl = min(ttl, maxNegativeTTL)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(m.Answer) > 0 {
		ttl = max(ttl, r.minTTL)
	}
	ttl = min(ttl, max(maxTTL, r.minTTL))
	if ttl <= 0 || r.noCache {
		return
	}
	if len(r.cache) >= maxCacheEntries {
		for k, e := range r.cache {
			if now.After(e.expires) || len(r.cache) >= maxCacheEntries {
				delete(r.cache, k)
			}
		}
	}
	r.cache[key] = cacheEntry{msg: m, expires: now.Add(ttl)}
}

// MX is one mail exchanger. Host has no trailing dot; "." is the null MX.
type MX struct {
	Host string
	Pref uint16
}

// LookupMX returns the MX records of domain by preference, in random
// order among equal preferences. A domain without MX records gives an
// empty list and no error (implicit MX); NXDOMAIN gives IsNotFound.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	m, err := r.query(ctx, domain, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if m.Rcode == dns.RcodeNameError {
		return nil, dnsErr(strings.TrimSuffix(domain, "."), "", "no such domain", true, false, false)
	}
	var out []MX
	for _, rr := range m.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			h := strings.ToLower(mx.Mx)
			if h != "." {
				h = strings.TrimSuffix(h, ".")
			}
			out = append(out, MX{Host: h, Pref: mx.Preference})
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	slices.SortStableFunc(out, func(a, b MX) int { return int(a.Pref) - int(b.Pref) })
	return out, nil
}

// LookupHost returns the IPv4 and then the IPv6 addresses of host. A
// literal address is returned as is.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	type res struct {
		m   *dns.Msg
		err error
	}
	var v4, v6 res
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		v6.m, v6.err = r.query(ctx, host, dns.TypeAAAA)
	}()
	v4.m, v4.err = r.query(ctx, host, dns.TypeA)
	wg.Wait()
	var addrs []netip.Addr
	nx := 0
	for _, x := range []res{v4, v6} {
		if x.err != nil {
			continue
		}
		if x.m.Rcode == dns.RcodeNameError {
			nx++
		}
		for _, rr := range x.m.Answer {
			switch v := rr.(type) {
			case *dns.A:
				if a, ok := netip.AddrFromSlice(v.A.To4()); ok {
					addrs = append(addrs, a)
				}
			case *dns.AAAA:
				if a, ok := netip.AddrFromSlice(v.AAAA); ok {
					addrs = append(addrs, a)
				}
			}
		}
	}
	name := strings.TrimSuffix(host, ".")
	switch {
	case len(addrs) > 0:
		return addrs, nil
	case v4.err != nil:
		return nil, v4.err
	case v6.err != nil:
		return nil, v6.err
	case nx > 0:
		return nil, dnsErr(name, "", "no such host", true, false, false)
	}
	return nil, dnsErr(name, "", "no address records", true, false, false)
}

// LookupAddr returns the first PTR name of ip, without the trailing dot
// (reverse DNS of SMTP clients).
func (r *Resolver) LookupAddr(ctx context.Context, ip netip.Addr) (string, error) {
	if !ip.IsValid() {
		return "", dnsErr("", "", "invalid address", true, false, false)
	}
	rev, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return "", dnsErr(ip.String(), "", err.Error(), true, false, false)
	}
	m, err := r.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return "", err
	}
	for _, rr := range m.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			return strings.TrimSuffix(p.Ptr, "."), nil
		}
	}
	if m.Rcode == dns.RcodeNameError {
		return "", dnsErr(rev, "", "no such host", true, false, false)
	}
	return "", dnsErr(rev, "", "no PTR record", true, false, false)
}
