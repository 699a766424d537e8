// Package postfixtest runs private Postfix instances as real SMTP peers for
// tests and benchmarks: a sink that accepts mail for any domain and stores
// every message as a file (optionally with STARTTLS, or with a STARTTLS
// that always fails), a relay MTA that forwards everything to one host,
// and the fast null sink smtp-sink(1).
//
// Each instance has its own configuration, queue and data directories
// under one instance directory, listens only on the loopback address it
// is given, logs to a file in the instance directory (the postlog
// service), and never touches /etc/postfix's configuration or port 25.
// The master daemon is started directly (master -w), which takes a
// fraction of a second; Postfix needs root.
//
// The New* functions and methods returning errors serve plain programs;
// StartSink, StartRelay and SmtpSink wrap them for tests (failing the test
// on error and stopping the instance when the test ends).
package postfixtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// Paths of the Postfix programs (Debian layout).
var (
	MasterPath   = "/usr/lib/postfix/sbin/master"
	PostfixPath  = "/usr/sbin/postfix"
	SmtpSinkPath = "/usr/sbin/smtp-sink"
	MetaDir      = "/etc/postfix" // read-only: postfix-files, dynamicmaps.cf
)

// SinkOptions configure a sink: a Postfix that accepts mail for every
// domain and delivers each message to a file (a maildir).
type SinkOptions struct {
	// Listen is the loopback address to listen on (default 127.0.0.1).
	Listen string
	// Port is the SMTP port (0: a free one).
	Port int
	// Hostname is myhostname, shown in the greeting (default sink.test).
	Hostname string
	// TLSCertPEM and TLSKeyPEM offer STARTTLS with this certificate
	// (smtpd_tls_security_level = may).
	TLSCertPEM, TLSKeyPEM []byte
	// BrokenTLS advertises STARTTLS and accepts the command, but every
	// handshake fails: the server only allows TLS 1.2 and below with a
	// DHE cipher suite, which Go's crypto/tls does not implement ("no
	// shared cipher"). A certificate is generated when none is given.
	BrokenTLS bool
	// RefuseTLS advertises STARTTLS but answers it with "454 4.7.0 TLS
	// not available due to local problem" (the key does not match the
	// certificate), so the session stays in plain text.
	RefuseTLS bool
	// RejectRcpt rejects recipients at RCPT time: address -> reply, e.g.
	// "550 5.1.1 No such user" or "450 4.2.1 Try later".
	RejectRcpt map[string]string
	// RejectSender rejects senders at MAIL time: address -> reply, e.g.
	// "451 4.3.0 Try later". Setting it turns off smtpd_delay_reject.
	RejectSender map[string]string
	// NetNS runs the sink in that network namespace (ip netns): Listen
	// is then any address of it and Port must be set.
	NetNS string
	// Dir is the instance directory (""; a new temporary directory that
	// Stop removes). Messages go to Dir/mail/sink/new.
	Dir string
	// SASLUsers turns on SMTP AUTH (Cyrus SASL with its own sasldb;
	// PLAIN, LOGIN and CRAM-MD5) for these users: "name@realm" ->
	// password. A login name without "@" is in the realm of Hostname.
	SASLUsers map[string]string
	// SMTPS makes the listener implicit TLS (smtpd_tls_wrappermode); it
	// needs a certificate.
	SMTPS bool
	// Extra main.cf settings, overriding the defaults.
	Extra map[string]string
}

// SaslPasswdPath is Cyrus SASL's tool for its password database
// (Debian's sasl2-bin).
var SaslPasswdPath = "/usr/sbin/saslpasswd2"

// RelayOptions configure a relay: Postfix as an MTA that relays all mail
// from loopback clients to RelayHost, with Postfix's default durability.
type RelayOptions struct {
	Listen   string // default 127.0.0.1
	Port     int    // 0: a free one
	Hostname string // default relay.test
	// RelayHost is the next hop, "127.0.0.1:2525" (relayhost = [ip]:port).
	RelayHost string
	Dir       string
	Extra     map[string]string
}

