// Package sshtest drives the appliance's SSH CLI with the OpenSSH client,
// as an admin would: password login through an askpass helper or a public
// key, commands as arguments or piped on stdin, -tt for an interactive
// session.
package sshtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Client runs ssh against one appliance's port.
type Client struct {
	t       testing.TB
	Port    int
	askpass string
	// knownHosts records the appliance's host key at the first
	// connection; a later run fails (status 255) if the key changed, as it
	// would for an admin after a restart, a reboot or an upgrade.
	knownHosts string
	// Timeout bounds one ssh run (default 60 s).
	Timeout time.Duration
	// LogLevel is ssh's LogLevel ("" = ERROR: no diagnostics, and no
	// pre-authentication banner, which ssh prints from INFO on).
	LogLevel string
}

// New returns a client for port. It needs the OpenSSH client.
func New(t testing.TB, port int) *Client {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Fatal("the OpenSSH client is required (make test installs openssh-client)")
	}
	dir := t.TempDir()
	askpass := filepath.Join(dir, "askpass")
	if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$MG_PASSWORD\"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &Client{t: t, Port: port, askpass: askpass, knownHosts: filepath.Join(dir, "known_hosts"), Timeout: 60 * time.Second}
}

// Run runs ssh with password authentication, stdin and the arguments as
// on ssh's command line (["-tt",] "admin@127.0.0.1" [, command]). It
// returns the output with CRLF turned into LF and the exit status (255:
// ssh itself failed).
func (c *Client) Run(password, stdin string, args ...string) (string, int) {
	c.t.Helper()
	return c.tool("ssh", "-p", password, stdin, passwordAuth, args)
}

// RunKey runs ssh the same way with public-key authentication only, the
// private key read from the file identity (OpenSSH format).
func (c *Client) RunKey(identity, stdin string, args ...string) (string, int) {
	c.t.Helper()
	auth := []string{"-o", "PreferredAuthentications=publickey", "-o", "PubkeyAuthentication=yes",
		"-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes", "-i", identity}
	return c.tool("ssh", "-p", "", stdin, auth, args)
}

// SCP runs scp the same way (["-O",] file, "admin@127.0.0.1:image").
func (c *Client) SCP(password string, args ...string) (string, int) {
	c.t.Helper()
	return c.tool("scp", "-P", password, "", passwordAuth, args)
}

// passwordAuth makes the client log in with the askpass password only.
var passwordAuth = []string{"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1"}

// tool runs an OpenSSH client program, portFlag naming its option for the
// port, auth its authentication options.
func (c *Client) tool(name, portFlag, password, stdin string, auth, args []string) (string, int) {
	c.t.Helper()
	level := c.LogLevel
	if level == "" {
		level = "ERROR"
	}
	base := []string{portFlag, strconv.Itoa(c.Port),
		"-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=" + c.knownHosts, "-o", "LogLevel=" + level,
		"-o", "ConnectTimeout=10"}
	base = append(base, auth...)
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, append(base, args...)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+c.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none", "MG_PASSWORD="+password)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	return strings.ReplaceAll(out.String(), "\r\n", "\n"), code
}

// SetFirstPassword logs in as admin@host with the empty first-boot
// password and sets password at the forced prompt.
func (c *Client) SetFirstPassword(host, password string) {
	c.t.Helper()
	if out, code := c.Run("", password+"\n"+password+"\nexit\n", "-tt", "admin@"+host); code != 0 {
		c.t.Fatalf("first login: %d\n%s", code, out)
	}
}
