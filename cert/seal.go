package cert

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrSealed is returned by Open when a token cannot be opened with the
// device key: it was sealed on another device, or it is damaged.
var ErrSealed = errors.New("private key was sealed by another device or is corrupt")

// sealVersion is the first byte of every sealed token; it leaves room for a
// different scheme later.
const sealVersion = 1

// sealAAD binds tokens to their purpose.
var sealAAD = []byte("mailgate sealed private key v1")

// Seal encrypts plaintext (a PEM private key) under the 32-byte device key
// with AES-256-GCM and a random nonce. The result is printable: standard
// base64 with no spaces or quotes, safe to store in the configuration.
func Seal(deviceKey, plaintext []byte) (string, error) {
	aead, err := newAEAD(deviceKey)
	if err != nil {
		return "", err
	}
	buf := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	buf[0] = sealVersion
	if _, err := rand.Read(buf[1:]); err != nil {
		return "", fmt.Errorf("cert: generating nonce: %w", err)
	}
	buf = aead.Seal(buf, buf[1:], plaintext, sealAAD)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// Open reverses Seal. A wrong device key or a damaged token yields
// ErrSealed.
func Open(deviceKey []byte, token string) ([]byte, error) {
	aead, err := newAEAD(deviceKey)
	if err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(token))
	if err != nil || len(raw) < 1+aead.NonceSize()+aead.Overhead() || raw[0] != sealVersion {
		return nil, ErrSealed
	}
	nonce := raw[1 : 1+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, raw[1+aead.NonceSize():], sealAAD)
	if err != nil {
		return nil, ErrSealed
	}
	return plain, nil
}

func newAEAD(deviceKey []byte) (cipher.AEAD, error) {
	if len(deviceKey) != DeviceKeySize {
		return nil, fmt.Errorf("cert: device key is %d bytes, want %d", len(deviceKey), DeviceKeySize)
	}
	block, err := aes.NewCipher(deviceKey)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	return cipher.NewGCM(block)
}
