package cert

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

// chainOf parses chainPEM and returns its certificates.
func chainOf(t *testing.T, chainPEM []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for rest := chainPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("chain holds a %s block", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func sameChain(t *testing.T, got []*x509.Certificate, want ...*x509.Certificate) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("chain has %d certificates, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Raw, want[i].Raw) {
			t.Fatalf("chain[%d] = %q, want %q", i, got[i].Subject.CommonName, want[i].Subject.CommonName)
		}
	}
}

// checkKeyPEM checks that keyPEM is a single PKCS#8 block matching leaf.
func checkKeyPEM(t *testing.T, keyPEM []byte, leaf *x509.Certificate) {
	t.Helper()
	b, rest := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("keyPEM is not a single PKCS#8 block: %q", keyPEM)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !keyMatches(leaf, k.(crypto.Signer)) {
		t.Fatal("normalised key does not match the leaf")
	}
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParsePEMBundleOrders(t *testing.T) {
	ch := newTestChain(t, "mx.example.com")
	leafPEM, interPEM, rootPEM := pemBlock("CERTIFICATE", ch.leaf.Raw), pemBlock("CERTIFICATE", ch.inter.Raw), pemBlock("CERTIFICATE", ch.root.Raw)
	ecDER, _ := x509.MarshalECPrivateKey(ch.leafKey)
	keyPEM := pemBlock("EC PRIVATE KEY", ecDER)

	cases := map[string][]byte{
		"key last":              join(leafPEM, interPEM, keyPEM),
		"key first":             join(keyPEM, leafPEM, interPEM),
		"key in the middle":     join(leafPEM, keyPEM, interPEM),
		"intermediate first":    join(interPEM, leafPEM, keyPEM),
		"duplicate certificate": join(leafPEM, interPEM, leafPEM, keyPEM, interPEM),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			chainPEM, gotKey, err := ParsePEMBundle(in)
			if err != nil {
				t.Fatal(err)
			}
			sameChain(t, chainOf(t, chainPEM), ch.leaf, ch.inter)
			checkKeyPEM(t, gotKey, ch.leaf)
			// The normalised output parses again to the same thing and
			// is accepted by crypto/tls.
			c2, k2, err := ParsePEMBundle(join(chainPEM, gotKey))
			if err != nil || !bytes.Equal(c2, chainPEM) || !bytes.Equal(k2, gotKey) {
				t.Fatalf("normalised output does not round-trip: %v", err)
			}
		})
	}

	// A full chain given root first comes out leaf, intermediate, root.
	chainPEM, _, err := ParsePEMBundle(join(rootPEM, keyPEM, interPEM, leafPEM))
	if err != nil {
		t.Fatal(err)
	}
	sameChain(t, chainOf(t, chainPEM), ch.leaf, ch.inter, ch.root)
}

