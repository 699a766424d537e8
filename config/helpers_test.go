package config_test

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	gossh "golang.org/x/crypto/ssh"

	"mailgate/config"
)

// sealPrefix marks tokens of the test seal: a reversible transform that
// stands in for the device key.
const sealPrefix = "sealed-"

func testSeal(p []byte) (string, error) { return sealPrefix + hex.EncodeToString(p), nil }

func testOpen(t string) ([]byte, error) {
	if !strings.HasPrefix(t, sealPrefix) {
		return nil, errors.New("not sealed by this device")
	}
	return hex.DecodeString(strings.TrimPrefix(t, sealPrefix))
}

// testEnv seals with the test transform and hashes with the cheapest cost.
func testEnv() *config.Env {
	return &config.Env{Seal: testSeal, Open: testOpen, HashCost: bcrypt.MinCost}
}

const testCertPEM = `-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ2VydGlmaWNhdGUgZm9yIHRlc3RzMAoGCCqGSM49BAMC
MBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEw
-----END CERTIFICATE-----`

const testKeyPEM = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgdGVzdCBrZXkgb25s
eSBub3QgYSByZWFsIGtleQ==
-----END PRIVATE KEY-----`

// factoryOpts are the options of a device with a Factory certificate.
func factoryOpts(dev bool) config.FactoryOptions {
	sealed, _ := testSeal([]byte(testKeyPEM))
	return config.FactoryOptions{Dev: dev, FactoryCertPEM: testCertPEM + "\n", FactoryKeySealed: sealed}
}

// testAuthKey is a valid authorized_keys line.
func testAuthKey(t testing.TB) string {
	t.Helper()
	return authKey(t, 0, "admin@example.com")
}

// otherAuthKey is a second one, of another key.
func otherAuthKey(t testing.TB) string {
	t.Helper()
	return authKey(t, 1, "ops@example.com")
}

func authKey(t testing.TB, seed byte, comment string) string {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	pub := ed25519.NewKeyFromSeed(s).Public()
	k, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(gossh.MarshalAuthorizedKey(k))) + " " + comment
}

// run executes a script on e and fails the test on any refused command.
// It returns the result of the last command.
func run(t testing.TB, e *config.Editor, script string) config.Result {
	t.Helper()
	lines, err := config.Lines(script)
	if err != nil {
		t.Fatalf("Lines: %v", err)
	}
	res := config.Continue
	for _, l := range lines {
		if res, err = e.Exec(l); err != nil {
			t.Fatalf("%s: %v", words(l), err)
		}
	}
	return res
}

// exec runs one command line on e.
func exec(e *config.Editor, line string) (config.Result, error) {
	toks, open := config.SplitLine(line)
	if open {
		return config.Continue, fmt.Errorf("open quote in %q", line)
	}
	return e.Exec(toks)
}

// mustFail runs line and checks it is refused with code and message.
func mustFail(t testing.TB, e *config.Editor, line string, code int, msg string) *config.Error {
	t.Helper()
	_, err := exec(e, line)
	if err == nil {
		t.Fatalf("%q: accepted, want error %d %q", line, code, msg)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%q: error %T %v, want *config.Error", line, err, err)
	}
	if ce.Code != code || ce.Msg != msg {
		t.Fatalf("%q: error %d %q (detail %q), want %d %q", line, ce.Code, ce.Msg, ce.Detail, code, msg)
	}
	return ce
}

func mustExec(t testing.TB, e *config.Editor, line string) config.Result {
	t.Helper()
	res, err := exec(e, line)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return res
}

func words(toks []config.Token) string {
	s := make([]string, len(toks))
	for i, t := range toks {
		s[i] = t.Text
	}
	return strings.Join(s, " ")
}

func mustParse(t testing.TB, text string, env *config.Env) *config.Config {
	t.Helper()
	c, err := config.Parse(text, env)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, text)
	}
	return c
}

// diffText reports the first differing line of two texts.
func diffText(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n  got  %q\n  want %q", i+1, x, y)
		}
	}
	return "identical"
}

func sameText(t testing.TB, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s differs at %s", what, diffText(got, want))
	}
}

// pwHash is a bcrypt hash of a strong password, made once.
var pwHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("An0ther#Secret"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()
