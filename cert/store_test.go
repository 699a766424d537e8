package cert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for stores and TLS clients.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()) }

// pki builds entries issued by the shared identity.
type pki struct {
	t     *testing.T
	id    *Identity
	roots *x509.CertPool
}

func newPKI(t *testing.T) *pki {
	id := testIdentity(t)
	roots := x509.NewCertPool()
	roots.AddCert(parseCertPEM(t, id.CACertPEM))
	return &pki{t: t, id: id, roots: roots}
}

func (p *pki) factory() Entry {
	return Entry{Name: FactoryName, ChainPEM: p.id.FactoryCertPEM, KeyPEM: p.id.FactoryKeyPEM}
}

// entry issues a certificate named name for sans, valid from now-1h until
// notAfter.
func (p *pki) entry(name string, notAfter time.Time, sans ...string) Entry {
	p.t.Helper()
	e := issueT(p.t, p.id, name, sans, base.Add(-time.Hour), notAfter)
	e.Name = name
	return e
}

func mustStore(t *testing.T, entries []Entry, def string, now func() time.Time) *Store {
	t.Helper()
	s, errs := NewStore(entries, def, now)
	if len(errs) != 0 {
		t.Fatalf("NewStore: %v", errs)
	}
	return s
}

// lookupCN returns the CN of the certificate Lookup chooses, or "error: ...".
func lookupCN(s *Store, name string) string {
	c, err := s.Lookup(name)
	if err != nil {
		return "error: " + err.Error()
	}
	return c.Leaf.Subject.CommonName
}