func TestParsePEMBundleMessyPaste(t *testing.T) {
	ch := newTestChain(t, "mx.example.com")
	p8, _ := x509.MarshalPKCS8PrivateKey(ch.leafKey)
	text := "\r\n   \r\n" +
		"Bag Attributes\r\n    localKeyID: 01 02 03\r\nsubject=CN = leaf\r\n" +
		indent(crlf(string(pemBlock("CERTIFICATE", ch.leaf.Raw))), "    ") +
		"\r\nBag Attributes: <No Attributes>\r\n" +
		indent(crlf(string(pemBlock("CERTIFICATE", ch.inter.Raw))), "\t") +
		"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n" +
		indent(string(pemBlock("PRIVATE KEY", p8)), "  ") +
		"\n\n  \t\n"
	chainPEM, keyPEM, err := ParsePEMBundle([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	sameChain(t, chainOf(t, chainPEM), ch.leaf, ch.inter)
	checkKeyPEM(t, keyPEM, ch.leaf)
	if bytes.Contains(chainPEM, []byte("\r")) || bytes.Contains(keyPEM, []byte("\r")) {
		t.Error("output keeps CR characters")
	}
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}

func TestParsePEMBundleKeyFormats(t *testing.T) {
	rsaKey := testRSAKey(t)
	rsaCert := makeCert(t, "rsa.example.com", false, []string{"rsa.example.com"}, rsaKey.Public(), nil, rsaKey)
	p8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecKey := newP256(t)
	ecCert := makeCert(t, "ec.example.com", false, []string{"ec.example.com"}, ecKey.Public(), nil, ecKey)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	ecP8, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	edCert := makeCert(t, "ed.example.com", false, []string{"ed.example.com"}, edKey.Public(), nil, edKey)
	edP8, _ := x509.MarshalPKCS8PrivateKey(edKey)

	cases := []struct {
		name string
		cert *x509.Certificate
		key  []byte
	}{
		{"RSA PKCS#1", rsaCert, pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"RSA PKCS#8", rsaCert, pemBlock("PRIVATE KEY", p8)},
		{"EC SEC1", ecCert, pemBlock("EC PRIVATE KEY", sec1)},
		{"EC PKCS#8", ecCert, pemBlock("PRIVATE KEY", ecP8)},
		{"Ed25519 PKCS#8", edCert, pemBlock("PRIVATE KEY", edP8)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			chainPEM, keyPEM, err := ParsePEMBundle(join(c.key, pemBlock("CERTIFICATE", c.cert.Raw)))
			if err != nil {
				t.Fatal(err)
			}
			sameChain(t, chainOf(t, chainPEM), c.cert)
			checkKeyPEM(t, keyPEM, c.cert)
		})
	}
}

func TestParsePEMBundleRejects(t *testing.T) {
	ch := newTestChain(t, "mx.example.com")
	leafPEM := pemBlock("CERTIFICATE", ch.leaf.Raw)
	p8, _ := x509.MarshalPKCS8PrivateKey(ch.leafKey)
	keyPEM := pemBlock("PRIVATE KEY", p8)
	otherP8, _ := x509.MarshalPKCS8PrivateKey(newP256(t))
	otherKey := pemBlock("PRIVATE KEY", otherP8)

	cases := map[string]struct {
		in   []byte
		want string
	}{
		"mismatched key":          {join(leafPEM, otherKey), "does not match"},
		"key of the intermediate": {join(leafPEM, pemBlock("CERTIFICATE", ch.root.Raw), otherKey), "does not match"},
		"no key":                  {leafPEM, "no private key"},
		"no certificate":          {keyPEM, "no certificate"},
		"two keys":                {join(leafPEM, keyPEM, otherKey), "2 private keys"},
		"empty":                   {nil, "no PEM"},
		"not PEM":                 {[]byte("hello"), "no PEM"},
		"encrypted PKCS#8":        {join(leafPEM, pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3})), "encrypted"},
		"encrypted legacy": {join(leafPEM, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
			Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"}, Bytes: []byte{1, 2, 3}})), "encrypted"},
		"corrupt certificate": {join(pemBlock("CERTIFICATE", []byte{0x30, 0x03, 1, 2, 3}), keyPEM), "certificate 1"},
		"corrupt key":         {join(leafPEM, pemBlock("EC PRIVATE KEY", []byte{0x30, 0x01, 0})), "private key"},
		"CSR":                 {join(leafPEM, keyPEM, pemBlock("CERTIFICATE REQUEST", []byte{0x30, 0})), "CERTIFICATE REQUEST"},
	}
	for name, c := range cases {
		_, _, err := ParsePEMBundle(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to mention %q", name, err, c.want)
		}
	}
}

func TestParsePKCS12(t *testing.T) {
	ch := newTestChain(t, "mx.example.com")
	for name, enc := range map[string]*pkcs12.Encoder{"Modern": pkcs12.Modern, "Legacy": pkcs12.Legacy} {
		t.Run(name, func(t *testing.T) {
			pfx, err := enc.Encode(ch.leafKey, ch.leaf, []*x509.Certificate{ch.root, ch.inter}, "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			chainPEM, keyPEM, err := ParsePKCS12(pfx, "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			sameChain(t, chainOf(t, chainPEM), ch.leaf, ch.inter, ch.root)
			checkKeyPEM(t, keyPEM, ch.leaf)
			// Same normalised output as the equivalent PEM bundle.
			p8, _ := x509.MarshalPKCS8PrivateKey(ch.leafKey)
			wantChain, wantKey, err := ParsePEMBundle(join(pemBlock("PRIVATE KEY", p8),
				pemBlock("CERTIFICATE", ch.root.Raw), pemBlock("CERTIFICATE", ch.inter.Raw), pemBlock("CERTIFICATE", ch.leaf.Raw)))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(chainPEM, wantChain) || !bytes.Equal(keyPEM, wantKey) {
				t.Error("PKCS#12 and PEM give different output for the same material")
			}

			if _, _, err := ParsePKCS12(pfx, "wrong"); err == nil || !strings.Contains(err.Error(), "wrong password") {
				t.Errorf("wrong password: %v", err)
			}
		})
	}
	if _, _, err := ParsePKCS12([]byte("not a pfx"), ""); err == nil {
		t.Error("garbage accepted")
	}
	// A file whose key does not match its certificate is refused.
	pfx, err := pkcs12.Modern.Encode(newP256(t), ch.leaf, nil, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ParsePKCS12(pfx, "pw"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched PKCS#12: %v", err)
	}
}

func TestParseChain(t *testing.T) {
	ch := newTestChain(t, "mx.example.com")
	text := "  \r\n" + crlf(indent(string(join(pemBlock("CERTIFICATE", ch.root.Raw), pemBlock("CERTIFICATE", ch.inter.Raw))), " ")) + "\r\n"
	certs, err := ParseChain([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	sameChain(t, certs, ch.root, ch.inter) // order kept as given

	der := append(bytes.Clone(ch.root.Raw), ch.inter.Raw...)
	certs, err = ParseChain(der)
	if err != nil {
		t.Fatalf("DER: %v", err)
	}
	sameChain(t, certs, ch.root, ch.inter)

	p8, _ := x509.MarshalPKCS8PrivateKey(ch.leafKey)
	for name, in := range map[string][]byte{
		"private key included": join(pemBlock("CERTIFICATE", ch.root.Raw), pemBlock("PRIVATE KEY", p8)),
		"empty":                nil,
		"text":                 []byte("just text"),
		"corrupt":              pemBlock("CERTIFICATE", []byte{0x30, 0x00}),
	} {
		if _, err := ParseChain(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestDescribeAndFingerprint(t *testing.T) {
	id := testIdentity(t)
	info, err := Describe(id.FactoryCertPEM)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseCertPEM(t, id.CACertPEM)
	leaf := parseCertPEM(t, id.FactoryCertPEM)
	if info.Subject != "CN=mg1" || info.Issuer != ca.Subject.String() {
		t.Errorf("Subject %q Issuer %q", info.Subject, info.Issuer)
	}
	if info.SelfSigned || info.IsCA {
		t.Errorf("Factory: SelfSigned=%v IsCA=%v", info.SelfSigned, info.IsCA)
	}
	if len(info.DNSNames) != 4 || len(info.IPs) != 3 {
		t.Errorf("DNS %q IPs %v", info.DNSNames, info.IPs)
	}
	if !info.NotAfter.Equal(FactoryNotAfter) || !info.NotBefore.Equal(leaf.NotBefore) {
		t.Errorf("validity %v .. %v", info.NotBefore, info.NotAfter)
	}
	// 32 bytes, upper-case hex, colon separated; equal to Fingerprint and
	// to the hash of the DER.
	if len(info.SHA256) != 32*3-1 || strings.ToUpper(info.SHA256) != info.SHA256 || strings.Count(info.SHA256, ":") != 31 {
		t.Errorf("SHA256 = %q", info.SHA256)
	}
	fp, err := Fingerprint(id.FactoryCertPEM)
	if err != nil || fp != info.SHA256 {
		t.Errorf("Fingerprint = %q, %v; Describe said %q", fp, err, info.SHA256)
	}
	if want := fingerprintDER(leaf.Raw); fp != want {
		t.Errorf("Fingerprint = %q, want %q", fp, want)
	}
	if got := fingerprintDER([]byte("abc")); !strings.HasPrefix(got, "BA:78:16:BF:8F:01:CF:EA") {
		t.Errorf("fingerprintDER(abc) = %q", got)
	}
	// A chain is described by its leaf.
	if fp2, _ := Fingerprint(join(id.FactoryCertPEM, id.CACertPEM)); fp2 != fp {
		t.Error("Fingerprint of a chain is not the leaf's")
	}

	caInfo, err := Describe(id.CACertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !caInfo.SelfSigned || !caInfo.IsCA || caInfo.Subject != caInfo.Issuer {
		t.Errorf("CA: %+v", caInfo)
	}
	if _, err := Describe([]byte("nope")); err == nil {
		t.Error("Describe accepted garbage")
	}
	if _, err := Fingerprint(nil); err == nil {
		t.Error("Fingerprint accepted nothing")
	}
}