// Instance is a running Postfix.
type Instance struct {
	Dir     string // instance directory
	Addr    string // SMTP listener, host:port
	Port    int
	MailDir string // sink: the maildir messages are delivered to

	ownDir  bool
	netns   string
	watch   *exec.Cmd
	mu      sync.Mutex
	stopped bool
}

// NewSink starts a sink instance.
func NewSink(o SinkOptions) (*Instance, error) {
	if o.Hostname == "" {
		o.Hostname = "sink.test"
	}
	inst, err := prepare(o.Dir, o.Listen, o.Port, o.NetNS)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Instance, error) {
		inst.cleanup()
		return nil, err
	}
	nobody, nogroup, err := nobodyIDs()
	if err != nil {
		return fail(err)
	}
	mail := filepath.Join(inst.Dir, "mail")
	if err := os.MkdirAll(mail, 0o755); err != nil {
		return fail(err)
	}
	if err := os.Chown(mail, nobody, nogroup); err != nil {
		return fail(err)
	}
	inst.MailDir = filepath.Join(mail, "sink")

	var access strings.Builder
	for _, rcpt := range slices.Sorted(maps.Keys(o.RejectRcpt)) {
		fmt.Fprintf(&access, "%s\t%s\n", strings.ToLower(rcpt), o.RejectRcpt[rcpt])
	}
	accessFile := filepath.Join(inst.Dir, "rcpt_access")
	if err := writeOld(accessFile, []byte(access.String())); err != nil {
		return fail(err)
	}

	var senders strings.Builder
	for _, from := range slices.Sorted(maps.Keys(o.RejectSender)) {
		fmt.Fprintf(&senders, "%s\t%s\n", strings.ToLower(from), o.RejectSender[from])
	}
	sendersFile := filepath.Join(inst.Dir, "sender_access")
	if err := writeOld(sendersFile, []byte(senders.String())); err != nil {
		return fail(err)
	}

	cf := baseMain(inst, o.Hostname, o.Listen)
	cf["virtual_mailbox_domains"] = "static:ALL"
	cf["virtual_mailbox_base"] = mail
	cf["virtual_mailbox_maps"] = "static:sink/"
	cf["virtual_uid_maps"] = "static:" + strconv.Itoa(nobody)
	cf["virtual_gid_maps"] = "static:" + strconv.Itoa(nogroup)
	cf["virtual_minimum_uid"] = "1"
	cf["smtpd_recipient_restrictions"] = "check_recipient_access texthash:" + accessFile + ", permit_mynetworks, reject_unauth_destination"
	if len(o.RejectSender) > 0 {
		cf["smtpd_sender_restrictions"] = "check_sender_access texthash:" + sendersFile
		cf["smtpd_delay_reject"] = "no"
	}

	certPEM, keyPEM := o.TLSCertPEM, o.TLSKeyPEM
	if (o.BrokenTLS || o.RefuseTLS) && (len(certPEM) == 0 || len(keyPEM) == 0) {
		certPEM, keyPEM, err = SelfSigned(o.Hostname)
		if err != nil {
			return fail(err)
		}
	}
	if o.RefuseTLS {
		// A key that does not belong to the certificate: smtpd disables
		// TLS at run time and answers STARTTLS with 454.
		if _, keyPEM, err = SelfSigned("other-key"); err != nil {
			return fail(err)
		}
	}
	if len(certPEM) > 0 && len(keyPEM) > 0 {
		certFile, keyFile := filepath.Join(inst.Dir, "smtpd-cert.pem"), filepath.Join(inst.Dir, "smtpd-key.pem")
		if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
			return fail(err)
		}
		cf["smtpd_tls_security_level"] = "may"
		cf["smtpd_tls_cert_file"] = certFile
		cf["smtpd_tls_key_file"] = keyFile
		cf["smtpd_tls_loglevel"] = "1"
		cf["smtpd_tls_received_header"] = "yes"
		if o.BrokenTLS {
			cf["smtpd_tls_protocols"] = "!SSLv2, !SSLv3, !TLSv1.3"
			cf["smtpd_tls_ciphers"] = "high"
			cf["tls_high_cipherlist"] = "DHE-RSA-AES256-GCM-SHA384"
		}
	}
	if o.SMTPS {
		cf["smtpd_tls_wrappermode"] = "yes"
	}
	if len(o.SASLUsers) > 0 {
		if err := inst.sasl(cf, o.SASLUsers); err != nil {
			return fail(err)
		}
	}
	maps.Copy(cf, o.Extra)
	if err := inst.start(cf); err != nil {
		return fail(err)
	}
	return inst, nil
}

