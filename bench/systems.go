//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"mailgate/dnstest"
	"mailgate/postfixtest"
)

// system is a relay under test: it accepts mail on Addr and relays every
// message for benchDomain to the sink it was started with.
type system interface {
	Name() string
	Addr() string
	Procs() procSet
	Stop()
}

const (
	benchDomain = "bench.example"
	benchRcpt   = "user@" + benchDomain
	benchFrom   = "load@client.bench"
	benchHelo   = "client.bench"
	adminPass   = "Bench#Gate2026"
)

func freePort() (int, error) { return postfixtest.FreePort("127.0.0.1") }

// buildMailgate builds the appliance binary into dir.
func buildMailgate(dir string) (string, error) {
	bin := filepath.Join(dir, "mailgate")
	cmd := exec.Command("go", "build", "-o", bin, "mailgate/cmd/mailgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// mailgateSystem is the appliance in gateway mode (its factory mode) on a
// fresh data directory, configured over SSH with the OpenSSH client like
// an administrator would.
type mailgateSystem struct {
	dir     string
	cmd     *exec.Cmd
	out     bytes.Buffer
	dns     *dnstest.Server
	sshPort int
	addr    string
	askpass string
	exited  chan struct{}
}

// startMailgate starts the appliance and relays benchDomain to sink.
func startMailgate(bin, sink string) (*mailgateSystem, error) {
	dir, err := os.MkdirTemp("", "bench-mailgate-")
	if err != nil {
		return nil, err
	}
	m := &mailgateSystem{dir: dir, exited: make(chan struct{})}
	fail := func(err error) (*mailgateSystem, error) {
		m.Stop()
		return nil, err
	}
	// A DNS server on loopback: the appliance's reverse lookups of its
	// clients stay on this machine.
	if m.dns, err = dnstest.Listen("127.0.0.1"); err != nil {
		return fail(err)
	}
	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return fail(err)
		}
	}
	m.sshPort = ports[0]
	m.addr = "127.0.0.1:" + strconv.Itoa(ports[1])
	m.askpass = filepath.Join(dir, "askpass")
	if err := os.WriteFile(m.askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$MG_PASSWORD\"\n"), 0o700); err != nil {
		return fail(err)
	}
	m.cmd = exec.Command(bin, "-profile", "dev", "-data", filepath.Join(dir, "data"), "-listen", "127.0.0.1",
		"-ssh-port", strconv.Itoa(ports[0]), "-smtp-port", strconv.Itoa(ports[1]), "-smtps-port", strconv.Itoa(ports[2]),
		"-msa-port", strconv.Itoa(ports[3]), "-https-port", strconv.Itoa(ports[4]), "-dns-server", m.dns.Addr())
	m.cmd.Stdout, m.cmd.Stderr = &m.out, &m.out
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return fail(err)
	}
	go func() { m.cmd.Wait(); close(m.exited) }()
	if err := postfixtest.WaitListening(net.JoinHostPort("127.0.0.1", strconv.Itoa(m.sshPort)), 20*time.Second); err != nil {
		return fail(fmt.Errorf("mailgate did not listen: %v\n%s", err, m.out.String()))
	}
	// First login: the forced password change.
	if out, err := m.ssh("", adminPass+"\n"+adminPass+"\nexit\n", true); err != nil {
		return fail(fmt.Errorf("first login: %v\n%s", err, out))
	}
	_, sinkPort, _ := net.SplitHostPort(sink)
	setup := strings.Join([]string{
		"config domain", "edit " + benchDomain, "set smtp-server 127.0.0.1", "set smtp-port " + sinkPort, "next", "end",
		// 100 sessions (and 1,000 idle connections) from one address.
		"config system mailserver", "set smtp-max-connections 5000", "set max-connections-per-ip 2000", "end",
	}, "\n") + "\n"
	if out, err := m.ssh(adminPass, setup, false); err != nil {
		return fail(fmt.Errorf("configuration: %v\n%s", err, out))
	}
	if err := postfixtest.WaitListening(m.addr, 20*time.Second); err != nil {
		return fail(fmt.Errorf("mailgate SMTP did not listen: %v\n%s", err, m.out.String()))
	}
	return m, nil
}

// ssh runs the OpenSSH client against the appliance's CLI; the password
// comes from an askpass helper.
// A command runs alone; without one, stdin is the session (with -tt, a
// terminal session).
func (m *mailgateSystem) ssh(password, stdin string, tty bool, command ...string) (string, error) {
	base := []string{"-p", strconv.Itoa(m.sshPort),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-o", "NumberOfPasswordPrompts=1", "-o", "ConnectTimeout=10"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if tty {
		base = append(base, "-tt")
	}
	cmd := exec.CommandContext(ctx, "ssh", append(append(base, "admin@127.0.0.1"), command...)...)
	cmd.Env = append(os.Environ(), "SSH_ASKPASS="+m.askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none", "MG_PASSWORD="+password)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	text := strings.ReplaceAll(string(out), "\r\n", "\n")
	if err == nil && strings.Contains(text, "Command fail") {
		err = errors.New("a command failed")
	}
	return text, err
}

func (m *mailgateSystem) Name() string   { return "mailgate" }
func (m *mailgateSystem) Addr() string   { return m.addr }
func (m *mailgateSystem) Procs() procSet { return procSet{root: m.cmd.Process.Pid} }

// Stop stops the appliance (SIGTERM, then SIGKILL) and removes its data.
func (m *mailgateSystem) Stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(15 * time.Second):
			m.cmd.Process.Kill()
			<-m.exited
		}
	}
	if m.dns != nil {
		m.dns.Close()
	}
	os.RemoveAll(m.dir)
}

