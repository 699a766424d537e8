package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This test walks the README with the OpenSSH client against the real
// binary: first login with the empty password, the forced password change,
// a domain, a TLS profile and a receive rule, show full-configuration,
// a restart that keeps the same text, and a restore piped over ssh.

const newPassword = "Gate#Keeper2026"

type instance struct {
	t       *testing.T
	bin     string
	data    string
	port    int
	cmd     *exec.Cmd
	askpass string
	out     *bytes.Buffer
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailgate")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (a *instance) start() {
	a.t.Helper()
	a.out = &bytes.Buffer{}
	a.cmd = exec.Command(a.bin, "-profile", "dev", "-data", a.data, "-listen", "127.0.0.1", "-ssh-port", strconv.Itoa(a.port))
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", a.port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("appliance did not listen: %v\n%s", err, a.out)
		}
		time.Sleep(50 * time.Millisecond)
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
	base := []string{"-p", strconv.Itoa(a.port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", append(base, args...)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+a.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none", "MG_PASSWORD="+password)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		a.t.Fatalf("ssh: %v", err)
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n"), code
}

func TestREADMEWalkthroughWithOpenSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("the OpenSSH client is required (make test installs openssh-client)")
	}
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$MG_PASSWORD\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	a := &instance{t: t, bin: buildBinary(t), data: filepath.Join(dir, "data"), port: freePort(t), askpass: askpass}
	a.start()
	defer func() {
		if a.cmd.ProcessState == nil {
			a.stop(syscall.SIGTERM)
		}
	}()

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