// handshake runs a real TLS handshake over net.Pipe between a server using
// getCert and a client asking for serverName. With roots set the client
// verifies the chain and the name at time now; otherwise it only records
// what it was given. It returns the leaf the server presented.
func handshake(t *testing.T, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), serverName string, roots *x509.CertPool, now func() time.Time) (*x509.Certificate, error) {
	t.Helper()
	sc, cc := net.Pipe()
	deadline := time.Now().Add(5 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	srvErr := make(chan error, 1)
	go func() {
		srv := tls.Server(sc, &tls.Config{GetCertificate: getCert, SessionTicketsDisabled: true})
		err := srv.Handshake()
		sc.Close()
		srvErr <- err
	}()
	cfg := &tls.Config{ServerName: serverName, RootCAs: roots, Time: now}
	if roots == nil {
		cfg.InsecureSkipVerify = true
	}
	cli := tls.Client(cc, cfg)
	err := cli.Handshake()
	cc.Close()
	<-srvErr
	if err != nil {
		return nil, err
	}
	return cli.ConnectionState().PeerCertificates[0], nil
}

func TestStoreLookupMatching(t *testing.T) {
	p := newPKI(t)
	far := base.Add(365 * 24 * time.Hour)
	s := mustStore(t, []Entry{
		p.factory(),
		p.entry("mail", far, "mail.example.com", "mx.example.com"),
		p.entry("wild", far.Add(time.Hour), "*.example.com"),
		p.entry("other", far, "other.example.org", "203.0.113.5"),
		p.entry("default", far, "default.example.net"),
	}, "default", func() time.Time { return base })

	cases := map[string]string{
		"mail.example.com":    "mail",
		"MAIL.Example.COM.":   "mail",    // case and trailing dot
		"mx.example.com":      "mail",    // second SAN
		"www.example.com":     "wild",    // wildcard, one label
		"WWW.EXAMPLE.COM":     "wild",    // wildcard, case-insensitive
		"a.b.example.com":     "default", // wildcard covers one label only
		"example.com":         "mg1",     // ...and not the bare domain, which Factory holds
		"*.example.com":       "default", // a pattern is not a name
		"other.example.org":   "other",
		"203.0.113.5":         "other", // IP SAN
		"unknown.example.net": "default",
		"":                    "default", // no SNI
		"mg1.example.com":     "mg1",     // exact SAN beats the later-expiring wildcard
	}
	for name, want := range cases {
		if got := lookupCN(s, name); got != want {
			t.Errorf("Lookup(%q) = %s, want %s", name, got, want)
		}
	}
	if got, want := s.Names(), []string{"Factory", "default", "mail", "other", "wild"}; !slices.Equal(got, want) {
		t.Errorf("Names = %q, want %q", got, want)
	}
}

func TestStorePrefersLatestExpiry(t *testing.T) {
	p := newPKI(t)
	soon, later := base.Add(24*time.Hour), base.Add(48*time.Hour)
	entries := []Entry{
		p.entry("soon", soon, "mail.example.com", "*.example.org"),
		p.entry("later", later, "mail.example.com", "*.example.org"),
		p.entry("soon2", soon, "mail.example.com", "*.example.org"),
	}
	clk := newClock(base)
	s := mustStore(t, entries, "", clk.now)
	if got := lookupCN(s, "mail.example.com"); got != "later" {
		t.Errorf("exact: got %s, want later", got)
	}
	if got := lookupCN(s, "x.example.org"); got != "later" {
		t.Errorf("wildcard: got %s, want later", got)
	}
	// Past "soon" only "later" is valid anyway; past "later" nothing is.
	clk.set(soon.Add(time.Minute))
	if got := lookupCN(s, "mail.example.com"); got != "later" {
		t.Errorf("after soon: got %s", got)
	}
	clk.set(later.Add(time.Second))
	if got := lookupCN(s, "mail.example.com"); got != "error: no valid certificate for mail.example.com" {
		t.Errorf("after later: got %s", got)
	}
}

func TestStoreExactBeatsLongerWildcard(t *testing.T) {
	p := newPKI(t)
	s := mustStore(t, []Entry{
		p.entry("wild", base.Add(1000*time.Hour), "*.example.com"),
		p.entry("exact", base.Add(10*time.Hour), "mail.example.com"),
	}, "", func() time.Time { return base })
	if got := lookupCN(s, "mail.example.com"); got != "exact" {
		t.Errorf("got %s, want exact", got)
	}
}

func TestStoreNeverServesInvalid(t *testing.T) {
	p := newPKI(t)
	valid := base.Add(30 * 24 * time.Hour)
	// Expired a day ago, issued two days ago.
	expired := issueT(t, p.id, "expired", []string{"old.example.com", "*.example.com"}, base.Add(-48*time.Hour), base.Add(-24*time.Hour))
	expired.Name = "expired"
	// Not valid until tomorrow.
	future := issueT(t, p.id, "future", []string{"new.example.com"}, base.Add(24*time.Hour), base.Add(48*time.Hour))
	future.Name = "future"
	now := func() time.Time { return base }

	t.Run("only exact match expired", func(t *testing.T) {
		s := mustStore(t, []Entry{expired, p.factory(), p.entry("default", valid, "default.example.com")}, "default", now)
		if got := lookupCN(s, "old.example.com"); got != "default" {
			t.Errorf("got %s, want default", got)
		}
		if got := lookupCN(s, "x.example.com"); got != "default" {
			t.Errorf("expired wildcard: got %s, want default", got)
		}
	})
	t.Run("only exact match not yet valid", func(t *testing.T) {
		s := mustStore(t, []Entry{future, p.entry("default", valid, "default.example.com")}, "default", now)
		if got := lookupCN(s, "new.example.com"); got != "default" {
			t.Errorf("got %s, want default", got)
		}
	})
	t.Run("expired default falls back to Factory", func(t *testing.T) {
		s := mustStore(t, []Entry{expired, p.factory()}, "expired", now)
		for _, name := range []string{"", "unknown.example.net", "old.example.com"} {
			if got := lookupCN(s, name); got != "mg1" {
				t.Errorf("Lookup(%q) = %s, want Factory (mg1)", name, got)
			}
		}
	})
	t.Run("expired default still lets SAN matches through", func(t *testing.T) {
		s := mustStore(t, []Entry{expired, p.entry("mail", valid, "mail.example.com")}, "expired", now)
		if got := lookupCN(s, "mail.example.com"); got != "mail" {
			t.Errorf("got %s, want mail", got)
		}
		if got := lookupCN(s, "unknown.example.net"); got != "error: no valid certificate for unknown.example.net" {
			t.Errorf("got %s", got)
		}
		if got := lookupCN(s, ""); got != "error: no valid certificate for (no server name)" {
			t.Errorf("no SNI: got %s", got)
		}
	})
	t.Run("expired Factory is not served", func(t *testing.T) {
		s := mustStore(t, []Entry{p.factory()}, "", func() time.Time { return FactoryNotAfter.Add(time.Second) })
		if _, err := s.Lookup("mg1"); err == nil {
			t.Error("expired Factory served")
		}
		s = mustStore(t, []Entry{p.factory()}, "", func() time.Time { return FactoryNotAfter })
		if got := lookupCN(s, "mg1"); got != "mg1" {
			t.Errorf("at NotAfter exactly: got %s", got)
		}
	})
	t.Run("missing default falls back to Factory", func(t *testing.T) {
		s, errs := NewStore([]Entry{p.factory()}, "gone", now)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), `"gone"`) {
			t.Errorf("errs = %v, want one naming the missing default", errs)
		}
		if got := lookupCN(s, ""); got != "mg1" {
			t.Errorf("got %s", got)
		}
	})
}

