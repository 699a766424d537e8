package cert

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"time"
)

// Info describes a certificate for `get system certificate local` style
// output.
type Info struct {
	Subject, Issuer     string // RFC 2253 form, e.g. "CN=mx.example.com,O=Example"
	DNSNames            []string
	IPs                 []net.IP
	NotBefore, NotAfter time.Time
	SHA256              string // fingerprint of the DER, "AB:CD:..."
	SelfSigned, IsCA    bool
}

// Describe describes the first certificate in certPEM (the leaf of a chain).
func Describe(certPEM []byte) (Info, error) {
	c, err := firstCert(certPEM)
	if err != nil {
		return Info{}, err
	}
	return DescribeCert(c), nil
}

// DescribeCert describes an already parsed certificate.
func DescribeCert(c *x509.Certificate) Info {
	return Info{
		Subject:    c.Subject.String(),
		Issuer:     c.Issuer.String(),
		DNSNames:   append([]string(nil), c.DNSNames...),
		IPs:        append([]net.IP(nil), c.IPAddresses...),
		NotBefore:  c.NotBefore,
		NotAfter:   c.NotAfter,
		SHA256:     fingerprintDER(c.Raw),
		SelfSigned: isSelfSigned(c),
		IsCA:       c.BasicConstraintsValid && c.IsCA,
	}
}

// Fingerprint returns the SHA-256 of the DER of the first certificate in
// certPEM, as upper-case hex bytes separated by colons ("AB:CD:...").
func Fingerprint(certPEM []byte) (string, error) {
	c, err := firstCert(certPEM)
	if err != nil {
		return "", err
	}
	return fingerprintDER(c.Raw), nil
}

func firstCert(certPEM []byte) (*x509.Certificate, error) {
	certs, err := ParseChain(certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, errors.New("cert: no certificate found")
	}
	return certs[0], nil
}

func fingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	const hexdigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(sum) * 3)
	for i, v := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hexdigits[v>>4])
		b.WriteByte(hexdigits[v&0x0f])
	}
	return b.String()
}
