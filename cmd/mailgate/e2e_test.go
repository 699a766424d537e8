package main

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"mailgate/postfixtest"
	"mailgate/sshtest"
)

// This test walks the README with the OpenSSH client against the real
// binary: first login with the empty password, the forced password change,
// a domain, a TLS profile and a receive rule, show full-configuration,
// a restart that keeps the same text, and a restore piped over ssh.

const newPassword = "Gate#Keeper2026"

type instance struct {
	t      *testing.T
	bin    string
	data   string
	port   int
	cmd    *exec.Cmd
	client *sshtest.Client
	args   []string // extra flags
	out    *bytes.Buffer
}

// built is the appliance binary, built once for all the tests of a run
// into a directory TestMain removes.
var built struct {
	once sync.Once
	dir  string
	err  error
}

// buildBinary returns the path of the appliance binary.
func buildBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "mailgate-e2e-"); built.err != nil {
			return
		}
		if out, err := exec.Command("go", "build", "-o", filepath.Join(built.dir, "mailgate"), ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatalf("build: %v", built.err)
	}
	return filepath.Join(built.dir, "mailgate")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// newInstance builds the binary and starts it on a fresh data directory.
func newInstance(t *testing.T, args ...string) *instance {
	t.Helper()
	dir := t.TempDir()
	a := &instance{t: t, bin: buildBinary(t), data: filepath.Join(dir, "data"), port: postfixtest.Port(t), args: args}
	a.client = sshtest.New(t, a.port)
	a.start()
	t.Cleanup(func() {
		if a.cmd.ProcessState == nil {
			a.stop(syscall.SIGTERM)
		}
	})
	return a
}