func TestStoreClockMovesPastNotAfter(t *testing.T) {
	p := newPKI(t)
	end := base.Add(2 * time.Hour)
	clk := newClock(base)
	s := mustStore(t, []Entry{p.factory(), p.entry("short", end, "mail.example.com")}, "short", clk.now)
	if got := lookupCN(s, "mail.example.com"); got != "short" {
		t.Fatalf("before expiry: %s", got)
	}
	clk.set(end)
	if got := lookupCN(s, "mail.example.com"); got != "short" {
		t.Fatalf("at NotAfter: %s", got)
	}
	clk.set(end.Add(time.Second))
	for _, name := range []string{"mail.example.com", ""} {
		if got := lookupCN(s, name); got != "mg1" {
			t.Errorf("after expiry Lookup(%q) = %s, want Factory", name, got)
		}
	}
}

func TestNewStoreReportsBadEntries(t *testing.T) {
	p := newPKI(t)
	good := p.entry("good", base.Add(time.Hour), "good.example.com")
	other := p.entry("other", base.Add(time.Hour), "other.example.com")
	sealed, _ := Seal(p.id.DeviceKey, good.KeyPEM)
	entries := []Entry{
		good,
		{Name: "mismatch", ChainPEM: good.ChainPEM, KeyPEM: other.KeyPEM},
		{Name: "garbage", ChainPEM: []byte("junk"), KeyPEM: []byte("junk")},
		{Name: "empty"},
		{Name: "sealed", ChainPEM: good.ChainPEM, KeyPEM: []byte(sealed)},
		{Name: "", ChainPEM: good.ChainPEM, KeyPEM: good.KeyPEM},
		{Name: "good", ChainPEM: other.ChainPEM, KeyPEM: other.KeyPEM},
		{Name: "nokey", ChainPEM: good.ChainPEM},
	}
	s, errs := NewStore(entries, "mismatch", nil)
	if s == nil {
		t.Fatal("nil store")
	}
	if got := s.Names(); !slices.Equal(got, []string{"good"}) {
		t.Errorf("Names = %q", got)
	}
	joined := fmt.Sprint(errs)
	for _, want := range []string{`"mismatch": the private key does not match`, `"garbage"`, `"empty"`, `"sealed"`, "#6: no name", `"good": duplicate`, `"nokey": no private key`} {
		if !strings.Contains(joined, want) {
			t.Errorf("errors %q lack %q", joined, want)
		}
	}
	if len(errs) != 7 {
		t.Errorf("%d errors, want 7 (a failed default is not reported twice): %v", len(errs), errs)
	}
	// nil now means the wall clock; the good certificate is valid now.
	if got := lookupCN(s, "good.example.com"); got != "good" {
		t.Errorf("Lookup = %s", got)
	}

	// Nothing at all.
	s, errs = NewStore(nil, "", nil)
	if len(errs) != 0 || len(s.Names()) != 0 {
		t.Errorf("empty store: %v %q", errs, s.Names())
	}
	if _, err := s.Lookup("x"); err == nil || err.Error() != "no valid certificate for x" {
		t.Errorf("empty store Lookup: %v", err)
	}
	var nilStore *Store
	if _, err := nilStore.Lookup("x"); err == nil {
		t.Error("nil store Lookup succeeded")
	}
	if c, err := s.GetCertificate(nil); c != nil || err == nil {
		t.Error("GetCertificate(nil) on an empty store succeeded")
	}
}