// sasl writes a Cyrus SASL configuration and password database of the
// instance's own and turns SMTP AUTH on, also without TLS.
func (i *Instance) sasl(cf map[string]string, users map[string]string) error {
	db := filepath.Join(i.Dir, "sasldb2")
	conf := fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN CRAM-MD5\nsasldb_path: %s\n", db)
	// Debian's smtpd reads $config_directory/sasl/smtpd.conf.
	if err := os.MkdirAll(filepath.Join(i.Dir, "sasl"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(i.Dir, "sasl", "smtpd.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(users)) {
		user, realm, ok := strings.Cut(name, "@")
		if !ok {
			realm = cf["myhostname"]
		}
		cmd := exec.Command(SaslPasswdPath, "-p", "-c", "-f", db, "-u", realm, user)
		cmd.Stdin = strings.NewReader(users[name])
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("saslpasswd2 %s: %v: %s", name, err, out)
		}
	}
	if err := os.Chmod(db, 0o644); err != nil {
		return err
	}
	cf["smtpd_sasl_auth_enable"] = "yes"
	cf["smtpd_sasl_type"] = "cyrus"
	cf["smtpd_sasl_path"] = "smtpd"
	cf["smtpd_sasl_security_options"] = "noanonymous"
	cf["smtpd_tls_auth_only"] = "no"
	return nil
}

// NewRelay starts a relay instance.
func NewRelay(o RelayOptions) (*Instance, error) {
	if o.RelayHost == "" {
		return nil, errors.New("postfixtest: RelayHost is required")
	}
	host, port, err := net.SplitHostPort(o.RelayHost)
	if err != nil {
		return nil, fmt.Errorf("postfixtest: RelayHost: %w", err)
	}
	if o.Hostname == "" {
		o.Hostname = "relay.test"
	}
	inst, err := prepare(o.Dir, o.Listen, o.Port, "")
	if err != nil {
		return nil, err
	}
	cf := baseMain(inst, o.Hostname, o.Listen)
	cf["relayhost"] = "[" + host + "]:" + port
	cf["smtpd_relay_restrictions"] = "permit_mynetworks, reject"
	maps.Copy(cf, o.Extra)
	if err := inst.start(cf); err != nil {
		inst.cleanup()
		return nil, err
	}
	return inst, nil
}

// StartSink starts a sink for a test and stops it when the test ends.
func StartSink(t testing.TB, o SinkOptions) *Instance {
	t.Helper()
	inst, err := NewSink(o)
	if err != nil {
		t.Fatalf("postfix sink: %v", err)
	}
	t.Cleanup(func() { inst.Stop() })
	return inst
}

// StartRelay starts a relay for a test and stops it when the test ends.
func StartRelay(t testing.TB, o RelayOptions) *Instance {
	t.Helper()
	inst, err := NewRelay(o)
	if err != nil {
		t.Fatalf("postfix relay: %v", err)
	}
	t.Cleanup(func() { inst.Stop() })
	return inst
}

// prepare creates the instance directory layout.
func prepare(dir, listen string, port int, netns string) (*Instance, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("postfixtest: Postfix instances need root")
	}
	if _, err := os.Stat(MasterPath); err != nil {
		return nil, fmt.Errorf("postfixtest: Postfix is not installed (make test-deps): %w", err)
	}
	if listen == "" {
		listen = "127.0.0.1"
	}
	ip := net.ParseIP(listen)
	if netns != "" && (ip == nil || port == 0) {
		return nil, fmt.Errorf("postfixtest: in a network namespace, give the address and port (%q, %d)", listen, port)
	} else if netns == "" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("postfixtest: %q is not a loopback address", listen)
	}
	inst := &Instance{netns: netns}
	if dir == "" {
		d, err := os.MkdirTemp("", "postfixtest-")
		if err != nil {
			return nil, err
		}
		dir, inst.ownDir = d, true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	inst.Dir = dir
	// Postfix daemons run as the postfix user inside the queue directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		inst.cleanup()
		return nil, err
	}
	if port == 0 {
		p, err := freePort(listen)
		if err != nil {
			inst.cleanup()
			return nil, err
		}
		port = p
	}
	inst.Port = port
	inst.Addr = net.JoinHostPort(listen, strconv.Itoa(port))
	if err := makeQueueDirs(dir); err != nil {
		inst.cleanup()
		return nil, err
	}
	return inst, nil
}

