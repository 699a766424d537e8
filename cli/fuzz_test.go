package cli

import (
	"strings"
	"testing"

	"mailgate/config"
)

// FuzzSession runs arbitrary lines through an admin session, as typed or
// piped: no input may panic, a refused line leaves the committed
// configuration as it was, and whatever gets committed renders, parses
// and renders again to the same text. Help ('?') and completion (Tab) of
// every prefix of every line must not panic either.
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"config system global\nset hostname fz\nend\nshow\nget system status\n",
		"show full-configuration system global\nshow domain x\nget\nget system dns\n",
		"config domain\nedit example.com\nset smtp-server 192.0.2.1\nnext\nend\nshow domain example.com\n",
		"config profile tls\nedit A\nset level secure\nset check-ca-name enable\nnext\nrename A to B\nend\n",
		"config policy access-control receive\nedit 1\nset action relay\nnext\nedit 2\nnext\nmove 2 before 1\npurge\ny\nend\n",
		"execute backup config\nexecute config list\nexecute config diff 1\nexecute config revert 1\nn\n",
		"execute restore config\nconfig system dns\nset primary 192.0.2.53\nend\n.\ny\n",
		"execute certificate local import pem\n-----BEGIN CERTIFICATE-----\n.\n",
		"execute factoryreset\nmaybe\nexecute reboot\nn\nexecute nothing\ndiagnose log event\n",
		"config system global\nset operation-mode server\nend\nconfig system global\nset operation-mode gateway\nend\ny\n",
		"conf sys glo\nset admin-idle?\nunset hostname\nabort\nexit\n",
		"\"unterminated\nconfig 'system' \"global\"\nset hostname \"a b\"\nend\n",
	} {
		f.Add(s)
	}
	svc := openService(f, f.TempDir())
	f.Fuzz(func(t *testing.T, script string) {
		if len(script) > 4096 {
			return
		}
		s := NewSession(svc, "admin", false)
		defer s.Close()
		lines := strings.Split(script, "\n")
		con := &scriptConsole{in: lines, interactive: len(script)%2 == 0}
		for {
			l, err := con.ReadLine("")
			if err != nil {
				break
			}
			for i := 0; i <= len(l); i += 1 + len(l)/8 {
				s.Help(l[:i])
				s.Complete(l[:i])
			}
			before, rev := svc.Config()
			if s.Run(l, con) != nil {
				if now, nowRev := svc.Config(); nowRev != rev || now != before {
					t.Fatalf("refused %q committed revision %d", l, nowRev)
				}
			}
			if s.Exited() {
				break
			}
		}
		c, _ := svc.Config()
		full := config.Render(c, true)
		c2, err := config.Parse(full, svc.Env())
		if err != nil {
			t.Fatalf("committed configuration does not parse: %v\n%s", err, full)
		}
		if again := config.Render(c2, true); again != full {
			t.Fatal("committed configuration renders differently after a parse")
		}
	})
}