func TestStoreServesFullChain(t *testing.T) {
	ch := newTestChain(t, "chain.example.com")
	p8, _ := x509.MarshalECPrivateKey(ch.leafKey)
	s := mustStore(t, []Entry{{
		Name:     "chain",
		ChainPEM: join(pemBlock("CERTIFICATE", ch.inter.Raw), pemBlock("CERTIFICATE", ch.leaf.Raw)),
		KeyPEM:   pemBlock("EC PRIVATE KEY", p8),
	}}, "chain", func() time.Time { return base })
	c, err := s.Lookup("chain.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificate) != 2 || !bytes.Equal(c.Certificate[0], ch.leaf.Raw) || !bytes.Equal(c.Certificate[1], ch.inter.Raw) {
		t.Fatal("chain not served leaf then intermediate")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ch.root)
	if _, err := handshake(t, s.GetCertificate, "chain.example.com", roots, func() time.Time { return base }); err != nil {
		t.Fatalf("client could not verify the served chain against the root: %v", err)
	}
}

func TestTLSHandshakeSNI(t *testing.T) {
	p := newPKI(t)
	far := base.Add(90 * 24 * time.Hour)
	expired := issueT(t, p.id, "expired", []string{"old.example.com"}, base.Add(-48*time.Hour), base.Add(-time.Hour))
	expired.Name = "expired"
	clk := newClock(base)
	s := mustStore(t, []Entry{
		p.factory(),
		p.entry("mail", far, "mail.example.com"),
		p.entry("wild", far, "*.example.org"),
		p.entry("default", far, "default.example.net"),
		expired,
	}, "default", clk.now)
	var h Holder
	h.Set(s)

	// Verified handshakes: the client checks chain, name and validity.
	for name, wantCN := range map[string]string{
		"mail.example.com": "mail",
		"smtp.example.org": "wild",
		"mg1.example.com":  "mg1",
		"localhost":        "mg1",
	} {
		leaf, err := handshake(t, h.GetCertificate, name, p.roots, clk.now)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if leaf.Subject.CommonName != wantCN {
			t.Errorf("%s: served %s, want %s", name, leaf.Subject.CommonName, wantCN)
		}
	}
	// Unknown names, names covered only by an expired certificate, and
	// no SNI at all get the default.
	for _, name := range []string{"unknown.example.com", "a.b.example.org", "old.example.com", ""} {
		leaf, err := handshake(t, h.GetCertificate, name, nil, nil)
		if err != nil {
			t.Errorf("%q: %v", name, err)
			continue
		}
		if leaf.Subject.CommonName != "default" {
			t.Errorf("%q: served %s, want default", name, leaf.Subject.CommonName)
		}
	}
	// Connecting by address sends no SNI; default.example.net does not
	// cover 127.0.0.1, so make Factory the default and verify the IP.
	h.Set(mustStore(t, []Entry{p.factory()}, FactoryName, clk.now))
	if _, err := handshake(t, h.GetCertificate, "127.0.0.1", p.roots, clk.now); err != nil {
		t.Errorf("127.0.0.1 against Factory: %v", err)
	}
}

func TestTLSHandshakeNeverServesExpired(t *testing.T) {
	p := newPKI(t)
	end := base.Add(time.Hour)
	clk := newClock(base)
	// "short" is the default and the only certificate for mail.example.com.
	s := mustStore(t, []Entry{p.entry("short", end, "mail.example.com"), p.factory()}, "short", clk.now)
	var h Holder
	h.Set(s)
	if leaf, err := handshake(t, h.GetCertificate, "mail.example.com", p.roots, clk.now); err != nil || leaf.Subject.CommonName != "short" {
		t.Fatalf("before expiry: %v %v", leaf, err)
	}
	// Same store, same config: time passes.
	clk.set(end.Add(time.Minute))
	for _, name := range []string{"mail.example.com", ""} {
		leaf, err := handshake(t, h.GetCertificate, name, nil, nil)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if leaf.Subject.CommonName != "mg1" {
			t.Errorf("%q: served %s after it expired, want Factory", name, leaf.Subject.CommonName)
		}
		if !leaf.NotAfter.After(clk.now()) {
			t.Errorf("%q: served a certificate expired at %v", name, leaf.NotAfter)
		}
	}
	// Without a Factory to fall back to, the handshake fails rather than
	// present the expired certificate.
	h.Set(mustStore(t, []Entry{p.entry("short", end, "mail.example.com")}, "short", clk.now))
	if leaf, err := handshake(t, h.GetCertificate, "mail.example.com", nil, nil); err == nil {
		t.Fatalf("handshake succeeded with %s", leaf.Subject.CommonName)
	}
}