// baseMain is main.cf common to every instance: private directories,
// loopback only, no DNS (the machine's resolvers are never asked), log
// file in the instance directory.
func baseMain(inst *Instance, hostname, listen string) map[string]string {
	if listen == "" {
		listen = "127.0.0.1"
	}
	protocols := "ipv4"
	if ip := net.ParseIP(listen); ip != nil && ip.To4() == nil {
		protocols = "all"
	}
	return map[string]string{
		"compatibility_level": "3.6",
		"queue_directory":     filepath.Join(inst.Dir, "queue"),
		"data_directory":      filepath.Join(inst.Dir, "data"),
		"meta_directory":      MetaDir,
		"mail_owner":          "postfix",
		"setgid_group":        "postdrop",
		"myhostname":          hostname,
		"mydomain":            "test",
		"myorigin":            "$myhostname",
		"mydestination":       "",
		"relay_domains":       "",
		// Postfix insists that inet_interfaces are addresses of an
		// interface (127.0.0.2 is not one, although loopback accepts
		// it): the SMTP listener binds its own address in master.cf.
		"inet_interfaces":           loopbackOf(listen),
		"inet_protocols":            protocols,
		"mynetworks":                "127.0.0.0/8 [::1]/128",
		"smtpd_peername_lookup":     "no",
		"smtp_dns_support_level":    "disabled",
		"lmtp_host_lookup":          "native",
		"smtp_host_lookup":          "native",
		"maillog_file":              filepath.Join(inst.Dir, "maillog"),
		"maillog_file_prefixes":     inst.Dir,
		"alias_maps":                "",
		"alias_database":            "",
		"local_recipient_maps":      "",
		"biff":                      "no",
		"smtpd_banner":              "$myhostname ESMTP",
		"smtputf8_enable":           "yes",
		"smtpd_client_port_logging": "yes",
	}
}

// loopbackOf is the interface address for inet_interfaces: 127.0.0.1 for
// IPv4 loopback addresses, ::1 for IPv6.
func loopbackOf(listen string) string {
	if ip := net.ParseIP(listen); ip != nil && ip.To4() == nil {
		return "[::1]"
	}
	return "127.0.0.1"
}

const masterCF = `# service type private unpriv chroot wakeup maxproc command
%s inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
virtual   unix  - n n - - virtual
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`