func (a *instance) start() {
	a.t.Helper()
	a.out = &bytes.Buffer{}
	a.cmd = exec.Command(a.bin, append([]string{"-profile", "dev", "-data", a.data, "-listen", "127.0.0.1", "-ssh-port", strconv.Itoa(a.port)}, a.args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	if err := postfixtest.WaitListening(fmt.Sprintf("127.0.0.1:%d", a.port), 20*time.Second); err != nil {
		a.t.Fatalf("appliance did not listen: %v\n%s", err, a.out)
	}
}

func (a *instance) stop(sig syscall.Signal) {
	a.t.Helper()
	a.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		a.cmd.Process.Kill()
		a.t.Fatalf("appliance did not stop on %v\n%s", sig, a.out)
	}
}

// ssh runs the OpenSSH client with password authentication (the password
// comes from an askpass helper), stdin and extra arguments.
func (a *instance) ssh(password, stdin string, args ...string) (string, int) {
	a.t.Helper()
	return a.client.Run(password, stdin, args...)
}

func TestREADMEWalkthroughWithOpenSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("the OpenSSH client is required (make test installs openssh-client)")
	}
	a := newInstance(t)

	// Without a terminal, the blank first-boot password runs nothing.
	out, code := a.ssh("", "", "admin@127.0.0.1", "show")
	if code == 0 || !strings.Contains(out, "password change required") {
		t.Fatalf("blank password without a terminal: status %d\n%s", code, out)
	}
	// A wrong password is refused (and logged).
	if out, code = a.ssh("wrong-password", "", "admin@127.0.0.1", "show"); code != 255 {
		t.Fatalf("wrong password: status %d\n%s", code, out)
	}

	// First interactive login: the password change comes first.
	session := strings.Join([]string{
		"weak", "weak", // refused: too weak
		newPassword, newPassword,
		"config system global", "set hostname mg1", "end",
		"config domain", "edit example.com", "set smtp-server 192.0.2.25", "next", "end",
		"config profile tls", "edit Angou", "set level encrypt", "set action tempfail", "next", "end",
		"config policy access-control receive", "edit 1", "set recipient-pattern *@example.com",
		"set tls-profile Angou", "set action relay", "next", "end",
		"exit", "",
	}, "\n")
	out, code = a.ssh("", session, "-tt", "admin@127.0.0.1")
	if code != 0 {
		t.Fatalf("first login: status %d\n%s", code, out)
	}
	if !strings.Contains(out, "New password:") || strings.Index(out, "mailgate #") < strings.Index(out, "New password:") {
		t.Fatalf("first login did not start with the password change:\n%s", out)
	}
	if !strings.Contains(out, "password too") {
		t.Fatalf("weak password not refused:\n%s", out)
	}
	if !strings.Contains(out, "mg1 (1) #") {
		t.Fatalf("configuration session did not run:\n%s", out)
	}

	before, code := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration")
	if code != 0 {
		t.Fatalf("show full-configuration: %d\n%s", code, before)
	}
	for _, want := range []string{`set hostname "mg1"`, `edit "example.com"`, `edit "Angou"`, "set level encrypt", `set tls-profile "Angou"`, "set password ENC $2"} {
		if !strings.Contains(before, want) {
			t.Fatalf("show full-configuration lacks %q:\n%s", want, before)
		}
	}

	// Restart: the same text, byte for byte.
	a.stop(syscall.SIGTERM)
	a.start()
	after, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration")
	if after != before {
		t.Fatalf("configuration changed across a restart:\n--- before\n%s\n--- after\n%s", before, after)
	}

	// Backup, change, restore by piping the backup into ssh.
	backup, code := a.ssh(newPassword, "", "admin@127.0.0.1", "execute backup config")
	if code != 0 || !strings.HasPrefix(backup, "#config-version=") {
		t.Fatalf("backup: %d\n%s", code, backup)
	}
	if out, code = a.ssh(newPassword, "config system global\nset hostname changed\nend\n", "admin@127.0.0.1"); code != 0 {
		t.Fatalf("piped commands: %d\n%s", code, out)
	}
	if out, _ = a.ssh(newPassword, "", "admin@127.0.0.1", "show system global"); !strings.Contains(out, `"changed"`) {
		t.Fatalf("piped change not applied:\n%s", out)
	}
	if out, code = a.ssh(newPassword, backup, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("piped restore: %d\n%s", code, out)
	}
	if out, _ = a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration"); out != before {
		t.Fatalf("restore did not reproduce the configuration:\n%s", out)
	}
	// A failing command sets the exit status.
	if _, code = a.ssh(newPassword, "", "admin@127.0.0.1", "show nosuch"); code == 0 {
		t.Fatal("failed command exited 0")
	}
	events, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "diagnose log event 200")
	for _, want := range []string{"login failed", "configuration revision"} {
		if !strings.Contains(events, want) {
			t.Errorf("event log lacks %q:\n%s", want, events)
		}
	}

	// kill -9 and restart: still the last committed configuration.
	a.stop(syscall.SIGKILL)
	a.start()
	if out, _ = a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration"); out != before {
		t.Fatalf("configuration after kill -9 differs:\n%s", out)
	}
}

// startFresh builds and starts an appliance and sets the first password.
func startFresh(t *testing.T, args ...string) *instance {
	t.Helper()
	a := newInstance(t, args...)
	a.client.SetFirstPassword("127.0.0.1", newPassword)
	return a
}

