package cert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"software.sslmate.com/src/go-pkcs12"
)

// ParsePEMBundle accepts pasted PEM text holding a certificate chain and a
// private key (PKCS#1, PKCS#8 or SEC 1 EC), in any order. Surrounding
// whitespace, indentation, CRLF line ends and text between the PEM blocks
// (such as OpenSSL's "Bag Attributes") are tolerated.
//
// The leaf is the certificate that matches the private key; an error is
// returned when none does. chainPEM holds the leaf first, then the
// certificates that issued it in order, then any others, without
// duplicates. keyPEM is the key in PKCS#8 form.
func ParsePEMBundle(data []byte) (chainPEM, keyPEM []byte, err error) {
	var certs []*x509.Certificate
	var keys []crypto.Signer
	rest := normalisePEMText(data)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("cert: certificate %d: %w", len(certs)+1, err)
			}
			certs = append(certs, c)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if _, ok := block.Headers["DEK-Info"]; ok {
				return nil, nil, errEncryptedKey
			}
			k, err := parsePrivateKey(block)
			if err != nil {
				return nil, nil, err
			}
			keys = append(keys, k)
		case "ENCRYPTED PRIVATE KEY":
			return nil, nil, errEncryptedKey
		case "EC PARAMETERS":
			// Written by `openssl ecparam -genkey`; the key block carries them too.
		default:
			return nil, nil, fmt.Errorf("cert: unexpected PEM block %q", block.Type)
		}
	}
	switch {
	case len(certs) == 0 && len(keys) == 0:
		return nil, nil, errors.New("cert: no PEM certificate or private key found")
	case len(certs) == 0:
		return nil, nil, errors.New("cert: no certificate found")
	case len(keys) == 0:
		return nil, nil, errors.New("cert: no private key found")
	case len(keys) > 1:
		return nil, nil, fmt.Errorf("cert: %d private keys found, want one", len(keys))
	}
	return finishBundle(certs, keys[0])
}

// ParsePKCS12 decodes a PKCS#12 (.pfx/.p12) file protected by password and
// returns its chain (leaf first) and private key in the same normalised PEM
// form as ParsePEMBundle.
func ParsePKCS12(data []byte, password string) (chainPEM, keyPEM []byte, err error) {
	priv, leaf, cas, err := pkcs12.DecodeChain(data, password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return nil, nil, errors.New("cert: PKCS#12: wrong password")
		}
		return nil, nil, fmt.Errorf("cert: PKCS#12: %w", err)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok || !supportedKey(signer) {
		return nil, nil, fmt.Errorf("cert: PKCS#12: unsupported private key type %T", priv)
	}
	return finishBundle(append([]*x509.Certificate{leaf}, cas...), signer)
}

// ParseChain parses certificates only (CA certificates for
// `system certificate ca`). It accepts PEM text with the same tolerance as
// ParsePEMBundle, or DER. Any PEM block other than a certificate, a private
// key in particular, is refused.
func ParseChain(pemText []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := normalisePEMText(pemText)
	found := false
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		found = true
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("cert: unexpected PEM block %q, only certificates are accepted", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cert: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if !found {
		if der := bytes.TrimSpace(pemText); len(der) > 0 && der[0] == 0x30 {
			if cs, err := x509.ParseCertificates(pemText); err == nil && len(cs) > 0 {
				return cs, nil
			}
		}
		return nil, errors.New("cert: no certificate found")
	}
	return certs, nil
}

// EncodeChain returns certs as concatenated PEM CERTIFICATE blocks.
func EncodeChain(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		buf.Write(encodeCert(c.Raw))
	}
	return buf.Bytes()
}

var errEncryptedKey = errors.New("cert: the private key is encrypted; supply it unencrypted (e.g. `openssl pkey -in key.pem`) or as PKCS#12 with its password")

// normalisePEMText turns CR and CRLF line ends into LF and strips the
// spaces and tabs around every line, so that indented or re-wrapped pastes
// decode.
func normalisePEMText(data []byte) []byte {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return []byte(strings.Join(lines, "\n") + "\n")
}

func parsePrivateKey(block *pem.Block) (crypto.Signer, error) {
	var (
		k   any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("cert: private key (%s): %w", block.Type, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok || !supportedKey(s) {
		return nil, fmt.Errorf("cert: unsupported private key type %T", k)
	}
	return s, nil
}

func supportedKey(k crypto.Signer) bool {
	switch k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return true
	}
	return false
}

// keyMatches reports whether key is the private half of c's public key.
func keyMatches(c *x509.Certificate, key crypto.Signer) bool {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(key.Public())
}

// finishBundle picks the leaf matching key, orders the chain and encodes
// both.
func finishBundle(certs []*x509.Certificate, key crypto.Signer) (chainPEM, keyPEM []byte, err error) {
	chain, err := orderChain(certs, key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return EncodeChain(chain), keyPEM, nil
}

// orderChain returns certs with the one matching key first, followed by its
// issuers as far as they are present, then the remaining certificates in
// their original order. Duplicates are dropped.
func orderChain(certs []*x509.Certificate, key crypto.Signer) ([]*x509.Certificate, error) {
	var uniq []*x509.Certificate
	for _, c := range certs {
		dup := false
		for _, u := range uniq {
			if bytes.Equal(u.Raw, c.Raw) {
				dup = true
				break
			}
		}
		if !dup {
			uniq = append(uniq, c)
		}
	}
	leafIdx := -1
	for i, c := range uniq {
		if keyMatches(c, key) {
			leafIdx = i
			break
		}
	}
	if leafIdx < 0 {
		if len(uniq) == 1 {
			return nil, errors.New("cert: the private key does not match the certificate")
		}
		return nil, errors.New("cert: the private key does not match any of the certificates")
	}
	used := make([]bool, len(uniq))
	used[leafIdx] = true
	chain := []*x509.Certificate{uniq[leafIdx]}
	for cur := uniq[leafIdx]; !isSelfSigned(cur); {
		next := -1
		for i, c := range uniq {
			if !used[i] && bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = i
				break
			}
		}
		if next < 0 {
			break
		}
		used[next] = true
		cur = uniq[next]
		chain = append(chain, cur)
	}
	for i, c := range uniq {
		if !used[i] {
			chain = append(chain, c)
		}
	}
	return chain, nil
}

// parseLeafAndKey parses certPEM and keyPEM and checks that the key matches
// the first certificate.
func parseLeafAndKey(certPEM, keyPEM []byte) ([]*x509.Certificate, crypto.Signer, error) {
	certs, err := ParseChain(certPEM)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(normalisePEMText(keyPEM))
	if block == nil {
		return nil, nil, errors.New("cert: no private key found")
	}
	key, err := parsePrivateKey(block)
	if err != nil {
		return nil, nil, err
	}
	if !keyMatches(certs[0], key) {
		return nil, nil, errors.New("cert: the private key does not match the certificate")
	}
	return certs, key, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}