// start writes the configuration and starts the master daemon.
func (i *Instance) start(cf map[string]string) error {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(cf)) {
		fmt.Fprintf(&b, "%s = %s\n", k, cf[k])
	}
	if err := writeOld(filepath.Join(i.Dir, "main.cf"), []byte(b.String())); err != nil {
		return err
	}
	if err := writeOld(filepath.Join(i.Dir, "master.cf"), []byte(fmt.Sprintf(masterCF, i.Addr))); err != nil {
		return err
	}
	cmd := exec.Command(MasterPath, "-c", i.Dir, "-w")
	wait := WaitListening
	if i.netns != "" {
		cmd = exec.Command("ip", "netns", "exec", i.netns, MasterPath, "-c", i.Dir, "-w")
		wait = func(addr string, timeout time.Duration) error { return WaitListeningIn(i.netns, addr, timeout) }
	}
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+i.Dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("postfix master: %v: %s%s", err, out, i.tailLog(10))
	}
	if err := wait(i.Addr, 10*time.Second); err != nil {
		err = fmt.Errorf("postfix on %s: %w%s", i.Addr, err, i.tailLog(10))
		i.Stop()
		return err
	}
	own := "0"
	if i.ownDir {
		own = "1"
	}
	i.watch = watchdog(`"$POSTFIX" -c "$DIR" stop >/dev/null 2>&1; [ "$OWN" = 1 ] && sleep 1 && rm -rf "$DIR"`,
		"POSTFIX="+PostfixPath, "DIR="+i.Dir, "OWN="+own)
	return nil
}

