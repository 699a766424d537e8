// Package dnstest is an authoritative DNS server for tests: it answers
// from records the test adds, on 127.0.0.1 over UDP and TCP, so code that
// resolves MX, A, AAAA and PTR records runs against a real DNS exchange
// without touching the network beyond loopback.
//
// Names the server knows nothing about get NXDOMAIN; a known name without
// records of the asked type gets an empty NOERROR answer (NODATA) with an
// SOA record; names marked with SetServFail get SERVFAIL and names marked
// with SetDrop get no answer at all (a timeout for the client).
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Server is a running test DNS server.
type Server struct {
	udp, tcp *dns.Server
	addr     string

	mu       sync.Mutex
	ttl      uint32
	records  map[string][]dns.RR // owner name (lower-case, fqdn) -> records
	servfail map[string]bool
	drop     map[string]bool
	queries  int
}

// Start starts a server for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1")
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Listen starts a server on host (a loopback address) at a random port
// that is free for both UDP and TCP. Close stops it.
func Listen(host string) (*Server, error) {
	s := &Server{records: map[string][]dns.RR{}, servfail: map[string]bool{}, drop: map[string]bool{}}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.serve(pc, ln)
		return s, nil
	}
	return nil, fmt.Errorf("no port free for UDP and TCP: %w", lastErr)
}

// ListenAt starts a server at exactly addr ("127.0.0.53:53"), for code
// that takes a server's address only and asks it on port 53 (binding a
// port below 1024 needs root or CAP_NET_BIND_SERVICE). Close stops it.
func ListenAt(addr string) (*Server, error) {
	s := &Server{records: map[string][]dns.RR{}, servfail: map[string]bool{}, drop: map[string]bool{}}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, err
	}
	s.serve(pc, ln)
	return s, nil
}

func (s *Server) serve(pc net.PacketConn, ln net.Listener) {
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: ln, Handler: s}
	go s.udp.ActivateAndServe()
	go s.tcp.ActivateAndServe()
}

// Addr is the server's "127.0.0.1:port", for resolver configuration.
func (s *Server) Addr() string { return s.addr }

// Close stops the server.
func (s *Server) Close() {
	if s.udp != nil {
		s.udp.Shutdown()
	}
	if s.tcp != nil {
		s.tcp.Shutdown()
	}
}

// SetTTL sets the TTL of records added from now on (default 0: clients
// should not cache, so tests may change records at any time).
func (s *Server) SetTTL(seconds uint32) {
	s.mu.Lock()
	s.ttl = seconds
	s.mu.Unlock()
}

// Queries counts the questions answered (or dropped) so far.
func (s *Server) Queries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(strings.TrimSpace(name))) }

func (s *Server) add(rr dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := rr.Header()
	h.Name = fqdn(h.Name)
	h.Class = dns.ClassINET
	h.Ttl = s.ttl
	for _, old := range s.records[h.Name] {
		if dns.IsDuplicate(old, rr) {
			return // an RRset is a set (RFC 2181 5): adding a record twice changes nothing
		}
	}
	s.records[h.Name] = append(s.records[h.Name], rr)
}

func (s *Server) hdr(name string, typ uint16) dns.RR_Header {
	return dns.RR_Header{Name: fqdn(name), Rrtype: typ, Class: dns.ClassINET}
}

// AddMX adds an MX record: domain is served by host at preference pref.
func (s *Server) AddMX(domain string, pref uint16, host string) {
	s.add(&dns.MX{Hdr: s.hdr(domain, dns.TypeMX), Preference: pref, Mx: fqdn(host)})
}

// AddNullMX publishes RFC 7505 "no mail" for domain (MX 0 ".").
func (s *Server) AddNullMX(domain string) {
	s.add(&dns.MX{Hdr: s.hdr(domain, dns.TypeMX), Preference: 0, Mx: "."})
}

