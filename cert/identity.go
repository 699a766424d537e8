package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strings"
	"time"
)

// FactoryNotAfter is the expiry of the device CA and of the Factory
// certificate: 2038-01-19 03:14:07 UTC.
var FactoryNotAfter = time.Date(2038, time.January, 19, 3, 14, 7, 0, time.UTC)

// FactoryName is the name of the built-in server certificate.
const FactoryName = "Factory"

// DeviceKeySize is the length in bytes of Identity.DeviceKey.
const DeviceKeySize = 32

// backdate is how far before "now" new certificates become valid, to absorb
// clock skew between the appliance and its clients.
const backdate = time.Hour

// Identity is the per-device key material generated once on first boot and
// kept for the device's life (it survives a factory reset).
type Identity struct {
	CACertPEM, CAKeyPEM           []byte // device CA ("mailgate device CA <serial>")
	FactoryCertPEM, FactoryKeyPEM []byte // "Factory" server cert signed by the device CA
	DeviceKey                     []byte // 32 random bytes: seals private keys in the configuration
}

// GenerateIdentity creates a device CA (ECDSA P-256, CA:true, pathlen 0) and
// a Factory server certificate (ECDSA P-256) signed by it, plus a fresh
// random device key.
//
// The Factory certificate has CN=hostname and the SANs hostname,
// hostname.domain and domain (when domain is not empty), "localhost", the
// given IPs, 127.0.0.1 and ::1. Both certificates have random 128-bit serial
// numbers, are valid from now-1h until FactoryNotAfter, and the Factory
// certificate is usable for serverAuth and clientAuth.
func GenerateIdentity(hostname, domain string, ips []net.IP, now time.Time) (*Identity, error) {
	hostname = NormaliseName(hostname)
	domain = NormaliseName(domain)
	if hostname == "" {
		return nil, errors.New("cert: hostname is required")
	}
	if !now.Before(FactoryNotAfter) {
		return nil, fmt.Errorf("cert: clock (%s) is past %s", now.UTC().Format(time.RFC3339), FactoryNotAfter.Format(time.RFC3339))
	}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cert: generating CA key: %w", err)
	}
	caSerial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: caSerial,
		Subject: pkix.Name{
			Organization: []string{"mailgate"},
			CommonName:   "mailgate device CA " + strings.ToUpper(caSerial.Text(16)),
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              FactoryNotAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("cert: creating CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("cert: parsing CA certificate: %w", err)
	}

	allIPs := append(append([]net.IP(nil), ips...), net.IPv4(127, 0, 0, 1), net.IPv6loopback)
	factoryCert, factoryKey, err := issue(caCert, caKey, hostname, factoryNames(hostname, domain), dedupIPs(allIPs), FactoryNotAfter, now)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := encodeKey(caKey)
	if err != nil {
		return nil, err
	}
	devKey := make([]byte, DeviceKeySize)
	if _, err := rand.Read(devKey); err != nil {
		return nil, fmt.Errorf("cert: generating device key: %w", err)
	}
	return &Identity{
		CACertPEM:      encodeCert(caDER),
		CAKeyPEM:       caKeyPEM,
		FactoryCertPEM: factoryCert,
		FactoryKeyPEM:  factoryKey,
		DeviceKey:      devKey,
	}, nil
}

// factoryNames are the DNS names of a Factory certificate for hostname and
// domain (both normalised): hostname, hostname.domain and domain, then
// localhost.
func factoryNames(hostname, domain string) []string {
	dns := []string{hostname}
	if domain != "" {
		dns = append(dns, hostname+"."+domain, domain)
	}
	return dedupNames(append(dns, "localhost"))
}

// FactoryNames reports the names a Factory certificate of this device's
// CA was made for: ok is true when certPEM is signed by the device CA and
// has exactly the names GenerateIdentity gives one (CN hostname; DNS names
// hostname, hostname.domain and domain, localhost). Any other certificate,
// such as one an administrator issued or imported, gives ok false.
func (id *Identity) FactoryNames(certPEM []byte) (hostname, domain string, ok bool) {
	caCert, _, err := id.ca()
	if err != nil {
		return "", "", false
	}
	chain, err := ParseChain(certPEM)
	if err != nil || chain[0].CheckSignatureFrom(caCert) != nil {
		return "", "", false
	}
	leaf := chain[0]
	hostname = leaf.Subject.CommonName
	if len(leaf.DNSNames) == 4 {
		domain = leaf.DNSNames[2]
	}
	if hostname == "" || !slices.Equal(leaf.DNSNames, factoryNames(hostname, domain)) {
		return "", "", false
	}
	return hostname, domain, true
}

// RenameFactory keeps a Factory certificate naming the appliance. When
// certPEM is a Factory certificate of this device's CA (see FactoryNames)
// made for other names than hostname and domain, it returns one for them,
// with the same IP addresses and expiry, and ok true. Otherwise ok is
// false and nothing is issued.
func (id *Identity) RenameFactory(certPEM []byte, hostname, domain string, now time.Time) (newCert, newKey []byte, ok bool, err error) {
	hostname, domain = NormaliseName(hostname), NormaliseName(domain)
	oldHost, oldDomain, ok := id.FactoryNames(certPEM)
	if !ok || hostname == "" || (oldHost == hostname && oldDomain == domain) {
		return nil, nil, false, nil
	}
	caCert, caKey, err := id.ca()
	if err != nil {
		return nil, nil, false, err
	}
	chain, _ := ParseChain(certPEM)
	newCert, newKey, err = issue(caCert, caKey, hostname, factoryNames(hostname, domain), chain[0].IPAddresses, FactoryNotAfter, now)
	return newCert, newKey, err == nil, err
}