// watchdog starts a shell that runs cleanup once this process is gone,
// so that a test binary that dies (a panic, a timeout) leaves no Postfix
// behind. Stopping normally kills the watchdog first.
func watchdog(cleanup string, env ...string) *exec.Cmd {
	script := `while kill -0 "$WATCH_PID" 2>/dev/null; do sleep 1; done; ` + cleanup
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Env = append([]string{"WATCH_PID=" + strconv.Itoa(os.Getpid()), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not killed with the test's process group
	if err := cmd.Start(); err != nil {
		return nil
	}
	go cmd.Wait()
	return cmd
}

func stopWatchdog(cmd *exec.Cmd) {
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the shell and its sleep
	}
}

// writeOld writes a configuration file dated an hour back: Postfix waits
// for files modified within the last second to settle (300 ms polls),
// which would add seconds to every start.
func writeOld(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	old := time.Now().Add(-time.Hour)
	return os.Chtimes(path, old, old)
}

func (i *Instance) tailLog(n int) string {
	lines := strings.Split(strings.TrimSpace(i.Log()), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	if len(lines) == 0 || lines[0] == "" {
		return ""
	}
	return "\n" + strings.Join(lines, "\n")
}

// makeQueueDirs creates what `postfix check` would (much faster): the
// queue directories with Postfix's owners and modes, and data_directory.
func makeQueueDirs(dir string) error {
	pf, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("postfixtest: user postfix: %w", err)
	}
	uid, _ := strconv.Atoi(pf.Uid)
	gid, _ := strconv.Atoi(pf.Gid)
	pd, err := user.LookupGroup("postdrop")
	if err != nil {
		return fmt.Errorf("postfixtest: group postdrop: %w", err)
	}
	postdrop, _ := strconv.Atoi(pd.Gid)
	q := filepath.Join(dir, "queue")
	type d struct {
		name     string
		uid, gid int
		mode     os.FileMode
	}
	dirs := []d{{"", 0, 0, 0o755}, {"pid", 0, 0, 0o755}, {"maildrop", uid, postdrop, 0o730}, {"public", uid, postdrop, 0o710}}
	for _, n := range []string{"active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private", "saved", "trace"} {
		dirs = append(dirs, d{n, uid, 0, 0o700})
	}
	for _, e := range dirs {
		p := filepath.Join(q, e.name)
		if err := os.MkdirAll(p, e.mode); err != nil {
			return err
		}
		if err := os.Chown(p, e.uid, e.gid); err != nil {
			return err
		}
		if err := os.Chmod(p, e.mode); err != nil {
			return err
		}
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	return os.Chown(data, uid, gid)
}

func nobodyIDs() (uid, gid int, err error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, fmt.Errorf("postfixtest: user nobody: %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if g, err := user.LookupGroup("nogroup"); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	return uid, gid, nil
}

// FreePort returns a TCP port that is free on host right now, for a
// server another process will start on it.
func FreePort(host string) (int, error) { return freePort(host) }

// Port is FreePort on 127.0.0.1 for a test, which fails if there is none.
func Port(t testing.TB) int {
	t.Helper()
	p, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Ports below Linux's ephemeral range (32768-60999 by default): the kernel
// never hands them out as the local port of an outgoing connection or of a
// listener on port 0, so between this check and the server's bind only
// another caller of FreePort can take it.
const freePortLow, freePortHigh = 20000, 32768

func freePort(host string) (int, error) {
	for range 200 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			ln.Close()
			return port, nil
		}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// WaitListening waits until addr accepts TCP connections, or timeout.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitListeningIn is WaitListening from inside the network namespace ns
// (ip netns).
func WaitListeningIn(ns, addr string, timeout time.Duration) error {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	done := make(chan error, 1)
	go func() {
		// The thread stays locked: it ends with the goroutine instead of
		// going back to the pool in ns.
		runtime.LockOSThread()
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		done <- WaitListening(addr, timeout)
	}()
	return <-done
}

// Stop stops the master daemon (and with it every Postfix process of the
// instance) and removes the instance directory if Start created it.
func (i *Instance) Stop() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.stopped {
		return nil
	}
	i.stopped = true
	stopWatchdog(i.watch)
	err := stopMaster(i.pidFile())
	i.cleanup()
	return err
}

func (i *Instance) cleanup() {
	if i.ownDir {
		os.RemoveAll(i.Dir)
	}
}

// MasterPID is the pid of the instance's master process (0 when it does
// not run).
func (i *Instance) MasterPID() int {
	pid, _ := readPID(i.pidFile())
	return pid
}

func (i *Instance) pidFile() string { return filepath.Join(i.Dir, "queue", "pid", "master.pid") }

// readPID reads a Postfix pid file (0 and no error when there is none).
func readPID(pidFile string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("postfixtest: bad pid file %s", pidFile)
	}
	return pid, nil
}

func stopMaster(pidFile string) error {
	pid, err := readPID(pidFile)
	if err != nil || pid == 0 {
		return err
	}
	if !isMaster(pid) {
		return nil // already gone (the pid may have been reused)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("postfixtest: master %d did not stop", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// isMaster checks that pid is a Postfix master (so that a stale pid file
// never makes Stop signal an unrelated process).
func isMaster(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return err == nil && strings.TrimSpace(string(comm)) == "master"
}

// alive reports a process that exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if j := strings.LastIndexByte(s, ')'); j >= 0 && j+2 < len(s) {
		return s[j+2] != 'Z'
	}
	return true
}

// Log returns the instance's mail log so far.
func (i *Instance) Log() string {
	b, _ := os.ReadFile(filepath.Join(i.Dir, "maillog"))
	return string(b)
}

// WaitLog waits until the log contains substr.
func (i *Instance) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(i.Log(), substr) {
		if time.Now().After(deadline) {
			return fmt.Errorf("postfixtest: %q not logged within %v", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// MessageFiles lists the delivered messages (sink), oldest first.
func (i *Instance) MessageFiles() []string {
	if i.MailDir == "" {
		return nil
	}
	type f struct {
		path string
		mod  time.Time
	}
	var fs []f
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(i.MailDir, sub))
		for _, e := range ents {
			info, err := e.Info()
			if err != nil || !info.Mode().IsRegular() {
				continue
			}
			fs = append(fs, f{filepath.Join(i.MailDir, sub, e.Name()), info.ModTime()})
		}
	}
	sort.SliceStable(fs, func(a, b int) bool {
		if !fs[a].mod.Equal(fs[b].mod) {
			return fs[a].mod.Before(fs[b].mod)
		}
		return fs[a].path < fs[b].path
	})
	out := make([]string, len(fs))
	for k, e := range fs {
		out[k] = e.path
	}
	return out
}

// Messages returns the contents of the delivered messages, oldest first.
func (i *Instance) Messages() []string {
	var out []string
	for _, p := range i.MessageFiles() {
		if b, err := os.ReadFile(p); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// WaitMessages waits until at least n messages were delivered and returns
// them.
func (i *Instance) WaitMessages(n int, timeout time.Duration) ([]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		msgs := i.Messages()
		if len(msgs) >= n {
			return msgs, nil
		}
		if time.Now().After(deadline) {
			return msgs, fmt.Errorf("postfixtest: %d of %d messages within %v", len(msgs), n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitMessage waits for a delivered message containing substr.
func (i *Instance) WaitMessage(substr string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, m := range i.Messages() {
			if strings.Contains(m, substr) {
				return m, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("postfixtest: no message with %q within %v", substr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HasMessage reports whether a delivered message contains substr.
func (i *Instance) HasMessage(substr string) bool {
	for _, m := range i.Messages() {
		if strings.Contains(m, substr) {
			return true
		}
	}
	return false
}

var (
	smtpdLine = regexp.MustCompile(`postfix/smtpd\[(\d+)\]: (.*)$`)
	tlsLine   = regexp.MustCompile(`TLS connection established from \S+: (.*)$`)
)

// Session describes one inbound SMTP session of an instance, from its log.
type Session struct {
	PID      string
	Client   string   // "unknown[127.0.0.1]:54321"
	TLS      string   // "TLSv1.3 with cipher ..." or "" for plain text
	QueueIDs []string // messages received in the session
	Stats    string   // the disconnect line's command counts, "" while open
}

// Sessions parses the smtpd sessions from the log, in order.
func (i *Instance) Sessions() []Session {
	var out []Session
	open := map[string]int{} // pid -> index of its open session
	sc := bufio.NewScanner(bytes.NewReader([]byte(i.Log())))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		m := smtpdLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, msg := m[1], m[2]
		switch {
		case strings.HasPrefix(msg, "connect from "):
			out = append(out, Session{PID: pid, Client: strings.TrimPrefix(msg, "connect from ")})
			open[pid] = len(out) - 1
		case strings.HasPrefix(msg, "disconnect from "):
			if k, ok := open[pid]; ok {
				rest := strings.TrimPrefix(msg, "disconnect from ")
				if j := strings.IndexByte(rest, ' '); j >= 0 {
					out[k].Stats = rest[j+1:]
				}
				delete(open, pid)
			}
		case strings.Contains(msg, "TLS connection established from "):
			if k, ok := open[pid]; ok {
				if m := tlsLine.FindStringSubmatch(msg); m != nil {
					out[k].TLS = m[1]
				}
			}
		case strings.Contains(msg, ": client="):
			if k, ok := open[pid]; ok {
				out[k].QueueIDs = append(out[k].QueueIDs, msg[:strings.Index(msg, ": client=")])
			}
		}
	}
	return out
}

// SessionOf returns the session that received the message with queueID.
func (i *Instance) SessionOf(queueID string) (Session, bool) {
	for _, s := range i.Sessions() {
		if slices.Contains(s.QueueIDs, queueID) {
			return s, true
		}
	}
	return Session{}, false
}

// WaitSessionOf waits until the log shows the session of queueID (the log
// is written asynchronously).
func (i *Instance) WaitSessionOf(queueID string, timeout time.Duration) (Session, error) {
	deadline := time.Now().Add(timeout)
	for {
		if s, ok := i.SessionOf(queueID); ok {
			return s, nil
		}
		if time.Now().After(deadline) {
			return Session{}, fmt.Errorf("postfixtest: no session logged for queue id %q within %v", queueID, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// QueueID extracts Postfix's queue id from a DATA reply such as
// "250 2.0.0 Ok: queued as 4Xyz12345" ("" when absent).
func QueueID(reply string) string {
	const marker = "queued as "
	j := strings.Index(reply, marker)
	if j < 0 {
		return ""
	}
	id := reply[j+len(marker):]
	if k := strings.IndexAny(id, " )\r\n"); k >= 0 {
		id = id[:k]
	}
	return id
}