// AddA adds an IPv4 address record. It panics on a malformed address.
func (s *Server) AddA(host, ip string) {
	a := netip.MustParseAddr(ip)
	if !a.Is4() {
		panic("dnstest: AddA needs an IPv4 address: " + ip)
	}
	s.add(&dns.A{Hdr: s.hdr(host, dns.TypeA), A: net.IP(a.AsSlice())})
}

// AddAAAA adds an IPv6 address record. It panics on a malformed address.
func (s *Server) AddAAAA(host, ip string) {
	a := netip.MustParseAddr(ip)
	if !a.Is6() || a.Is4In6() {
		panic("dnstest: AddAAAA needs an IPv6 address: " + ip)
	}
	s.add(&dns.AAAA{Hdr: s.hdr(host, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
}

// AddPTR adds a reverse record: ip resolves to name.
func (s *Server) AddPTR(ip, name string) {
	rev, err := dns.ReverseAddr(ip)
	if err != nil {
		panic("dnstest: AddPTR: " + err.Error())
	}
	s.add(&dns.PTR{Hdr: s.hdr(rev, dns.TypePTR), Ptr: fqdn(name)})
}

// AddCNAME makes name an alias of target.
func (s *Server) AddCNAME(name, target string) {
	s.add(&dns.CNAME{Hdr: s.hdr(name, dns.TypeCNAME), Target: fqdn(target)})
}

// AddTXT adds a TXT record (one string per argument).
func (s *Server) AddTXT(name string, txt ...string) {
	s.add(&dns.TXT{Hdr: s.hdr(name, dns.TypeTXT), Txt: txt})
}

// Remove deletes every record of name and clears its SERVFAIL/drop marks.
func (s *Server) Remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := fqdn(name)
	delete(s.records, n)
	delete(s.servfail, n)
	delete(s.drop, n)
}

// SetServFail makes every question about name fail with SERVFAIL.
func (s *Server) SetServFail(name string) {
	s.mu.Lock()
	s.servfail[fqdn(name)] = true
	s.mu.Unlock()
}

// SetDrop makes the server ignore questions about name: the client times
// out.
func (s *Server) SetDrop(name string) {
	s.mu.Lock()
	s.drop[fqdn(name)] = true
	s.mu.Unlock()
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)

	s.mu.Lock()
	s.queries++
	if s.drop[name] {
		s.mu.Unlock()
		return
	}
	if s.servfail[name] {
		s.mu.Unlock()
		m.Authoritative = false
		m.Rcode = dns.RcodeServerFailure
		w.WriteMsg(m)
		return
	}
	known := s.answer(m, name, q.Qtype, 0)
	if !known {
		m.Rcode = dns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{s.soa(name)}
	}
	s.mu.Unlock()
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), false)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := 512
		if opt := req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	w.WriteMsg(m)
}

// answer appends the records of name of type qtype (following CNAMEs) and
// reports whether the name exists. s.mu is held.
func (s *Server) answer(m *dns.Msg, name string, qtype uint16, depth int) bool {
	rrs, ok := s.records[name]
	if !ok {
		// An empty non-terminal (a parent of known names) exists too.
		for owner := range s.records {
			if strings.HasSuffix(owner, "."+name) {
				return true
			}
		}
		return false
	}
	matched := false
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
			m.Answer = append(m.Answer, dns.Copy(rr))
			matched = true
		}
	}
	if !matched && qtype != dns.TypeCNAME && depth < 8 {
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok {
				m.Answer = append(m.Answer, dns.Copy(c))
				s.answer(m, c.Target, qtype, depth+1)
				break
			}
		}
	}
	return true
}

func (s *Server) soa(name string) dns.RR {
	zone := "test."
	if labels := dns.SplitDomainName(name); len(labels) > 0 {
		zone = dns.Fqdn(labels[len(labels)-1])
	}
	return &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns: "ns." + zone, Mbox: "hostmaster." + zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: s.ttl}
}
