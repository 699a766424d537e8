package cert

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFactoryNotAfter(t *testing.T) {
	want := time.Date(2038, 1, 19, 3, 14, 7, 0, time.UTC)
	if !FactoryNotAfter.Equal(want) || FactoryNotAfter.Unix() != 1<<31-1 {
		t.Fatalf("FactoryNotAfter = %v", FactoryNotAfter)
	}
}

func TestGenerateIdentity(t *testing.T) {
	now := base
	id, err := GenerateIdentity("MG1", "Example.COM", []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::1"), net.ParseIP("127.0.0.1")}, now)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseCertPEM(t, id.CACertPEM)
	leaf := parseCertPEM(t, id.FactoryCertPEM)

	// Device CA.
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA basic constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA lacks keyCertSign")
	}
	wantCN := "mailgate device CA " + strings.ToUpper(ca.SerialNumber.Text(16))
	if ca.Subject.CommonName != wantCN {
		t.Errorf("CA CN = %q, want %q", ca.Subject.CommonName, wantCN)
	}
	if !isSelfSigned(ca) {
		t.Error("CA is not self-signed")
	}

	// Keys are ECDSA P-256 and match.
	for name, pair := range map[string][2][]byte{"CA": {id.CACertPEM, id.CAKeyPEM}, "Factory": {id.FactoryCertPEM, id.FactoryKeyPEM}} {
		c := parseCertPEM(t, pair[0])
		pub, ok := c.PublicKey.(*ecdsa.PublicKey)
		if !ok || pub.Curve != elliptic.P256() {
			t.Errorf("%s key is %T, want ECDSA P-256", name, c.PublicKey)
		}
		if !keyMatches(c, parseKeyPEM(t, pair[1])) {
			t.Errorf("%s key does not match its certificate", name)
		}
	}

	// Serials are random 128-bit values.
	for _, c := range []*x509.Certificate{ca, leaf} {
		if bl := c.SerialNumber.BitLen(); bl < 120 || bl > 128 {
			t.Errorf("%s serial has %d bits", c.Subject.CommonName, bl)
		}
	}
	if ca.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Error("CA and Factory share a serial")
	}

	// Factory certificate.
	if leaf.Subject.CommonName != "mg1" {
		t.Errorf("Factory CN = %q", leaf.Subject.CommonName)
	}
	if leaf.IsCA {
		t.Error("Factory certificate is a CA")
	}
	wantDNS := []string{"mg1", "mg1.example.com", "example.com", "localhost"}
	if !slices.Equal(leaf.DNSNames, wantDNS) {
		t.Errorf("DNS SANs = %q, want %q", leaf.DNSNames, wantDNS)
	}
	var gotIPs []string
	for _, ip := range leaf.IPAddresses {
		gotIPs = append(gotIPs, ip.String())
	}
	if want := []string{"192.0.2.10", "2001:db8::1", "127.0.0.1", "::1"}; !slices.Equal(gotIPs, want) {
		t.Errorf("IP SANs = %q, want %q (127.0.0.1 not repeated)", gotIPs, want)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v", leaf.ExtKeyUsage)
	}
	for _, c := range []*x509.Certificate{ca, leaf} {
		if !c.NotAfter.Equal(FactoryNotAfter) {
			t.Errorf("%s NotAfter = %v, want %v", c.Subject.CommonName, c.NotAfter, FactoryNotAfter)
		}
		if !c.NotBefore.Equal(now.Add(-time.Hour)) {
			t.Errorf("%s NotBefore = %v, want %v", c.Subject.CommonName, c.NotBefore, now.Add(-time.Hour))
		}
	}

	// It chains to the device CA for every name and address it carries.
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"mg1", "MG1.example.com", "example.com", "localhost", "127.0.0.1", "::1", "192.0.2.10", "2001:db8::1"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("Verify(%s, %v): %v", name, usage, err)
			}
		}
	}
	// ...and only those.
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: roots, CurrentTime: now}); err == nil {
		t.Error("Factory certificate verified for other.example.com")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "mg1", Roots: roots, CurrentTime: FactoryNotAfter.Add(time.Second)}); err == nil {
		t.Error("Factory certificate verified after FactoryNotAfter")
	}
	if len(id.DeviceKey) != 32 {
		t.Errorf("DeviceKey is %d bytes", len(id.DeviceKey))
	}
}