// Issue signs a new ECDSA P-256 server certificate with the device CA (for
// `execute certificate local generate NAME CN [days]`).
//
// Each entry of sans that parses as an IP address becomes an IP SAN, the
// others DNS SANs. The common name is added as a SAN too when it looks like
// a host name or an IP address and is not listed already. The certificate is
// valid from now-1h until notAfter, which is clamped to the CA's own expiry.
// certPEM holds only the new certificate, keyPEM its PKCS#8 private key.
func (id *Identity) Issue(commonName string, sans []string, notAfter time.Time, now time.Time) (certPEM, keyPEM []byte, err error) {
	caCert, caKey, err := id.ca()
	if err != nil {
		return nil, nil, err
	}
	commonName = strings.TrimSpace(commonName)
	if commonName == "" {
		return nil, nil, errors.New("cert: common name is required")
	}
	if notAfter.After(caCert.NotAfter) {
		notAfter = caCert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("cert: expiry %s is not after %s", notAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	var dns []string
	var ips []net.IP
	add := func(s string) {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else if s = NormaliseName(s); s != "" {
			dns = append(dns, s)
		}
	}
	if net.ParseIP(commonName) != nil || looksLikeHostname(commonName) {
		add(commonName)
	}
	for _, s := range sans {
		add(strings.TrimSpace(s))
	}
	return issue(caCert, caKey, commonName, dedupNames(dns), dedupIPs(ips), notAfter, now)
}

// issue creates a server certificate signed by caCert/caKey.
func issue(caCert *x509.Certificate, caKey crypto.Signer, cn string, dns []string, ips []net.IP, notAfter, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("cert: generating key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              dns,
		IPAddresses:           ips,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("cert: creating certificate for %q: %w", cn, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// ca returns the parsed device CA certificate and key.
func (id *Identity) ca() (*x509.Certificate, crypto.Signer, error) {
	if id == nil {
		return nil, nil, errors.New("cert: no device identity")
	}
	chain, key, err := parseLeafAndKey(id.CACertPEM, id.CAKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cert: device CA: %w", err)
	}
	if !chain[0].IsCA {
		return nil, nil, errors.New("cert: device CA certificate is not a CA")
	}
	return chain[0], key, nil
}

// identityJSON is the stored form of an Identity. Byte slices are encoded
// as base64 by encoding/json; field order is fixed by the struct.
type identityJSON struct {
	Version        int    `json:"version"`
	CACertPEM      []byte `json:"ca_cert"`
	CAKeyPEM       []byte `json:"ca_key"`
	FactoryCertPEM []byte `json:"factory_cert"`
	FactoryKeyPEM  []byte `json:"factory_key"`
	DeviceKey      []byte `json:"device_key"`
}

const identityVersion = 1

// Marshal encodes the identity for storage in the appliance's database.
// The encoding is JSON and is stable: the same identity always yields the
// same bytes.
func (id *Identity) Marshal() ([]byte, error) {
	if id == nil {
		return nil, errors.New("cert: no device identity")
	}
	return json.Marshal(identityJSON{
		Version:        identityVersion,
		CACertPEM:      id.CACertPEM,
		CAKeyPEM:       id.CAKeyPEM,
		FactoryCertPEM: id.FactoryCertPEM,
		FactoryKeyPEM:  id.FactoryKeyPEM,
		DeviceKey:      id.DeviceKey,
	})
}

// UnmarshalIdentity decodes what Marshal produced and checks that it is
// complete and consistent: both certificates parse, each key matches its
// certificate, the Factory certificate is signed by the device CA and the
// device key has the right length.
func UnmarshalIdentity(b []byte) (*Identity, error) {
	var j identityJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("cert: decoding device identity: %w", err)
	}
	if j.Version != identityVersion {
		return nil, fmt.Errorf("cert: unsupported device identity version %d", j.Version)
	}
	id := &Identity{
		CACertPEM:      j.CACertPEM,
		CAKeyPEM:       j.CAKeyPEM,
		FactoryCertPEM: j.FactoryCertPEM,
		FactoryKeyPEM:  j.FactoryKeyPEM,
		DeviceKey:      j.DeviceKey,
	}
	if len(id.DeviceKey) != DeviceKeySize {
		return nil, fmt.Errorf("cert: device key is %d bytes, want %d", len(id.DeviceKey), DeviceKeySize)
	}
	caCert, _, err := id.ca()
	if err != nil {
		return nil, err
	}
	factory, _, err := parseLeafAndKey(id.FactoryCertPEM, id.FactoryKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("cert: Factory certificate: %w", err)
	}
	if err := factory[0].CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("cert: Factory certificate is not signed by the device CA: %w", err)
	}
	return id, nil
}

func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("cert: generating serial number: %w", err)
	}
	b[0] &= 0x7f // keep it positive in DER without a leading zero byte
	if b[0] == 0 {
		b[0] = 0x40 // keep it 128 bits long and never zero
	}
	return new(big.Int).SetBytes(b), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("cert: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NormaliseName lower-cases a DNS name and drops surrounding space and a
// trailing dot.
func NormaliseName(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

// looksLikeHostname reports whether s is made only of the characters a DNS
// name (or a wildcard pattern) may hold.
func looksLikeHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '*', r == '_':
		default:
			return false
		}
	}
	return true
}

func dedupNames(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

func dedupIPs(in []net.IP) []net.IP {
	var out []net.IP
	for _, ip := range in {
		if ip == nil {
			continue
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		dup := false
		for _, o := range out {
			if o.Equal(ip) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, ip)
		}
	}
	return out
}
