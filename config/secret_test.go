package config_test

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"mailgate/config"
)

func TestPassword(t *testing.T) {
	e := newFactoryEditor()
	run(t, e, "config system admin\nedit admin")
	for _, weak := range []string{"short1!", "alllowercase", "Password", "aaaaaaaaaaaaaaaaaa", ""} {
		ce := mustFail(t, e, "set password "+config.Quote(weak), config.CodeValue, "value parse error before '*'")
		if weak != "" && strings.Contains(ce.Error(), weak) {
			t.Errorf("error for a refused password shows it: %q", ce.Error())
		}
	}
	if e.Work().System.Admin[0].Password != "" {
		t.Fatal("weak password stored")
	}

	const strong = `Sh0rt#er "quoted" \ pass`
	mustExec(t, e, "set password "+config.Quote(strong))
	h := e.Work().System.Admin[0].Password
	if !strings.HasPrefix(h, "$2") || bcrypt.CompareHashAndPassword([]byte(h), []byte(strong)) != nil {
		t.Fatalf("stored %q, want a bcrypt hash of the password", h)
	}
	if cost, _ := bcrypt.Cost([]byte(h)); cost != bcrypt.MinCost {
		t.Errorf("hash cost %d, want Env.HashCost %d", cost, bcrypt.MinCost)
	}
	out := config.Render(e.Work(), true)
	if !strings.Contains(out, "        set password ENC "+h+"\n") || strings.Contains(out, "Sh0rt") {
		t.Fatalf("rendered password:\n%s", out)
	}

	mustExec(t, e, "set password ENC "+pwHash)
	if e.Work().System.Admin[0].Password != pwHash {
		t.Fatal("ENC hash not stored as is")
	}
	mustExec(t, e, "set password ENC "+pwHash[:4]+"12"+pwHash[6:]) // another cost, still a hash
	bad := []string{
		"ENC garbage",
		"ENC " + pwHash[:len(pwHash)-1], // too short
		"ENC " + strings.Replace(pwHash, "$2a$", "$3a$", 1),   // not bcrypt
		"ENC " + `"` + pwHash[:20] + ` ` + pwHash[21:] + `"`,  // a space inside
		"ENC " + `"` + pwHash[:20] + `\"` + pwHash[21:] + `"`, // a quote inside
		"ENC " + pwHash + "xyz",                               // trailing garbage
	}
	for _, line := range bad {
		_, err := exec(e, "set password "+line)
		if err == nil {
			t.Errorf("set password %s: accepted", line)
		}
	}
	mustFail(t, e, "set password ENC "+pwHash+" extra", config.CodeParse, "command parse error before '"+pwHash+"'")
	mustFail(t, e, "set password a b", config.CodeParse, "command parse error before 'b'")
	// A quoted "ENC" is a password, not the marker.
	mustFail(t, e, `set password "ENC" `+pwHash, config.CodeParse, "command parse error before '"+pwHash+"'")
	if e.Work().System.Admin[0].Password[:7] != pwHash[:4]+"12$" {
		t.Fatalf("refused commands changed the password to %q", e.Work().System.Admin[0].Password)
	}
	mustExec(t, e, "unset password")
	if e.Work().System.Admin[0].Password != "" {
		t.Fatal("unset password")
	}
}