func TestEveryCommandOverOpenSSH(t *testing.T) {
	a := startFresh(t)
	dir := t.TempDir()
	// A PEM certificate and a PKCS#12 file made by openssl, to import.
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	key, crt, p12 := filepath.Join(dir, "k.pem"), filepath.Join(dir, "c.pem"), filepath.Join(dir, "c.p12")
	run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
		"-days", "30", "-subj", "/CN=mail.example.org", "-addext", "subjectAltName=DNS:mail.example.org")
	run("openssl", "pkcs12", "-export", "-inkey", key, "-in", crt, "-out", p12, "-passout", "pass:p12-secret")
	keyPEM, _ := os.ReadFile(key)
	crtPEM, _ := os.ReadFile(crt)
	p12Raw, _ := os.ReadFile(p12)

	script := []string{
		// Tables: create, rename, move, delete, purge (with its question).
		"config profile tls", "edit A", "set level encrypt", "next", "edit B", "next", "edit C", "next",
		"rename B to Bee", "move C before A", "delete A", "end",
		"show profile tls",
		"config policy access-control receive", "edit 1", "set tls-profile Bee", "set sender-ip-mask 192.0.2.0/24", "set action relay", "next", "end",
		"config profile tls", "delete Bee", "end", // refused: in use
		"config mailsetting starttls", "set include-hosts example.com", "append include-hosts .example.net [mx.example.org]",
		"unset fallback", "end",
		"show mailsetting starttls",
		"config system global", "set admin-idle-timeout 0", "set hostname e2e", "abort",
		"config system dns", "set primary not-an-ip", "end",
		"frobnicate now",
		"show domain no-such.example",
		"config policy access-control receive", "purge", "y", "end",
		// '?' help typed mid-line over the PTY: the help prints, the line stays.
		"config system global", "set admin-idle?-timeout 20", "end",
		"get system global",
		"execute certificate local generate web mail.example.com mail.example.com",
		"execute certificate local import pem",
	}
	script = append(script, strings.Split(strings.TrimSpace(string(crtPEM)+"\n"+string(keyPEM)), "\n")...)
	script = append(script, ".", "execute certificate local import-pkcs12 p12", "p12-secret")
	b64 := base64.StdEncoding.EncodeToString(p12Raw)
	for len(b64) > 64 {
		script = append(script, b64[:64])
		b64 = b64[64:]
	}
	script = append(script, b64, ".",
		"diagnose certificate local p12",
		"execute config list",
		"execute config diff 2",
		"execute config revert 1", "n",
		"execute config revert 999",
		"exit", "")
	out, code := a.ssh(newPassword, strings.Join(script, "\n"), "-tt", "admin@127.0.0.1")
	if code != 0 {
		t.Fatalf("session status %d\n%s", code, out)
	}
	for _, want := range []string{
		"    edit \"C\"\n    next\n    edit \"Bee\"", // C moved before A, B renamed, A deleted
		"The entry is used by other 1 entries",
		"set include-hosts \"example.com\" \".example.net\" \"[mx.example.org]\"",
		"admin-idle-timeout: 0 is out of range 1-480",
		"value parse error before 'not-an-ip'",
		"command parse error before 'frobnicate'\nCommand fail. Return code -61",
		"entry not found\nCommand fail. Return code",
		"This operation will clear all table!",
		"admin-idle-timeout  Idle timeout of admin sessions, in minutes. <integer 1-480>",
		"Certificate \"web\" issued by the device CA.",
		"Certificate \"pem\" imported: CN=mail.example.org",
		"Certificate \"p12\" imported: CN=mail.example.org",
		"Names:       mail.example.org",
		"(current)",
		"revision 999 not found",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("session output lacks %q", want)
		}
	}
	// get aligns the values after the longest attribute name.
	if !regexp.MustCompile(`\nadmin-idle-timeout +: 20\n`).MatchString(out) {
		t.Errorf("get system global lacks admin-idle-timeout : 20")
	}
	if t.Failed() {
		t.Logf("session output:\n%s", out)
	}
	cfg, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration")
	if strings.Contains(cfg, "BEGIN EC PRIVATE KEY") || strings.Contains(cfg, "BEGIN PRIVATE KEY") {
		t.Fatal("a private key appears in clear in the configuration")
	}
	if strings.Contains(cfg, `edit "B"`) || strings.Contains(cfg, `edit "A"`) || !strings.Contains(cfg, `edit "Bee"`) {
		t.Fatalf("rename/delete not applied:\n%s", cfg)
	}

	// Reboot: the process restarts itself and comes back with the same configuration.
	if out, code = a.ssh(newPassword, "y\n", "admin@127.0.0.1", "execute reboot"); !strings.Contains(out, "Do you want to continue? (y/n)\nThe system is going down") {
		t.Fatalf("reboot: %d\n%s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, code := a.ssh(newPassword, "", "admin@127.0.0.1", "get system status")
		if code == 0 && strings.Contains(status, "Uptime") && !strings.Contains(status, "Uptime                      : 1m") {
			if again, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "show full-configuration"); again != cfg {
				t.Fatal("configuration changed across the reboot")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("appliance did not come back after reboot:\n%s\n%s", status, a.out)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Factory reset: the blank first-boot password again, the Factory certificate kept.
	fp, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "get system status")
	if out, _ = a.ssh(newPassword, "y\n", "admin@127.0.0.1", "execute factoryreset"); !strings.Contains(out, "Do you want to continue? (y/n)\nThe configuration was reset to factory defaults") {
		t.Fatalf("factoryreset:\n%s", out)
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		out, code = a.ssh("", "", "admin@127.0.0.1", "show")
		if strings.Contains(out, "password change required") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no blank password after factory reset: %d\n%s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.ssh("", newPassword+"\n"+newPassword+"\nexit\n", "-tt", "admin@127.0.0.1")
	after, _ := a.ssh(newPassword, "", "admin@127.0.0.1", "get system status")
	if factoryLine(fp) == "" || factoryLine(fp) != factoryLine(after) {
		t.Fatalf("the Factory certificate changed on factory reset:\n%s\n%s", fp, after)
	}
	if out, _ = a.ssh(newPassword, "", "admin@127.0.0.1", "show"); strings.Contains(out, "Bee") || strings.Contains(out, "p12") {
		t.Fatalf("factory reset kept configuration:\n%s", out)
	}
}

func factoryLine(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "Factory certificate SHA-256") {
			return l
		}
	}
	return ""
}

