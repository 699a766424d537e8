package admin_test

import (
	"errors"
	"testing"

	"mailgate/admin/admintest"
	"mailgate/config"
	"mailgate/config/configtest"
)

// A commit check refuses a configuration the running system cannot do,
// with its sentence, and commits nothing; without its objection the same
// commit goes through.
func TestCommitCheck(t *testing.T) {
	svc, _ := admintest.Open(t, t.TempDir(), nil)
	cur, rev := svc.Config()
	refuse := errors.New("transparent mode needs transparent sockets (IP_TRANSPARENT), which this kernel refuses")
	var seen *config.Config
	svc.SetCommitCheck(func(c *config.Config) error {
		seen = c
		if c.System.Global.Hostname == "refused" {
			return refuse
		}
		return nil
	})
	c := configtest.Apply(t, cur.Clone(), "config system global\nset hostname refused\nend\n")
	if err := svc.Replace("admin", "test", c); !errors.Is(err, refuse) {
		t.Fatalf("commit: %v", err)
	}
	if now, r := svc.Config(); r != rev || now.System.Global.Hostname == "refused" {
		t.Fatalf("a refused commit changed the configuration (revision %d → %d)", rev, r)
	}
	c = configtest.Apply(t, cur.Clone(), "config system global\nset hostname allowed\nend\n")
	if err := svc.Replace("admin", "test", c); err != nil || seen == nil || seen.System.Global.Hostname != "allowed" {
		t.Fatalf("commit: %v, checked %v", err, seen)
	}
}
