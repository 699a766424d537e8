package main

import (
	"fmt"
	"net/smtp"
	"strings"
	"testing"

	"mailgate/config/configtest"
)

// A piped script in which one line of a receive rule is refused commits
// nothing of that block and exits non-zero: the typo that used to commit
// "any sender → relay" leaves the appliance refusing to relay.
func TestScriptWithBadLineCommitsNothing(t *testing.T) {
	g := startGateway(t)
	script := strings.Join([]string{
		"config policy access-control receive",
		"    edit 1",
		"        set sender-ip-mask 0.0.0.0/0",
		"        set authenticated authenticatd",
		"        set action relay",
		"    next",
		"end",
		"config system global",
		"    set hostname after-script",
		"end",
	}, "\n") + "\n"
	out, code := g.ssh(newPassword, script, "admin@127.0.0.1")
	if code == 0 || !strings.Contains(out, "1 command(s) failed in this config block; nothing of the block was committed.") {
		t.Fatalf("status %d:\n%s", code, out)
	}
	if show, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "show policy access-control receive"); strings.Contains(show, "edit 1") {
		t.Fatalf("the rule was committed:\n%s", show)
	}
	if show, _ := g.ssh(newPassword, "", "admin@127.0.0.1", "show system global"); !strings.Contains(show, `"after-script"`) {
		t.Fatalf("the next block did not run:\n%s", show)
	}
	out, _ = swaks(t, "--server", fmt.Sprintf("127.0.0.1:%d", g.smtp), "--from", "x@outside.example", "--to", "victim@elsewhere.example")
	if !strings.Contains(out, "550 5.7.1") {
		t.Fatalf("relay not refused:\n%s", out)
	}
}