// The README's environment variables set every port for one run, and a
// value that is not a port stops the start with a clear message.
func TestPortsFromEnvironment(t *testing.T) {
	bin := buildBinary(t)
	ports := map[string]int{}
	for _, name := range []string{"SSH", "HTTPS", "SMTP", "SMTPS", "MSA"} {
		ports[name] = postfixtest.Port(t)
	}
	cmd := exec.Command(bin, "-profile", "dev")
	cmd.Env = append(os.Environ(), "MAILGATE_DATA="+filepath.Join(t.TempDir(), "data"), "MAILGATE_LISTEN=127.0.0.1")
	for name, port := range ports {
		cmd.Env = append(cmd.Env, fmt.Sprintf("MAILGATE_%s_PORT=%d", name, port))
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := func(name string) string { return fmt.Sprintf("127.0.0.1:%d", ports[name]) }
	for name := range ports {
		if err := postfixtest.WaitListening(addr(name), 20*time.Second); err != nil {
			t.Fatalf("%s port from MAILGATE_%s_PORT: %v\n%s", name, name, err, out.String())
		}
	}
	// Each port serves what its name says.
	for _, name := range []string{"SMTP", "MSA"} {
		if _, err := greets(addr(name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	c, err := tls.Dial("tcp", addr("SMTPS"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("SMTPS: %v", err)
	}
	if _, err := greeting(c); err != nil {
		t.Fatalf("SMTPS: %v", err)
	}
	web := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := web.Get("https://" + addr("HTTPS") + "/")
	if err != nil {
		t.Fatalf("web UI: %v", err)
	}
	resp.Body.Close()
	if out, code := sshtest.New(t, ports["SSH"]).Run("", "", "admin@127.0.0.1", "show"); code == 255 || !strings.Contains(out, "password change required") {
		t.Fatalf("SSH CLI: status %d\n%s", code, out)
	}

	bad := exec.Command(bin, "-profile", "dev", "-data", filepath.Join(t.TempDir(), "data"))
	bad.Env = append(os.Environ(), "MAILGATE_SMTP_PORT=25x")
	msg, err := bad.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(msg), `MAILGATE_SMTP_PORT="25x" is not a port number`) {
		t.Fatalf("bad port in the environment: %v\n%s", err, msg)
	}
}

// newKey makes an OpenSSH key pair in dir and returns the private key's
// file and the public key's authorized_keys line.
func newKey(t *testing.T, dir, name string) (identity, line string) {
	t.Helper()
	identity = filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@host", "-f", identity).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(identity + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return identity, strings.TrimSpace(string(pub))
}

// The README's `set sshkey` over OpenSSH: the key logs in, a second one
// appended does too, and trusted-hosts decides where from.
func TestSSHKeyAndTrustedHostsWithOpenSSH(t *testing.T) {
	a := startFresh(t)
	dir := t.TempDir()
	id1, key1 := newKey(t, dir, "one")
	id2, key2 := newKey(t, dir, "two")
	if out, code := a.client.RunKey(id1, "", "admin@127.0.0.1", "show system admin"); code != 255 {
		t.Fatalf("key login before sshkey is set: %d\n%s", code, out)
	}
	script := "config system admin\n    edit admin\n        set sshkey \"" + key1 + "\"\n    next\nend\n"
	if out, code := a.ssh(newPassword, script, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("set sshkey: %d\n%s", code, out)
	}
	out, code := a.client.RunKey(id1, "", "admin@127.0.0.1", "show system admin")
	if code != 0 || !strings.Contains(out, "        set sshkey \""+key1+"\"\n") {
		t.Fatalf("key login: %d\n%s", code, out)
	}
	if out, code := a.client.RunKey(id2, "", "admin@127.0.0.1", "show system admin"); code != 255 {
		t.Fatalf("another key logged in: %d\n%s", code, out)
	}
	// append adds the second key; a bad element is refused by name.
	script = "config system admin\n    edit admin\n        append sshkey \"" + key2 + "\"\n" +
		"        set trusted-hosts 127.0.0.0/8 ::1/128\n    next\nend\n"
	if out, code := a.client.RunKey(id1, script, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("append sshkey: %d\n%s", code, out)
	}
	out, code = a.client.RunKey(id2, "", "admin@127.0.0.1", "show system admin")
	if code != 0 || !strings.Contains(out, "        set sshkey \""+key1+"\" \""+key2+"\"\n") ||
		!strings.Contains(out, "        set trusted-hosts 127.0.0.0/8 ::1/128\n") {
		t.Fatalf("second key: %d\n%s", code, out)
	}
	bad := "config system admin\n    edit admin\n        set trusted-hosts 127.0.0.0/8 10.0.0.0/33\n    next\nend\n"
	if out, code := a.ssh(newPassword, bad, "admin@127.0.0.1"); code == 0 || !strings.Contains(out, `element "10.0.0.0/33" is not an IPv4 or IPv6 prefix`) {
		t.Fatalf("bad trusted host: %d\n%s", code, out)
	}
	// Narrowed to a network the client is not in: neither the key nor
	// the password logs in.
	narrow := "config system admin\n    edit admin\n        set trusted-hosts 192.0.2.0/24\n    next\nend\n"
	if out, code := a.ssh(newPassword, narrow, "admin@127.0.0.1"); code != 0 {
		t.Fatalf("narrow trusted-hosts: %d\n%s", code, out)
	}
	if out, code := a.client.RunKey(id1, "", "admin@127.0.0.1", "show system admin"); code != 255 {
		t.Fatalf("key login from an untrusted host: %d\n%s", code, out)
	}
	if out, code := a.ssh(newPassword, "", "admin@127.0.0.1", "show system admin"); code != 255 {
		t.Fatalf("password login from an untrusted host: %d\n%s", code, out)
	}
}

// system admin access gui: the administrator can no longer use the CLI
// over OpenSSH.
func TestAdminAccessOverOpenSSH(t *testing.T) {
	a := startFresh(t)
	if out, code := a.ssh(newPassword, "config system admin\nedit admin\nset access gui\nnext\nend\n", "admin@127.0.0.1"); code != 0 {
		t.Fatalf("set access gui: %d\n%s", code, out)
	}
	if out, code := a.ssh(newPassword, "", "admin@127.0.0.1", "get system status"); code == 0 {
		t.Fatalf("CLI login without cli access:\n%s", out)
	}
}
