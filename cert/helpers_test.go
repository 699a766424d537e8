package cert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"
)

// base is the reference "now" of the tests, to the second as certificates
// store it.
var base = time.Now().UTC().Truncate(time.Second)

var (
	sharedOnce sync.Once
	sharedID   *Identity
	sharedErr  error
)

// testIdentity2 is another device's identity with the same names.
func testIdentity2(t *testing.T) *Identity {
	t.Helper()
	id, err := GenerateIdentity("mg1", "example.com", []net.IP{net.ParseIP("192.0.2.10")}, base)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// testIdentity returns one identity shared by the tests that only need a
// device CA to issue from.
func testIdentity(t *testing.T) *Identity {
	t.Helper()
	sharedOnce.Do(func() {
		sharedID, sharedErr = GenerateIdentity("mg1", "example.com", []net.IP{net.ParseIP("192.0.2.10")}, base)
	})
	if sharedErr != nil {
		t.Fatalf("GenerateIdentity: %v", sharedErr)
	}
	return sharedID
}

// issueT issues a certificate valid from notBefore+1h (Issue backdates by
// an hour) to notAfter.
func issueT(t *testing.T, id *Identity, cn string, sans []string, notBefore, notAfter time.Time) Entry {
	t.Helper()
	c, k, err := id.Issue(cn, sans, notAfter, notBefore.Add(backdate))
	if err != nil {
		t.Fatalf("Issue(%q): %v", cn, err)
	}
	return Entry{Name: cn, ChainPEM: c, KeyPEM: k}
}

func parseCertPEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("no CERTIFICATE block in %q", b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func parseKeyPEM(t *testing.T, b []byte) crypto.Signer {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("no PEM block in %q", b)
	}
	k, err := parsePrivateKey(block)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func newP256(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error
)

func testRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() { rsaKey, rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	if rsaErr != nil {
		t.Fatal(rsaErr)
	}
	return rsaKey
}

var serialCounter int64 = 1000

// makeCert creates a certificate for pub signed by parent/parentKey, or
// self-signed when parent is nil.
func makeCert(t *testing.T, cn string, isCA bool, dns []string, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	t.Helper()
	serialCounter++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialCounter),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              dns,
		NotBefore:             base.Add(-time.Hour),
		NotAfter:              base.Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testChain is a three-level PKI: root -> intermediate -> leaf.
type testChain struct {
	root, inter, leaf *x509.Certificate
	leafKey           *ecdsa.PrivateKey
}

func newTestChain(t *testing.T, dns ...string) testChain {
	t.Helper()
	rootKey, interKey, leafKey := newP256(t), newP256(t), newP256(t)
	root := makeCert(t, "Test Root", true, nil, rootKey.Public(), nil, rootKey)
	inter := makeCert(t, "Test Intermediate", true, nil, interKey.Public(), root, rootKey)
	leaf := makeCert(t, "leaf", false, dns, leafKey.Public(), inter, interKey)
	return testChain{root: root, inter: inter, leaf: leaf, leafKey: leafKey}
}
