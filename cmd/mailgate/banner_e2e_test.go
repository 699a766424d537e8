package main

import (
	"strings"
	"testing"
)

// The login banners of system global as the OpenSSH client shows them:
// the pre-login banner before the password prompt, the post-login banner
// at the start of an interactive session only.
func TestLoginBannersOverOpenSSH(t *testing.T) {
	a := startFresh(t)
	const (
		pre  = "Authorised use only.\nAll access is logged."
		post = "Welcome to the lab gateway.\nChanges are audited."
	)
	// Refused without a text, then set with multi-line texts piped in.
	if out, code := a.ssh(newPassword, "config system global\nset post-login-banner admin\nset post-login-banner-message \"\"\nend\n", "admin@127.0.0.1"); code == 0 ||
		!strings.Contains(out, "post-login-banner admin needs a post-login-banner-message") {
		t.Fatalf("banner without a text: status %d\n%s", code, out)
	}
	script := "config system global\n" +
		"set pre-login-banner admin\nset pre-login-banner-message \"" + pre + "\"\n" +
		"set post-login-banner admin\nset post-login-banner-message \"" + post + "\"\n" +
		"end\n"
	if out, code := a.ssh(newPassword, script, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("setting the banners: status %d\n%s", code, out)
	}

	// A command prints the configuration and nothing else: no post-login
	// banner (ssh's LogLevel ERROR keeps the pre-login banner out too).
	out, code := a.ssh(newPassword, "", "admin@127.0.0.1", "show system global")
	if code != 0 || !strings.HasPrefix(out, "config system global\n") || !strings.HasSuffix(out, "end\n") {
		t.Fatalf("show system global: status %d\n%s", code, out)
	}
	if n := strings.Count(out, "Welcome to the lab gateway."); n != 1 || !strings.Contains(out, `set post-login-banner-message "Welcome to the lab gateway.`) {
		t.Fatalf("show system global has the post-login banner outside its setting:\n%s", out)
	}

	// With ssh's default LogLevel the pre-login banner is printed, before
	// the command's output.
	a.client.LogLevel = "INFO"
	out, code = a.ssh(newPassword, "", "admin@127.0.0.1", "get system global")
	if code != 0 || !strings.HasPrefix(out, pre+"\n") || !strings.Contains(out, "hostname") {
		t.Fatalf("pre-login banner: status %d\n%s", code, out)
	}
	if strings.Contains(out, "Welcome to the lab gateway.") {
		t.Fatalf("post-login banner on a command's output:\n%s", out)
	}
	// Also when the login fails.
	if out, code = a.ssh("wrong-password", "", "admin@127.0.0.1", "get system global"); code != 255 || !strings.Contains(out, pre) {
		t.Fatalf("failed login: status %d\n%s", code, out)
	}

	// An interactive session: the post-login banner, then the prompt.
	out, code = a.ssh(newPassword, "exit\n", "-tt", "admin@127.0.0.1")
	if code != 0 {
		t.Fatalf("interactive session: status %d\n%s", code, out)
	}
	b, p := strings.Index(out, post+"\n"), strings.Index(out, "mailgate #")
	if b < 0 || p < 0 || b > p || !strings.HasPrefix(out, pre+"\n") {
		t.Fatalf("interactive session: pre-login banner first, then the post-login banner before the prompt:\n%s", out)
	}

	// Turned off, read afresh for the next connection: no banner at all.
	if out, code = a.ssh(newPassword, "config system global\nunset pre-login-banner\nunset post-login-banner\nend\n", "admin@127.0.0.1"); code != 0 {
		t.Fatalf("turning the banners off: status %d\n%s", code, out)
	}
	out, _ = a.ssh(newPassword, "exit\n", "-tt", "admin@127.0.0.1")
	if strings.Contains(out, "Authorised use only.") || strings.Contains(out, "Welcome to the lab gateway.") || !strings.Contains(out, "mailgate #") {
		t.Fatalf("banners shown while off:\n%s", out)
	}
}
