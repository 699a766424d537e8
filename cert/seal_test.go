package cert

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"regexp"
	"testing"
)

func deviceKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

var printable = regexp.MustCompile(`^[A-Za-z0-9+/]+=*$`)

func TestSealOpenRoundTrip(t *testing.T) {
	key := deviceKey(t)
	for _, plain := range [][]byte{testIdentity(t).FactoryKeyPEM, []byte("x"), {}} {
		tok, err := Seal(key, plain)
		if err != nil {
			t.Fatal(err)
		}
		if !printable.MatchString(tok) {
			t.Errorf("token %q is not plain base64", tok)
		}
		if bytes.Contains([]byte(tok), []byte("PRIVATE")) {
			t.Error("token leaks the plaintext")
		}
		got, err := Open(key, tok)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, want %q", got, plain)
		}
		// Surrounding whitespace from a config file is tolerated.
		if got, err := Open(key, " "+tok+"\n"); err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Open with whitespace: %q, %v", got, err)
		}
	}
}

func TestSealRandomNonce(t *testing.T) {
	key := deviceKey(t)
	a, _ := Seal(key, []byte("same"))
	b, _ := Seal(key, []byte("same"))
	if a == b {
		t.Fatal("sealing twice gave the same token")
	}
}

func TestOpenWrongKeyOrCorrupt(t *testing.T) {
	key := deviceKey(t)
	tok, err := Seal(key, []byte("-----BEGIN PRIVATE KEY-----"))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(tok)
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return base64.StdEncoding.EncodeToString(b)
	}
	cases := map[string]struct {
		key []byte
		tok string
	}{
		"wrong key":       {deviceKey(t), tok},
		"flipped version": {key, flip(0)},
		"flipped nonce":   {key, flip(3)},
		"flipped body":    {key, flip(len(raw) - 20)},
		"flipped tag":     {key, flip(len(raw) - 1)},
		"truncated":       {key, base64.StdEncoding.EncodeToString(raw[:len(raw)-1])},
		"too short":       {key, base64.StdEncoding.EncodeToString(raw[:10])},
		"not base64":      {key, "not base64!"},
		"empty":           {key, ""},
	}
	for name, c := range cases {
		_, err := Open(c.key, c.tok)
		if !errors.Is(err, ErrSealed) {
			t.Errorf("%s: err = %v, want ErrSealed", name, err)
			continue
		}
		if err.Error() != "private key was sealed by another device or is corrupt" {
			t.Errorf("%s: message %q", name, err)
		}
	}
}

func TestSealBadKeyLength(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := Seal(make([]byte, n), []byte("x")); err == nil {
			t.Errorf("Seal accepted a %d-byte key", n)
		}
		if _, err := Open(make([]byte, n), "AAAA"); err == nil || errors.Is(err, ErrSealed) {
			t.Errorf("Open with a %d-byte key: %v, want a key-length error", n, err)
		}
	}
}
