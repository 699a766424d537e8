package fortimail_test

import (
	"os"
	"testing"

	"mailgate/admin/admintest"
	"mailgate/config"
	"mailgate/config/fortimail"
)

// FuzzImport: no backup makes Import panic; what it returns validates
// (the open-relay check among the rest) and renders to a text that parses
// again, and its report renders.
func FuzzImport(f *testing.F) {
	svc, _ := admintest.Open(f, f.TempDir(), nil)
	base, _ := svc.Config()
	env := fortimail.Env{Config: svc.Env(), Factory: svc.Factory}
	for _, name := range []string{"../testdata/fortimail-gateway.conf", "testdata/backup.conf"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(string(b))
		}
	}
	f.Add("config policy access-control receive\n    edit 1\n        set action relay\n    next\nend\n")
	f.Add("config system admin\n    edit x\n        set password ENC abc\n    next\nend\n")
	f.Add("config nosuch\n    config deeper\n        set a b\n    end\nend\nconfig system dns\n    set primary 192.0.2.53\nend\n")
	f.Add("config system global\n    set hostname \"unterminated\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, rep, err := fortimail.Import(header+text, base, env)
		_ = rep.String()
		if err != nil {
			return
		}
		if c == nil {
			t.Fatal("no error and no configuration")
		}
		if err := config.Validate(c, env.Config); err != nil {
			t.Fatalf("imported configuration does not validate: %v", err)
		}
		if _, err := config.Parse(config.Render(c, true), env.Config); err != nil {
			t.Fatalf("imported configuration does not render to a text that parses: %v", err)
		}
	})
}