// postfixSystem is Debian's Postfix as a private relay instance (its own
// configuration and queue directories; the machine's mail setup is not
// touched), with Postfix's default durability and process limits and the
// TLS settings of Debian's stock main.cf.
type postfixSystem struct {
	inst *postfixtest.Instance
	dir  string
}

// postfixSettings are the main.cf settings the relay gets on top of
// postfixtest's private-instance base (queue and config directories of
// its own, loopback only, no DNS, log file): Debian's stock TLS lines.
func postfixSettings(dir string) map[string]string {
	return map[string]string{
		"smtpd_tls_cert_file":             filepath.Join(dir, "relay-cert.pem"),
		"smtpd_tls_key_file":              filepath.Join(dir, "relay-key.pem"),
		"smtpd_tls_security_level":        "may",
		"smtp_tls_CApath":                 "/etc/ssl/certs",
		"smtp_tls_security_level":         "may",
		"smtp_tls_session_cache_database": "btree:${data_directory}/smtp_scache",
	}
}

func startPostfix(sink string) (*postfixSystem, error) {
	dir, err := os.MkdirTemp("", "bench-postfix-")
	if err != nil {
		return nil, err
	}
	p := &postfixSystem{dir: dir}
	certPEM, keyPEM, err := postfixtest.SelfSigned("relay.test")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "relay-cert.pem"), certPEM, 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "relay-key.pem"), keyPEM, 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	p.inst, err = postfixtest.NewRelay(postfixtest.RelayOptions{RelayHost: sink, Dir: dir, Extra: postfixSettings(dir)})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

func (p *postfixSystem) Name() string { return "postfix" }
func (p *postfixSystem) Addr() string { return p.inst.Addr }

func (p *postfixSystem) Procs() procSet {
	return procSet{root: p.inst.MasterPID(), tree: true}
}

func (p *postfixSystem) Stop() {
	p.inst.Stop()
	os.RemoveAll(p.dir)
}

// sink is the protected domain's mail server: smtp-sink(1), which counts
// messages and throws them away. smtp-sink has no TLS: for STARTTLS on the
// second hop a Postfix sink instance with STARTTLS sits in front of it as a
// before-queue proxy (smtpd_proxy_filter), so that no disk queue slows the
// sink down; the same sink serves both systems.
type sink struct {
	null    *postfixtest.NullSink
	nullPID int // smtp-sink's process, for its CPU time
	front   *postfixtest.Instance
	Addr    string
}

// The sink runs at lower CPU priority (nice): it is the measuring
// apparatus, and on a small machine the Postfix STARTTLS proxy's CPU
// (about 2 ms per message, twice mailgate's) would otherwise be taken from
// the acceptance being measured. Both systems get the same sink.
func startSink(withTLS bool, nice int) (*sink, error) {
	null, err := postfixtest.NewSmtpSink("127.0.0.1", 0)
	if err != nil {
		return nil, err
	}
	s := &sink{null: null, Addr: null.Addr, nullPID: childNamed("smtp-sink")}
	if err := renice(s.nullPID, nice); err != nil {
		s.Stop()
		return nil, err
	}
	if !withTLS {
		return s, nil
	}
	certPEM, keyPEM, err := postfixtest.SelfSigned("sink.bench", "127.0.0.1")
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.front, err = postfixtest.NewSink(postfixtest.SinkOptions{Hostname: "sink.bench", TLSCertPEM: certPEM, TLSKeyPEM: keyPEM,
		Extra: map[string]string{"smtpd_proxy_filter": null.Addr}})
	if err != nil {
		s.Stop()
		return nil, err
	}
	s.Addr = s.front.Addr
	// The master forks smtpd processes as connections come: they inherit
	// its priority.
	if err := renice(s.frontPID(), nice); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func renice(pid, nice int) error {
	if nice == 0 {
		return nil
	}
	if pid <= 0 {
		return fmt.Errorf("sink: no process to renice")
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, pid, nice); err != nil {
		return fmt.Errorf("sink: renice %d: %w", pid, err)
	}
	return nil
}

// frontPID is the STARTTLS sink's Postfix master (0 without one).
func (s *sink) frontPID() int {
	if s.front == nil {
		return 0
	}
	return s.front.MasterPID()
}

// cpu is the CPU seconds the sink used so far.
func (s *sink) cpu() float64 {
	c, _ := procCPU(s.nullPID, false)
	if pid := s.frontPID(); pid > 0 {
		c += procSet{root: pid, tree: true}.cpu()
	}
	return c
}

func (s *sink) Count() int { return s.null.Count() }

func (s *sink) WaitCount(n int, timeout time.Duration) error { return s.null.WaitCount(n, timeout) }

func (s *sink) Stop() {
	if s.front != nil {
		s.front.Stop()
	}
	s.null.Stop()
}