func TestGenerateIdentityWithoutDomain(t *testing.T) {
	id, err := GenerateIdentity("gw", "", nil, base)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCertPEM(t, id.FactoryCertPEM)
	if want := []string{"gw", "localhost"}; !slices.Equal(leaf.DNSNames, want) {
		t.Errorf("DNS SANs = %q, want %q", leaf.DNSNames, want)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs = %v", leaf.IPAddresses)
	}
}

func TestGenerateIdentityErrors(t *testing.T) {
	if _, err := GenerateIdentity("  ", "example.com", nil, base); err == nil {
		t.Error("empty hostname accepted")
	}
	if _, err := GenerateIdentity("gw", "", nil, FactoryNotAfter.Add(time.Hour)); err == nil {
		t.Error("clock past FactoryNotAfter accepted")
	}
}

func TestGenerateIdentityUnique(t *testing.T) {
	a, err := GenerateIdentity("gw", "example.com", nil, base)
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateIdentity("gw", "example.com", nil, base)
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]byte{
		"CA cert":      {a.CACertPEM, b.CACertPEM},
		"CA key":       {a.CAKeyPEM, b.CAKeyPEM},
		"Factory cert": {a.FactoryCertPEM, b.FactoryCertPEM},
		"Factory key":  {a.FactoryKeyPEM, b.FactoryKeyPEM},
		"device key":   {a.DeviceKey, b.DeviceKey},
	} {
		if bytes.Equal(pair[0], pair[1]) {
			t.Errorf("%s identical across identities", name)
		}
	}
	caA, caB := parseCertPEM(t, a.CACertPEM), parseCertPEM(t, b.CACertPEM)
	if caA.Subject.CommonName == caB.Subject.CommonName {
		t.Error("device CA names identical")
	}
	// B's Factory certificate does not chain to A's CA.
	roots := x509.NewCertPool()
	roots.AddCert(caA)
	if _, err := parseCertPEM(t, b.FactoryCertPEM).Verify(x509.VerifyOptions{DNSName: "gw", Roots: roots, CurrentTime: base}); err == nil {
		t.Error("identity B's Factory certificate verified against identity A's CA")
	}
}

func TestIdentityMarshalRoundTrip(t *testing.T) {
	id := testIdentity(t)
	b1, err := id.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b2, err := id.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Fatal("Marshal is not stable")
	}
	got, err := UnmarshalIdentity(b1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.CACertPEM, id.CACertPEM) || !bytes.Equal(got.CAKeyPEM, id.CAKeyPEM) ||
		!bytes.Equal(got.FactoryCertPEM, id.FactoryCertPEM) || !bytes.Equal(got.FactoryKeyPEM, id.FactoryKeyPEM) ||
		!bytes.Equal(got.DeviceKey, id.DeviceKey) {
		t.Fatal("round trip changed the identity")
	}
	b3, _ := got.Marshal()
	if !bytes.Equal(b1, b3) {
		t.Fatal("re-marshalled identity differs")
	}
	// The restored identity still works: it issues and it opens what the original sealed.
	if _, _, err := got.Issue("x.example.com", nil, base.Add(time.Hour), base); err != nil {
		t.Fatalf("Issue from restored identity: %v", err)
	}
	tok, _ := Seal(id.DeviceKey, []byte("secret"))
	if p, err := Open(got.DeviceKey, tok); err != nil || string(p) != "secret" {
		t.Fatalf("Open with restored device key: %q, %v", p, err)
	}
}