// The open-relay refusal over OpenSSH fires for every unsafe rule shape
// and none of the safe ones; with the safe ones in place the running
// appliance refuses the relay tricks.
func TestOpenRelayRefusedOverSSH(t *testing.T) {
	g := startGateway(t)
	var unsafe, safe []string
	for _, tc := range configtest.RelayRuleShapes {
		text := "config policy access-control receive\n    purge\nend\n" + configtest.RelayShapeConfig(tc.Lines)
		out, code := g.ssh(newPassword, text, "admin@127.0.0.1")
		refused := strings.Contains(out, "receive 1: open relay")
		switch {
		case tc.Unsafe && (code == 0 || !refused):
			t.Errorf("unsafe rule %q accepted (status %d):\n%s", tc.Lines, code, out)
		case !tc.Unsafe && (code != 0 || refused):
			t.Errorf("safe rule %q refused (status %d):\n%s", tc.Lines, code, out)
		case tc.Unsafe:
			unsafe = append(unsafe, tc.Lines)
		default:
			safe = append(safe, tc.Lines)
		}
	}
	t.Logf("%d unsafe shapes refused, %d safe shapes committed", len(unsafe), len(safe))

	// Every safe relaying shape at once, then the tricks from outside (the
	// test client at 127.0.0.1 is no client network of these rules).
	var b strings.Builder
	b.WriteString("config domain\n    edit example.com\n        set smtp-server 127.0.0.1\n    next\n    edit example.org.\n        set smtp-server 127.0.0.1\n    next\nend\n")
	b.WriteString("config policy access-control receive\n    purge\n")
	id := 0
	for _, tc := range configtest.RelayRuleShapes {
		if tc.Unsafe || strings.Contains(tc.Lines, "sender-ip-mask") || !strings.Contains(tc.Lines, "relay") {
			continue
		}
		id++
		fmt.Fprintf(&b, "    edit %d\n        %s\n    next\n", id, strings.ReplaceAll(tc.Lines, "\n", "\n        "))
	}
	b.WriteString("end\n")
	if out, code := g.ssh(newPassword, b.String(), "admin@127.0.0.1"); code != 0 {
		t.Fatalf("safe rules refused: %d\n%s", code, out)
	}
	c, err := smtp.Dial(fmt.Sprintf("127.0.0.1:%d", g.smtp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, rcpt := range []string{
		"victim@elsewhere.test", "VICTIM@ELSEWHERE.TEST", "victim@elsewhere.test.",
		"@example.com:victim@elsewhere.test", "@example.com,@example.org:victim@elsewhere.test",
		"victim%elsewhere.test", "victim%elsewhere.test@example.com", "elsewhere.test!victim",
		`"victim@elsewhere.test"`, `"victim@elsewhere.test"@example.com`, `"victim"@elsewhere.test`,
		"victim@[192.0.2.1]", "victim@[127.0.0.1]", "victim@[IPv6:::1]",
		"victim@example.com.elsewhere.test", "victim@notexample.com", "victim@mail.example.com", "victim@example.coz",
		"victim@EXAMPLE.COM.", "victim@Example.Org", "victim",
	} {
		if err := c.Mail("ceo@example.com"); err != nil {
			t.Fatalf("MAIL: %v", err)
		}
		err := c.Rcpt(rcpt)
		if err == nil && !protectedDestination(rcpt) {
			t.Errorf("RCPT TO:<%s> accepted: relays to %q", rcpt, rcpt[strings.LastIndexByte(rcpt, '@')+1:])
		}
		t.Logf("RCPT TO:<%s>: %v", rcpt, err)
		if err := c.Reset(); err != nil {
			t.Fatalf("RSET: %v", err)
		}
	}
}

// protectedDestination: the recipient is delivered to example.com or
// example.org (the domain after its last '@', case and a trailing dot
// aside).
func protectedDestination(rcpt string) bool {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return false
	}
	d := strings.ToLower(strings.TrimSuffix(rcpt[at+1:], "."))
	return d == "example.com" || d == "example.org"
}

// A backup of the first release (format 1 names, no format in its header)
// restores over OpenSSH and shows in the current names.
func TestOldBackupRestoresOverSSH(t *testing.T) {
	a := startFresh(t)
	backup, code := a.ssh(newPassword, "", "admin@127.0.0.1", "execute backup config")
	if code != 0 || !strings.Contains(backup, ":format=3\n") {
		t.Fatalf("backup: %d\n%s", code, backup)
	}
	// Turn it into what the first release wrote.
	header, body, _ := strings.Cut(backup, "\n")
	const hosts = "        set trusted-hosts 0.0.0.0/0 ::/0\n"
	if !strings.Contains(body, hosts) {
		t.Fatalf("backup lacks %q:\n%s", hosts, body)
	}
	id, key := newKey(t, t.TempDir(), "old")
	body = strings.Replace(body, hosts, "        set ssh-public-key2 \""+key+"\"\n        set trusthost1 127.0.0.0/8\n        set trusthost2 ::1/128\n", 1)
	old := strings.TrimSuffix(header, ":format=3") + "\n" + body +
		"config mailsetting mail-server-settings\n    set smtp-msa-status disable\nend\n" +
		"config mailsetting queue\n    set retry-interval 7\nend\n" +
		"config mailsetting relayserver\n    edit \"smart\"\n        set server \"relay.example.net\"\n        set port 587\n    next\nend\n" +
		"config policy access-control receive\n    edit 1\n        set authenticated yes\n        set action relay\n    next\nend\n"
	if out, code := a.ssh(newPassword, old, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("restore of an old backup: %d\n%s", code, out)
	}
	out, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration")
	for _, want := range []string{"config system mailserver\n", "    set smtp-msa disable\n", "            set queue-retry 7\n",
		"config mailsetting relay-host-list\n", `        set host-name "relay.example.net"`, "        set host-port 587\n",
		"        set authenticated authenticated\n", "    set relay-server-status enable\n", "        set sshkey \"" + key + "\"\n", "        set trusted-hosts 127.0.0.0/8 ::1/128\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show full-configuration lacks %q", want)
		}
	}
	for _, gone := range []string{"mail-server-settings", "relayserver", "retry-interval", "authenticated yes", "ssh-public-key", "trusthost"} {
		if strings.Contains(out, gone) {
			t.Errorf("show full-configuration still has %q", gone)
		}
	}
	// The key of the old backup logs in.
	if out, code := a.client.RunKey(id, "", "admin@127.0.0.1", "get system status"); code != 0 {
		t.Errorf("key of the old backup: %d\n%s", code, out)
	}
}

// A backup of format 2 (the queue schedule directly in system
// mailserver) restores over OpenSSH with the schedule in mail-queue
// default.
func TestFormat2BackupRestoresOverSSH(t *testing.T) {
	a := startFresh(t)
	backup, code := a.ssh(newPassword, "", "admin@127.0.0.1", "execute backup config")
	header, body, _ := strings.Cut(backup, "\n")
	const queue = "    config mail-queue\n        edit \"default\"\n            set queue-timeout 120\n            set queue-dsn-timeout 5\n" +
		"            set queue-warning 4\n            set queue-retry 15\n        next\n    end\n"
	if code != 0 || !strings.HasSuffix(header, ":format=3") || !strings.Contains(body, queue) {
		t.Fatalf("backup: %d\n%s", code, backup)
	}
	old := strings.TrimSuffix(header, ":format=3") + ":format=2\n" + strings.Replace(body, queue, "", 1) +
		"config system mailserver\n    set queue-retry 9\n    set queue-warning 6\n    set queue-timeout 48\nend\n"
	if out, code := a.ssh(newPassword, old, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("restore of a format 2 backup: %d\n%s", code, out)
	}
	out, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration system mailserver")
	want := "    config mail-queue\n        edit \"default\"\n            set queue-timeout 48\n            set queue-dsn-timeout 5\n" +
		"            set queue-warning 6\n            set queue-retry 9\n        next\n    end\n"
	if !strings.Contains(out, want) {
		t.Errorf("show full-configuration system mailserver lacks\n%s\n%s", want, out)
	}
}
