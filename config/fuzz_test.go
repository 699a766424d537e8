package config_test

import (
	"reflect"
	"strings"
	"testing"

	"mailgate/config"
)

// seedScripts are command sequences an admin types or a backup holds.
func seedScripts(f *testing.F) []string {
	return []string{
		richScript(f),
		"config system global\nset hostname mg1\nset op server\nend\n",
		"conf sys glo\nset host mg1\nset strong dis\nset ssl tls1_3\nend\n",
		"config system admin\nedit ops\nset password \"Str0ng!Passw0rd\"\nset trusted-hosts 192.0.2.0/24 2001:db8::/32\nappend trusted-hosts 10.0.0.0/8\nunset trusted-hosts\nset trusted-hosts ::/0\nnext\nend\n",
		"config system admin\nedit ops\nset sshkey \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop a b\"\nappend sshkey x\nnext\nend\n",
		"config system admin\nedit admin\nset password ENC " + pwHash + "\nset comments \"a \\\"b\\\" \\\\ c\"\nnext\nend\n",
		"config profile tls\nedit p\nset level secure\nnext\nrename p to q\nend\nconfig policy access-control receive\nedit 1\nset tls-profile q\nnext\nedit 2\nnext\nmove 2 before 1\nend\n",
		"config profile tls\nedit p\nnext\nend\nconfig policy access-control receive\nedit 1\nset tls-profile p\nend\nconfig profile tls\ndelete p\npurge\nend\n",
		"config mailsetting starttls\nappend include-hosts a.example\nappend include-hosts .b.example\nconfig host-protocol\nedit [mx.example]\nset ssl-versions tls1_0\nnext\nend\nend\n",
		"config system certificate local\nedit c\nset certificate \"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\"\nset private-key \"key\"\nnext\nrename Factory to old\nend\n",
		"config domain\nedit example.com\nset smtp-server 192.0.2.25\nset comments \"\"\nnext\nend\nconfig domain\nedit example.org\nabort\n",
		"config policy access-control receive\nedit 3\nset sender-pattern \"\"\nset sender-ip-mask 198.51.100.0 255.255.255.0\nset action safe-relay\nnext\nend\n",
		"config system global\nset hostname \"\"\nset timezone \"\"\nend\n",
		"config system route\nedit 1\nset gateway 192.0.2.1\nnext\nedit 2\nnext\npurge\nend\n",
		"config mailsetting relay-host-list\nedit r\nset host-name relay.example.net\nset auth-password \"p w\"\nset auth-password ENC sealed-41\nnext\nend\n",
	}
}

// fuzzEnv hashes passwords at the lowest cost to keep the fuzzers fast.
func fuzzEnv() *config.Env { return testEnv() }

// FuzzParse: no input makes Parse panic; whatever it accepts renders to a
// text that parses back to the same text, and its `show` form too.
func FuzzParse(f *testing.F) {
	for _, s := range seedScripts(f) {
		f.Add(s)
	}
	f.Add(config.Render(config.Factory(factoryOpts(true)), true))
	f.Add(config.Render(config.Factory(factoryOpts(false)), false))
	f.Add("#config-version=1\r\nconfig system dns\r\nset primary 192.0.2.53\r\nend\r\n")
	f.Add("config system certificate ca\nedit x\nset certificate \"a\r\r\nb\"\nnext\nend\n")
	f.Add("config system certificate local\nedit x\nset private-key ENC \"a b\"\nnext\nend\n")
	f.Add("config system global\nset default-certificate \"\"\nend\n")
	f.Add("config system global\nset hostname \"x\n")
	f.Add("end\n")
	// Format 1 texts, read through Migrate.
	f.Add(v1Backup)
	f.Add("#config-version=mailgate-v0.7.0\nconfig system admin\nedit a\nset trusthost3 192.0.2.0/24\nset ssh-public-key2 \"\"\nunset trusthost1\nnext\nrename a to b\nend\n" +
		"config system interface\nedit port1\nset allowaccess ssh smtp\nappend allowaccess https\nnext\nend\n")
	f.Fuzz(checkParse)
}