func TestUnmarshalIdentityRejects(t *testing.T) {
	id := testIdentity(t)
	other, err := GenerateIdentity("other", "", nil, base)
	if err != nil {
		t.Fatal(err)
	}
	mutate := func(f func(*Identity)) []byte {
		c := *id
		f(&c)
		b, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		"garbage":             []byte("not json"),
		"empty object":        []byte("{}"),
		"future version":      []byte(`{"version":2}`),
		"short device key":    mutate(func(c *Identity) { c.DeviceKey = c.DeviceKey[:16] }),
		"missing CA":          mutate(func(c *Identity) { c.CACertPEM = nil }),
		"CA key mismatch":     mutate(func(c *Identity) { c.CAKeyPEM = other.CAKeyPEM }),
		"Factory key swapped": mutate(func(c *Identity) { c.FactoryKeyPEM = other.FactoryKeyPEM }),
		"foreign Factory": mutate(func(c *Identity) {
			c.FactoryCertPEM, c.FactoryKeyPEM = other.FactoryCertPEM, other.FactoryKeyPEM
		}),
		"Factory as CA": mutate(func(c *Identity) { c.CACertPEM, c.CAKeyPEM = c.FactoryCertPEM, c.FactoryKeyPEM }),
	}
	for name, b := range cases {
		if _, err := UnmarshalIdentity(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestIssue(t *testing.T) {
	id := testIdentity(t)
	now := base
	notAfter := now.Add(90 * 24 * time.Hour)
	certPEM, keyPEM, err := id.Issue("mx.example.net", []string{"mail.example.net", " MX.example.net ", "198.51.100.7", "2001:db8::25"}, notAfter, now)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCertPEM(t, certPEM)
	if rest := bytes.TrimSpace(certPEM[len(pemBlock("CERTIFICATE", c.Raw)):]); len(rest) != 0 {
		t.Errorf("certPEM holds more than the new certificate")
	}
	if !keyMatches(c, parseKeyPEM(t, keyPEM)) {
		t.Fatal("key does not match")
	}
	if c.Subject.CommonName != "mx.example.net" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if want := []string{"mx.example.net", "mail.example.net"}; !slices.Equal(c.DNSNames, want) {
		t.Errorf("DNS SANs = %q, want %q", c.DNSNames, want)
	}
	if len(c.IPAddresses) != 2 || c.IPAddresses[0].String() != "198.51.100.7" || c.IPAddresses[1].String() != "2001:db8::25" {
		t.Errorf("IP SANs = %v", c.IPAddresses)
	}
	if !c.NotAfter.Equal(notAfter) || !c.NotBefore.Equal(now.Add(-time.Hour)) {
		t.Errorf("validity %v .. %v", c.NotBefore, c.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parseCertPEM(t, id.CACertPEM))
	for _, name := range []string{"mx.example.net", "mail.example.net", "198.51.100.7"} {
		if _, err := c.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("Verify(%s): %v", name, err)
		}
	}
	other, _, err := id.Issue("mx.example.net", nil, notAfter, now)
	if err != nil {
		t.Fatal(err)
	}
	if parseCertPEM(t, other).SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two issued certificates share a serial")
	}
}

// The Factory certificate follows a rename of the appliance; a certificate
// an administrator put under the same name does not.
func TestRenameFactory(t *testing.T) {
	id := testIdentity(t)
	now := base.Add(24 * time.Hour)
	if h, d, ok := id.FactoryNames(id.FactoryCertPEM); !ok || h != "mg1" || d != "example.com" {
		t.Fatalf("FactoryNames: %q %q %v", h, d, ok)
	}
	certPEM, keyPEM, ok, err := id.RenameFactory(id.FactoryCertPEM, "gw", "Example.NET", now)
	if err != nil || !ok {
		t.Fatalf("rename: ok %v, %v", ok, err)
	}
	c := parseCertPEM(t, certPEM)
	if !keyMatches(c, parseKeyPEM(t, keyPEM)) {
		t.Fatal("key does not match")
	}
	if c.Subject.CommonName != "gw" || !slices.Equal(c.DNSNames, []string{"gw", "gw.example.net", "example.net", "localhost"}) {
		t.Errorf("CN %q, DNS SANs %q", c.Subject.CommonName, c.DNSNames)
	}
	old := parseCertPEM(t, id.FactoryCertPEM)
	if fmt.Sprint(c.IPAddresses) != fmt.Sprint(old.IPAddresses) || !c.NotAfter.Equal(FactoryNotAfter) {
		t.Errorf("IPs %v (were %v), not after %v", c.IPAddresses, old.IPAddresses, c.NotAfter)
	}
	roots := x509.NewCertPool()
	roots.AddCert(parseCertPEM(t, id.CACertPEM))
	if _, err := c.Verify(x509.VerifyOptions{DNSName: "gw.example.net", Roots: roots, CurrentTime: now}); err != nil {
		t.Errorf("Verify: %v", err)
	}
	if h, d, ok := id.FactoryNames(certPEM); !ok || h != "gw" || d != "example.net" {
		t.Errorf("FactoryNames of the new one: %q %q %v", h, d, ok)
	}
	// Without a domain, and back.
	noDomain, _, ok, err := id.RenameFactory(certPEM, "gw", "", now)
	if !ok || err != nil {
		t.Fatalf("rename without a domain: ok %v, %v", ok, err)
	}
	if h, d, ok := id.FactoryNames(noDomain); !ok || h != "gw" || d != "" {
		t.Errorf("FactoryNames without a domain: %q %q %v", h, d, ok)
	}
	// Names unchanged, a certificate an admin issued, one of another
	// device: left alone.
	issued, _, err := id.Issue("mg1", []string{"mail.example.com"}, FactoryNotAfter, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		pem          []byte
		host, domain string
	}{
		{"same names", id.FactoryCertPEM, "MG1", "example.com"},
		{"issued by an admin", issued, "gw", "example.com"},
		{"another device", testIdentity2(t).FactoryCertPEM, "gw", "example.com"},
		{"not a certificate", []byte("garbage"), "gw", "example.com"},
		{"no hostname", id.FactoryCertPEM, "", "example.com"},
	} {
		if _, _, ok, err := id.RenameFactory(tc.pem, tc.host, tc.domain, now); ok || err != nil {
			t.Errorf("%s: ok %v, %v", tc.name, ok, err)
		}
	}
}

func TestIssueCommonNameNotHostname(t *testing.T) {
	id := testIdentity(t)
	certPEM, _, err := id.Issue("Mail Gateway", []string{"gw.example.org"}, base.Add(time.Hour), base)
	if err != nil {
		t.Fatal(err)
	}
	c := parseCertPEM(t, certPEM)
	if c.Subject.CommonName != "Mail Gateway" || !slices.Equal(c.DNSNames, []string{"gw.example.org"}) {
		t.Errorf("CN %q SANs %q", c.Subject.CommonName, c.DNSNames)
	}
}

func TestIssueClampsAndRejects(t *testing.T) {
	id := testIdentity(t)
	certPEM, _, err := id.Issue("far.example.com", nil, FactoryNotAfter.AddDate(50, 0, 0), base)
	if err != nil {
		t.Fatal(err)
	}
	if got := parseCertPEM(t, certPEM).NotAfter; !got.Equal(FactoryNotAfter) {
		t.Errorf("NotAfter = %v, want clamped to %v", got, FactoryNotAfter)
	}
	if _, _, err := id.Issue("past.example.com", nil, base.Add(-time.Second), base); err == nil {
		t.Error("expiry in the past accepted")
	}
	if _, _, err := id.Issue("", nil, base.Add(time.Hour), base); err == nil {
		t.Error("empty common name accepted")
	}
	if _, _, err := (&Identity{}).Issue("x", nil, base.Add(time.Hour), base); err == nil {
		t.Error("Issue without a CA succeeded")
	}
	var nilID *Identity
	if _, _, err := nilID.Issue("x", nil, base.Add(time.Hour), base); err == nil {
		t.Error("Issue on nil identity succeeded")
	}
}
