package policy

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"strings"

	"mailgate/config"
)

// TLSFailure is a TLS profile requirement a session does not meet, with the
// SMTP reply the profile's action calls for.
type TLSFailure struct {
	Temp     bool // action tempfail: 4xx, keep trying; else 5xx
	Code     int
	Enhanced string
	Text     string
}

func (f *TLSFailure) Error() string { return fmt.Sprintf("%d %s %s", f.Code, f.Enhanced, f.Text) }

// Versions maps the configuration's TLS version names to crypto/tls.
var Versions = map[string]uint16{
	"tls1_0": tls.VersionTLS10, "tls1_1": tls.VersionTLS11,
	"tls1_2": tls.VersionTLS12, "tls1_3": tls.VersionTLS13,
}

// VersionRange returns the lowest and highest of the named TLS versions
// (crypto/tls values); ok is false when none of the names is known.
func VersionRange(names []string) (lo, hi uint16, ok bool) {
	for _, name := range names {
		v, known := Versions[name]
		if !known {
			continue
		}
		if !ok || v < lo {
			lo = v
		}
		if !ok || v > hi {
			hi = v
		}
		ok = true
	}
	return lo, hi, ok
}

// StrongSuites are the TLS 1.2 (and older) cipher suites strong-crypto
// leaves: ECDHE key exchange with an AEAD cipher (TLS 1.3 suites are all
// AEAD).
var StrongSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CheckTLS evaluates profile p against a session's TLS state (nil: plain
// text). Levels: none and preferred accept anything; encrypt requires TLS
// of at least min-ssl-version and, with check-encryption-strength, the
// cipher's key bits; secure also requires a verified peer certificate and,
// when enabled, an issuer matching ca-name and a subject matching
// cert-subject (wildcards, against the distinguished name or common name).
func CheckTLS(p *config.TLSProfile, t *TLSInfo) *TLSFailure {
	if p == nil || p.Level == "none" || p.Level == "preferred" {
		return nil
	}
	fail := func(format string, args ...any) *TLSFailure {
		f := &TLSFailure{Temp: p.Action == "tempfail", Text: fmt.Sprintf(format, args...)}
		if f.Temp {
			f.Code, f.Enhanced = 454, "4.7.0"
		} else {
			f.Code, f.Enhanced = 550, "5.7.0"
		}
		return f
	}
	if t == nil {
		return fail("TLS required")
	}
	if min := Versions[p.MinSSLVersion]; p.CheckSSLVersion && t.Version < min {
		return fail("TLS version %s is below %s", tls.VersionName(t.Version), tls.VersionName(min))
	}
	if p.CheckEncryptionStrength && t.Bits < p.EncryptionStrength {
		return fail("cipher strength %d bits is below %d", t.Bits, p.EncryptionStrength)
	}
	if p.Level != "secure" {
		return nil
	}
	if len(t.PeerCerts) == 0 || !t.Verified {
		return fail("certificate not verified")
	}
	leaf := t.PeerCerts[0]
	if p.CheckCAName && !MatchName(p.CAName, p.CheckCAType, leaf.Issuer) {
		return fail("certificate issuer %q does not match", leaf.Issuer.CommonName)
	}
	if p.CheckCertSubject && !MatchName(p.CertSubject, p.CheckCertType, leaf.Subject) {
		return fail("certificate subject %q does not match", leaf.Subject.CommonName)
	}
	return nil
}

// MatchName compares a TLS profile's ca-name or cert-subject with a
// certificate name, as check-ca-type / check-cert-type say: match (the
// whole name), substring (a part of it) or wildcard (* and ?), each
// case-insensitive. The name is tried in three spellings: the
// distinguished name as OpenSSL prints it in one line
// (/C=DE/O=Example/CN=mx.example.com, FortiMail's form), as RFC 4514 does
// (CN=mx.example.com,O=Example,C=DE), and the common name alone.
func MatchName(pattern, typ string, name pkix.Name) bool {
	for _, s := range []string{slashDN(name), name.String(), name.CommonName} {
		if s == "" {
			continue
		}
		switch typ {
		case "match":
			if strings.EqualFold(pattern, s) {
				return true
			}
		case "substring":
			if strings.Contains(strings.ToLower(s), strings.ToLower(pattern)) {
				return true
			}
		default:
			if MatchWildcard(pattern, s) {
				return true
			}
		}
	}
	return false
}

// slashDN is a name in OpenSSL's one-line form, its attributes in the
// order of the certificate: /C=DE/O=Example/CN=mx.example.com.
func slashDN(name pkix.Name) string {
	var b strings.Builder
	for _, rdn := range name.ToRDNSequence() {
		for _, atv := range rdn {
			key, ok := dnKeys[atv.Type.String()]
			if !ok {
				key = atv.Type.String()
			}
			fmt.Fprintf(&b, "/%s=%v", key, atv.Value)
		}
	}
	return b.String()
}

// dnKeys are the short names of the usual distinguished name attributes.
var dnKeys = map[string]string{
	"2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.3": "CN",
	"2.5.4.5": "serialNumber", "1.2.840.113549.1.9.1": "emailAddress", "0.9.2342.19200300.100.1.25": "DC",
}

// CipherBits is the symmetric key size of a cipher suite.
func CipherBits(suite uint16) int {
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256,
		tls.TLS_RSA_WITH_AES_128_CBC_SHA256:
		return 128
	case tls.TLS_RSA_WITH_3DES_EDE_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA:
		return 112
	}
	return 256 // AES-256 and ChaCha20-Poly1305 suites
}

// Info builds TLSInfo from a connection state; verified tells whether the
// peer chain was verified by the caller.
func Info(cs *tls.ConnectionState, verified bool) *TLSInfo {
	if cs == nil {
		return nil
	}
	return &TLSInfo{Version: cs.Version, CipherSuite: cs.CipherSuite, Bits: CipherBits(cs.CipherSuite),
		PeerCerts: cs.PeerCertificates, Verified: verified}
}

// Describe renders TLS state for logs and Received headers:
// "TLSv1.3 TLS_AES_128_GCM_SHA256 128 bits", "" for plain text.
func Describe(t *TLSInfo) string {
	if t == nil {
		return ""
	}
	return fmt.Sprintf("%s %s %d bits", VersionName(t.Version), tls.CipherSuiteName(t.CipherSuite), t.Bits)
}

// VersionName is "TLSv1.3" style (as Postfix logs it).
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return fmt.Sprintf("0x%04x", v)
}

// MailServerTLS is the TLS configuration of the mail services (SMTP,
// POP3, IMAP): certificates by SNI (getCert); the versions of system global
// ssl-versions, from the lowest to the highest listed (Go cannot leave a
// gap); strong-crypto limits TLS 1.2 and older to ECDHE with AEAD, without
// it every suite Go considers secure is allowed.
func MailServerTLS(g config.Global, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	lo, hi, ok := VersionRange(g.SSLVersions)
	if !ok {
		lo, hi = tls.VersionTLS12, tls.VersionTLS13
	}
	t := &tls.Config{GetCertificate: getCert, MinVersion: lo, MaxVersion: hi}
	if g.StrongCrypto {
		t.CipherSuites = StrongSuites
	} else {
		for _, cs := range tls.CipherSuites() {
			t.CipherSuites = append(t.CipherSuites, cs.ID)
		}
	}
	return t
}
