package config_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"mailgate/config"
)

func tok(s string) config.Token  { return config.Token{Text: s} }
func qtok(s string) config.Token { return config.Token{Text: s, Quoted: true} }

func TestSplitLine(t *testing.T) {
	cases := []struct {
		in   string
		want []config.Token
		open bool
	}{
		{"", nil, false},
		{"   \t ", nil, false},
		{"set hostname mg1", []config.Token{tok("set"), tok("hostname"), tok("mg1")}, false},
		{"  set\thostname   mg1  \r", []config.Token{tok("set"), tok("hostname"), tok("mg1")}, false},
		{`set comments "two  words"`, []config.Token{tok("set"), tok("comments"), qtok("two  words")}, false},
		{`set comments ""`, []config.Token{tok("set"), tok("comments"), qtok("")}, false},
		{`set comments ''`, []config.Token{tok("set"), tok("comments"), qtok("")}, false},
		{`set comments 'it''s'`, []config.Token{tok("set"), tok("comments"), qtok("its")}, false},
		{`set comments 'say "hi"'`, []config.Token{tok("set"), tok("comments"), qtok(`say "hi"`)}, false},
		{`set comments "it's"`, []config.Token{tok("set"), tok("comments"), qtok("it's")}, false},
		{`"a \"b\" \\ c"`, []config.Token{qtok(`a "b" \ c`)}, false},
		{`"a\nb \x"`, []config.Token{qtok(`a\nb \x`)}, false},        // other escapes stay as typed
		{`'a\'`, []config.Token{qtok(`a\`)}, false},                  // no escapes in single quotes
		{`a\ b c\"d`, []config.Token{tok("a b"), tok(`c"d`)}, false}, // escapes outside quotes
		{`trailing\`, []config.Token{tok(`trailing\`)}, false},
		{`pre"quoted mid"post`, []config.Token{qtok("prequoted midpost")}, false},
		{`"a"'b'c`, []config.Token{qtok("abc")}, false},
		{"set certificate \"line1\nline2\"", []config.Token{tok("set"), tok("certificate"), qtok("line1\nline2")}, false},
		{"set certificate \"line1", []config.Token{tok("set"), tok("certificate")}, true},
		{`set x 'open`, []config.Token{tok("set"), tok("x")}, true},
		{`"escaped quote \"`, nil, true},
		{"# comment \"", []config.Token{tok("#"), tok("comment")}, true}, // quotes count in comments too
		{"#config-version=FML", []config.Token{tok("#config-version=FML")}, false},
		{"über straße", []config.Token{tok("über"), tok("straße")}, false},
	}
	for _, tc := range cases {
		got, open := config.SplitLine(tc.in)
		if open != tc.open || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitLine(%q) = %#v, %v; want %#v, %v", tc.in, got, open, tc.want, tc.open)
		}
	}
}

func TestIsComment(t *testing.T) {
	for in, want := range map[string]bool{
		"# x":              true,
		"#config-version=": true,
		`"#" quoted`:       false,
		"set # x":          false,
		"":                 false,
	} {
		toks, _ := config.SplitLine(in)
		if got := config.IsComment(toks); got != want {
			t.Errorf("IsComment(%q) = %v", in, got)
		}
	}
}

func TestLines(t *testing.T) {
	text := "#config-version=mailgate-dev:format=2\r\n\r\nconfig system global\r\n    set hostname mg1\r\nend\r\n" +
		"config system certificate ca\r\n    edit x\r\n        set certificate \"-----BEGIN-----\r\nAAAA\r\n\r\n-----END-----\"\r\n    next\r\nend"
	lines, err := config.Lines(text)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range lines {
		got = append(got, words(l))
	}
	want := []string{
		"#config-version=mailgate-dev:format=2",
		"config system global",
		"set hostname mg1",
		"end",
		"config system certificate ca",
		"edit x",
		"set certificate -----BEGIN-----\nAAAA\n\n-----END-----",
		"next",
		"end",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Lines:\n%q\nwant\n%q", got, want)
	}
	c := mustParse(t, text, nil)
	if c.System.Global.Hostname != "mg1" || c.System.Certificate.CA[0].Certificate != "-----BEGIN-----\nAAAA\n\n-----END-----" {
		t.Fatalf("parsed CRLF text: %q %q", c.System.Global.Hostname, c.System.Certificate.CA[0].Certificate)
	}

	_, err = config.Lines("config system global\nset hostname mg1\nset comments \"open\n\nstill open")
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Code != config.CodeParse || ce.Msg != "unterminated quote" || ce.Detail != "at line 3" {
		t.Fatalf("unterminated quote: %#v", err)
	}
	if lines, err := config.Lines(""); err != nil || len(lines) != 0 {
		t.Fatalf("Lines(\"\") = %v, %v", lines, err)
	}
}

// quoteCases are words that need quoting or escaping.
var quoteCases = []string{
	"", " ", "plain", "two words", `"`, `\`, `\\`, `\"`, `"\`, `a"b'c`, "'", "''",
	"line1\nline2", "crlf\r\n", "\t", "#not a comment", "ENC", "trailing\\",
	"über", "\x00", "\xff\xfe invalid utf-8", "\xe2\x82", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
}

func checkQuote(s string) bool {
	toks, open := config.SplitLine(config.Quote(s))
	return !open && len(toks) == 1 && toks[0].Quoted && toks[0].Text == s
}

func TestQuoteSplitLineIdentity(t *testing.T) {
	for _, s := range quoteCases {
		if !checkQuote(s) {
			toks, open := config.SplitLine(config.Quote(s))
			t.Errorf("Quote(%q) = %s reads back as %#v open %v", s, config.Quote(s), toks, open)
		}
	}
	if err := quick.Check(checkQuote, &quick.Config{MaxCount: 2000}); err != nil {
		t.Error(err)
	}
	// Random bytes, not only valid UTF-8.
	if err := quick.Check(func(b []byte) bool { return checkQuote(string(b)) }, &quick.Config{MaxCount: 2000}); err != nil {
		t.Error(err)
	}
	// Several quoted words on one line split back into the same words.
	line := make([]string, len(quoteCases))
	for i, s := range quoteCases {
		line[i] = config.Quote(s)
	}
	toks, open := config.SplitLine("set x " + strings.Join(line, " "))
	if open || len(toks) != len(quoteCases)+2 {
		t.Fatalf("joined quoted words: %d tokens, open %v", len(toks), open)
	}
	for i, s := range quoteCases {
		if toks[i+2].Text != s {
			t.Errorf("word %d: %q, want %q", i, toks[i+2].Text, s)
		}
	}
}

func TestMatches(t *testing.T) {
	choices := []string{"next-retry", "next-retry-any", "none", "plain"}
	cases := []struct {
		word string
		want []string
	}{
		{"next-retry", []string{"next-retry"}},
		{"next-retry-", []string{"next-retry-any"}},
		{"n", []string{"next-retry", "next-retry-any", "none"}},
		{"p", []string{"plain"}},
		{"x", nil},
		{"", nil}, // an empty (quoted) word selects nothing
	}
	for _, tc := range cases {
		if got := config.Matches(tc.word, choices); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Matches(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}