func checkParse(t *testing.T, text string) {
	env := fuzzEnv()
	c, err := config.Parse(text, env)
	if err != nil {
		return
	}
	_ = config.Validate(c, env)
	full := config.Render(c, true)
	c2, err := config.Parse(full, env)
	if err != nil {
		t.Fatalf("rendered text does not parse: %v\n%s", err, full)
	}
	if again := config.Render(c2, true); again != full {
		t.Fatalf("re-render differs at %s", diffText(again, full))
	}
	show := config.Render(c, false)
	c3, err := config.Parse(show, env)
	if err != nil {
		t.Fatalf("show does not parse: %v\n%s", err, show)
	}
	if again := config.Render(c3, true); again != full {
		t.Fatalf("parsed show differs at %s", diffText(again, full))
	}
}

// FuzzEditor feeds command lines to an Editor on the Factory configuration
// the way the CLI does: refused commands change nothing, every committed
// block renders to a text that parses back the same, and its operations
// replayed on the block's base give the same tree.
func FuzzEditor(f *testing.F) {
	for _, s := range seedScripts(f) {
		f.Add(s)
	}
	f.Add("config system admin\nset x\nedit\nedit admin\nedit admin\nnext\nnext\nend\nend\n")
	f.Add("config mailsetting starttls\nconfig host-protocol\nedit a.example\nend\nset fallback n\nset fallback none\nend\n")
	f.Add("config policy access-control receive\nedit 1\nset tls-profile \"\"\nset action safe\nnext\nmove 1 after 1\nrename 1 to 2\nend\n")
	f.Fuzz(checkEditor)
}

var fuzzBase = config.Factory(factoryOpts(false))

func checkEditor(t *testing.T, script string) {
	env := fuzzEnv()
	lines, _ := config.Lines(script) // the complete lines before an open quote
	committed := fuzzBase.Clone()
	e := config.NewEditor(committed, env)
	for _, l := range lines {
		before := e.Work().Clone()
		depth := e.Depth()
		res, err := e.Exec(l)
		if err != nil {
			if !reflect.DeepEqual(e.Work(), before) {
				t.Fatalf("refused %q changed the tree at %s", words(l), diffText(config.Render(e.Work(), true), config.Render(before, true)))
			}
			if e.Depth() != depth {
				t.Fatalf("refused %q changed the depth", words(l))
			}
			continue
		}
		_, _ = e.Current()
		_ = e.Label()
		switch res {
		case config.Commit:
			full := config.Render(e.Work(), true)
			c2, err := config.Parse(full, env)
			if err != nil {
				t.Fatalf("committed tree does not parse: %v\n%s", err, full)
			}
			if again := config.Render(c2, true); again != full {
				t.Fatalf("committed tree re-renders differently at %s", diffText(again, full))
			}
			r := committed.Clone()
			if err := config.Replay(r, e.Ops()); err != nil {
				t.Fatalf("replay on the block's base: %v", err)
			}
			if again := config.Render(r, true); again != full {
				t.Fatalf("replay differs at %s", diffText(again, full))
			}
			_ = config.Validate(e.Work(), env)
			committed = e.Work()
			e.Reset(committed)
		case config.Aborted:
			if got, want := config.Render(e.Work(), true), config.Render(committed, true); got != want {
				t.Fatalf("abort kept changes at %s", diffText(got, want))
			}
		}
	}
}

// FuzzSplitLine: no panic; Quote reads back as the same word; the words of
// any line, quoted and joined, split into the same words.
func FuzzSplitLine(f *testing.F) {
	for _, s := range quoteCases {
		f.Add(s)
	}
	for _, s := range []string{
		`set comments "a \"b\" \\ c"`, `set x 'single "q"'`, `a\ b`, `"open`, "set certificate \"l1\nl2\"",
		"edit \"ro.user@example.com\"", "#config-version=1", "  set\thostname mg1\r",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !checkQuote(s) {
			toks, open := config.SplitLine(config.Quote(s))
			t.Fatalf("Quote(%q) reads back as %#v open %v", s, toks, open)
		}
		toks, open := config.SplitLine(s)
		_, _ = config.Lines(s)
		if open {
			return
		}
		q := make([]string, len(toks))
		for i, tk := range toks {
			q[i] = config.Quote(tk.Text)
		}
		back, open := config.SplitLine(strings.Join(q, " "))
		if open || len(back) != len(toks) {
			t.Fatalf("%q: quoted words split into %d tokens, open %v", s, len(back), open)
		}
		for i := range back {
			if back[i].Text != toks[i].Text || !back[i].Quoted {
				t.Fatalf("%q: word %d %q reads back as %#v", s, i, toks[i].Text, back[i])
			}
		}
	})
}