func TestCheckPasswordStrength(t *testing.T) {
	cases := []struct {
		pw string
		ok bool
	}{
		{"", false},
		{"Ab1!", false},
		{"Abcdef1", false},            // 7 characters
		{"Abcdefg1", true},            // lower, upper, digit
		{"abcdefg1!", true},           // lower, digit, symbol
		{"ABCDEFG1!", true},           // upper, digit, symbol
		{"abcdefgh", false},           // one class
		{"abcdEFGH", false},           // two classes
		{"abcdefgh1234", false},       // two classes, 12 characters
		{"correcthorsebattery", true}, // passphrase
		{"abcdefghijklmn", true},      // 14 characters
		{"abcdefghijklm", false},      // 13 characters
		{"zzzzzzzzzzzzzzzzzzzz", false},
		{"Ünïcödé1€", true},
		{"ÄÖÜäöü12", true},
		{"ÄÖÜäöü1", false}, // 7 runes, more bytes
		{strings.Repeat("Ab1!", 32), true},
		{strings.Repeat("Ab1!", 32) + "x", false},
		{"pass word 12", true}, // lower, digit, space
	}
	for _, tc := range cases {
		err := config.CheckPasswordStrength(tc.pw)
		if (err == nil) != tc.ok {
			t.Errorf("CheckPasswordStrength(%q) = %v, want ok %v", tc.pw, err, tc.ok)
		}
	}
	h, err := config.HashPassword("Abcdefg1", &config.Env{HashCost: bcrypt.MinCost})
	if err != nil || bcrypt.CompareHashAndPassword([]byte(h), []byte("Abcdefg1")) != nil {
		t.Fatalf("HashPassword: %q %v", h, err)
	}
}

func TestSecrets(t *testing.T) {
	e := newFactoryEditor()
	run(t, e, "config system certificate local\nedit imported")
	mustExec(t, e, "set private-key \""+testKeyPEM+"\"")
	lc := e.Work().System.Certificate.Local[1]
	want, _ := testSeal([]byte(testKeyPEM))
	if lc.PrivateKey != want {
		t.Fatalf("private-key stored as %q, want the sealed token", lc.PrivateKey)
	}
	out := config.Render(e.Work(), true)
	if !strings.Contains(out, "        set private-key ENC "+want+"\n") || strings.Contains(out, "BEGIN PRIVATE KEY") {
		t.Fatalf("rendered:\n%s", out)
	}

	other, _ := testSeal([]byte("another key"))
	mustExec(t, e, "set private-key ENC "+other)
	if e.Work().System.Certificate.Local[1].PrivateKey != other {
		t.Fatal("ENC token not stored as is")
	}
	ce := mustFail(t, e, "set private-key ENC not-a-token", config.CodeValue, "value parse error before 'ENC'")
	if !strings.Contains(ce.Detail, "not sealed by this device") {
		t.Errorf("detail %q", ce.Detail)
	}
	mustFail(t, e, "set private-key ENC "+other+" x", config.CodeParse, "command parse error before '"+other+"'")
	if e.Work().System.Certificate.Local[1].PrivateKey != other {
		t.Fatal("refused command changed the key")
	}

	// Relay passwords are secrets too.
	run(t, e, "next\nend\nconfig mailsetting relay-host-list\nedit smart\nset host-name relay.example.net\nset auth-password \"s3cret pass\"\nnext\nend")
	if got, _ := testOpen(e.Work().Mailsetting.RelayServer[0].AuthPassword); string(got) != "s3cret pass" {
		t.Fatalf("auth-password opens to %q", got)
	}

	// Without a seal a secret cannot be entered in clear text, but sealed
	// tokens are taken as they are (parsing a saved configuration).
	plain := config.NewEditor(config.New(), nil)
	run(t, plain, "config system certificate local\nedit x")
	mustFail(t, plain, "set private-key abc", config.CodeValue, "value parse error before 'abc'")
	mustExec(t, plain, "set private-key ENC anything")

	// Tokens that need quoting survive a round trip.
	for _, tok := range []string{"with space", `with"quote`, `back\slash`, "#hash", "'single'"} {
		c := config.New()
		c.System.Certificate.Local = []config.LocalCert{{Name: "x", Certificate: "c", PrivateKey: tok}}
		out := config.Render(c, true)
		c2, err := config.Parse(out, nil)
		if err != nil {
			t.Fatalf("token %q: %v\n%s", tok, err, out)
		}
		if got := c2.System.Certificate.Local[0].PrivateKey; got != tok {
			t.Fatalf("token %q reads back as %q", tok, got)
		}
	}
}
