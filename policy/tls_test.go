package policy

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"

	"mailgate/config"
)

func TestMatchWildcard(t *testing.T) {
	for _, c := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"*", "anything@x", true}, {"*@example.com", "bob@EXAMPLE.com", true},
		{"*@example.com", "bob@example.com.evil", false}, {"b?b@*", "bob@x", true}, {"b?b@*", "bb@x", false},
		{"*.example.com", "mail.example.com", true}, {"*.example.com", "example.com", false},
		{"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false}, {"", "", true}, {"", "a", false},
	} {
		if got := MatchWildcard(c.p, c.s); got != c.want {
			t.Errorf("MatchWildcard(%q, %q) = %v", c.p, c.s, got)
		}
	}
	if !MatchPattern(`^(alice|bob)@example\.com$`, "regexp", "BOB@example.com") || MatchPattern("(", "regexp", "(") {
		t.Error("regexp patterns")
	}
}

func TestCheckTLS(t *testing.T) {
	prof := func(level, action string) *config.TLSProfile {
		return &config.TLSProfile{Name: "p", Level: level, Action: action, CheckSSLVersion: true, MinSSLVersion: "tls1_2", EncryptionStrength: 128}
	}
	tls13 := &TLSInfo{Version: tls.VersionTLS13, CipherSuite: tls.TLS_AES_128_GCM_SHA256, Bits: 128}
	if CheckTLS(prof("preferred", "tempfail"), nil) != nil || CheckTLS(prof("none", "fail"), nil) != nil || CheckTLS(nil, nil) != nil {
		t.Fatal("none/preferred must accept plain text")
	}
	f := CheckTLS(prof("encrypt", "tempfail"), nil)
	if f == nil || f.Code != 454 || f.Enhanced != "4.7.0" || f.Text != "TLS required" {
		t.Fatalf("encrypt+tempfail on plain: %+v", f)
	}
	if f = CheckTLS(prof("encrypt", "fail"), nil); f == nil || f.Code != 550 || f.Enhanced != "5.7.0" {
		t.Fatalf("encrypt+fail on plain: %+v", f)
	}
	if CheckTLS(prof("encrypt", "fail"), tls13) != nil {
		t.Fatal("encrypt must accept TLS 1.3")
	}
	p := prof("encrypt", "fail")
	p.MinSSLVersion = "tls1_3"
	if CheckTLS(p, &TLSInfo{Version: tls.VersionTLS12, Bits: 256}) == nil {
		t.Fatal("min-ssl-version not enforced")
	}
	p.CheckSSLVersion = false
	if CheckTLS(p, &TLSInfo{Version: tls.VersionTLS12, Bits: 256}) != nil {
		t.Fatal("min-ssl-version enforced with check-ssl-version disable")
	}
	p = prof("encrypt", "fail")
	p.CheckEncryptionStrength, p.EncryptionStrength = true, 256
	if f = CheckTLS(p, tls13); f == nil || f.Text != "cipher strength 128 bits is below 256" {
		t.Fatalf("strength: %+v", f)
	}
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "mx.partner.example"}, Issuer: pkix.Name{CommonName: "Partner CA"}}
	sec := prof("secure", "fail")
	if CheckTLS(sec, tls13) == nil {
		t.Fatal("secure without certificate accepted")
	}
	verified := &TLSInfo{Version: tls.VersionTLS13, Bits: 256, PeerCerts: []*x509.Certificate{leaf}, Verified: true}
	if CheckTLS(sec, verified) != nil {
		t.Fatal("secure with verified certificate refused")
	}
	unverified := *verified
	unverified.Verified = false
	if CheckTLS(sec, &unverified) == nil {
		t.Fatal("secure accepted an unverified certificate")
	}
	sec.CheckCAName, sec.CAName = true, "Other*"
	if CheckTLS(sec, verified) == nil {
		t.Fatal("ca-name not enforced")
	}
	sec.CAName = "Partner*"
	sec.CheckCertSubject, sec.CertSubject = true, "*.partner.example"
	if CheckTLS(sec, verified) != nil {
		t.Fatal("matching ca-name and subject refused")
	}
	sec.CertSubject = "*.other.example"
	if CheckTLS(sec, verified) == nil {
		t.Fatal("cert-subject not enforced")
	}
	if d := Describe(tls13); d != "TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits" {
		t.Fatalf("Describe: %q", d)
	}
	if CipherBits(tls.TLS_AES_256_GCM_SHA384) != 256 || CipherBits(tls.TLS_CHACHA20_POLY1305_SHA256) != 256 {
		t.Fatal("CipherBits")
	}
}

// check-ca-type and check-cert-type: match, substring and wildcard,
// against the one-line (FortiMail's /CN=…/O=…), RFC 4514 and common name
// spellings of a name.
func TestMatchName(t *testing.T) {
	name := pkix.Name{Country: []string{"DE"}, Organization: []string{"Example Partner"}, CommonName: "Partner CA 2"}
	if got := slashDN(name); got != "/C=DE/O=Example Partner/CN=Partner CA 2" {
		t.Fatalf("slashDN: %q", got)
	}
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"/C=DE/O=Example Partner/CN=Partner CA 2", "match", true},
		{"/c=de/o=example partner/cn=partner ca 2", "match", true},
		{"CN=Partner CA 2,O=Example Partner,C=DE", "match", true},
		{"Partner CA 2", "match", true},
		{"Partner CA", "match", false},
		{"/O=Example Partner/", "substring", true},
		{"partner ca", "substring", true},
		{"Other", "substring", false},
		{"/C=DE/O=Example*", "wildcard", true},
		{"Partner CA ?", "wildcard", true},
		{"Partner CA", "wildcard", false},
		{"/C=FR/*", "wildcard", false},
	} {
		if got := MatchName(tc.pattern, tc.typ, name); got != tc.want {
			t.Errorf("MatchName(%q, %s) = %v", tc.pattern, tc.typ, got)
		}
	}
	// Through a secure profile.
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "mx.partner.example"}, Issuer: name}
	p := &config.TLSProfile{Level: "secure", Action: "fail", CheckCAName: true, CheckCAType: "match", CAName: "/C=DE/O=Example Partner/CN=Partner CA 2",
		CheckCertSubject: true, CheckCertType: "substring", CertSubject: "partner.example"}
	info := &TLSInfo{Version: tls.VersionTLS13, Bits: 256, PeerCerts: []*x509.Certificate{leaf}, Verified: true}
	if f := CheckTLS(p, info); f != nil {
		t.Fatalf("matching names refused: %+v", f)
	}
	p.CAName = "/C=DE/O=Example Partner"
	if CheckTLS(p, info) == nil {
		t.Fatal("check-ca-type match accepted a part of the name")
	}
}