func TestHolder(t *testing.T) {
	p := newPKI(t)
	var h Holder
	if h.Get() != nil {
		t.Fatal("zero Holder has a store")
	}
	if _, err := h.GetCertificate(&tls.ClientHelloInfo{ServerName: "x"}); err == nil {
		t.Fatal("zero Holder returned a certificate")
	}
	if _, err := handshake(t, h.GetCertificate, "mail.example.com", nil, nil); err == nil {
		t.Fatal("handshake succeeded without a store")
	}
	now := func() time.Time { return base }
	a := mustStore(t, []Entry{p.entry("a", base.Add(time.Hour), "mail.example.com")}, "a", now)
	b := mustStore(t, []Entry{p.entry("b", base.Add(time.Hour), "mail.example.com")}, "b", now)
	h.Set(a)
	if leaf, err := handshake(t, h.GetCertificate, "mail.example.com", nil, nil); err != nil || leaf.Subject.CommonName != "a" {
		t.Fatalf("store a: %v %v", leaf, err)
	}
	h.Set(b)
	if h.Get() != b {
		t.Fatal("Get does not return the store just set")
	}
	if leaf, err := handshake(t, h.GetCertificate, "mail.example.com", nil, nil); err != nil || leaf.Subject.CommonName != "b" {
		t.Fatalf("store b: %v %v", leaf, err)
	}
	h.Set(nil)
	if _, err := h.GetCertificate(nil); err == nil {
		t.Fatal("Holder returned a certificate after Set(nil)")
	}
}

func TestHolderConcurrentSwap(t *testing.T) {
	p := newPKI(t)
	now := func() time.Time { return base }
	stores := []*Store{
		mustStore(t, []Entry{p.entry("a", base.Add(time.Hour), "mail.example.com")}, "a", now),
		mustStore(t, []Entry{p.entry("b", base.Add(time.Hour), "mail.example.com")}, "b", now),
	}
	var h Holder
	h.Set(stores[0])
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := h.GetCertificate(&tls.ClientHelloInfo{ServerName: "mail.example.com"})
				if err != nil || (c.Leaf.Subject.CommonName != "a" && c.Leaf.Subject.CommonName != "b") {
					t.Errorf("lookup during swap: %v", err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		h.Set(stores[i%2])
	}
	close(stop)
	wg.Wait()
}

// TestLoopbackListener serves through tls.NewListener on 127.0.0.1 with one
// tls.Config for the life of the listener, reloading the Holder in between.
func TestLoopbackListener(t *testing.T) {
	p := newPKI(t)
	now := func() time.Time { return base }
	var h Holder
	h.Set(mustStore(t, []Entry{p.factory(), p.entry("mail", base.Add(time.Hour), "mail.example.com")}, FactoryName, now))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(ln, &tls.Config{GetCertificate: h.GetCertificate})
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err == nil {
					c.Write([]byte("220 ok\n"))
				}
			}()
		}
	}()
	dial := func(name string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d := tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: p.roots, Time: now}}
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return "", err
		}
		defer c.Close()
		buf := make([]byte, 16)
		n, _ := c.Read(buf)
		if string(buf[:n]) != "220 ok\n" {
			return "", fmt.Errorf("read %q", buf[:n])
		}
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName, nil
	}
	for name, want := range map[string]string{"mail.example.com": "mail", "127.0.0.1": "mg1", "localhost": "mg1"} {
		if got, err := dial(name); err != nil || got != want {
			t.Errorf("dial %s: %s, %v; want %s", name, got, err, want)
		}
	}
	// Reload: mail.example.com now gets a different certificate on the
	// same listener.
	h.Set(mustStore(t, []Entry{p.factory(), p.entry("mail2", base.Add(2*time.Hour), "mail.example.com")}, FactoryName, now))
	if got, err := dial("mail.example.com"); err != nil || got != "mail2" {
		t.Errorf("after reload: %s, %v", got, err)
	}
}
