// Package mta is the mail transfer core every operation mode wires:
// inbound SMTP (smtpd) decides each recipient by the receive policy and
// hands accepted mail to the durable queue; the queue's scheduler hands it
// to delivery, which relays protected domains to their configured servers
// and everything else by relay host or MX. A mode may put its own delivery
// in front (server mode's mailboxes) and check recipients at RCPT. This
// package only wires those together and keeps the listeners in step with
// the configuration.
package mta

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailgate/admin"
	"mailgate/cert"
	"mailgate/config"
	"mailgate/delivery"
	"mailgate/eventlog"
	"mailgate/mailauth"
	"mailgate/policy"
	"mailgate/queue"
	"mailgate/smtpd"
)

// Options configure the core.
type Options struct {
	// Mode names the operation mode in messages ("gateway", "server").
	Mode       string
	DataDir    string
	Service    *admin.Service
	ListenHost string
	// Port overrides for this run (0: the configured port).
	SMTPPort, SMTPSPort, MSAPort int
	// DNSServers overrides `system dns` (host:port), for test networks.
	DNSServers []string
	// ResolvConf is where the name servers come from when `system dns`
	// sets none (default /etc/resolv.conf).
	ResolvConf string
	// MXPort overrides port 25 for MX deliveries, for test networks.
	MXPort int
	// Guard, when set, wraps each mail listener, for the interfaces'
	// mailaccess smtp and smtps (the appliance's access guard).
	Guard func(ln net.Listener, service string) net.Listener
	// Deliverer, when set, is the queue's deliverer, given the delivery
	// engine for the jobs it does not deliver itself.
	Deliverer func(remote queue.Deliverer) queue.Deliverer
	// CheckRecipient is smtpd's check of each accepted recipient (see
	// smtpd.Options.CheckRecipient).
	CheckRecipient func(c *config.Config, rcpt string) error
	// Listen opens the SMTP, SMTPS and submission listeners (nil:
	// net.Listen); transparent mode's also accept intercepted connections.
	Listen func(network, addr string) (net.Listener, error)
	// Source and Hidden keep the appliance out of a message's path
	// (transparent mode's hidden box): deliveries connect from the
	// client's address, and no Received header names the appliance (see
	// delivery.Options.Source, smtpd.Options.Hidden).
	Source func(job *queue.Job) (delivery.Source, bool)
	Hidden func(c *config.Config, env *queue.Envelope) bool
	// Auth checks SMTP AUTH logins; a mode that has other login services
	// shares its checker (and so its lockouts and cache) with them. nil:
	// one of the core's own.
	Auth *mailauth.Checker
}

// MTA is the running core.
type MTA struct {
	opt      Options
	svc      *admin.Service
	q        *queue.Queue
	dlv      *delivery.Deliverer
	smtp     *smtpd.Server
	resolver *delivery.Resolver

	mu        sync.Mutex
	listeners map[smtpd.Kind]*listener
	dns       []string // the resolver's servers, as last applied
	closed    bool
	wg        sync.WaitGroup
}

type listener struct {
	addr string
	ln   net.Listener
}

// Start opens the queue and starts delivery and the SMTP listeners.
func Start(o Options) (*MTA, error) {
	m := &MTA{opt: o, svc: o.Service, listeners: map[smtpd.Kind]*listener{}}
	cfg := func() *config.Config { c, _ := m.svc.Config(); return c }
	// The name in EHLO (unless helo-name is set) and in DSNs: the same
	// as inbound SMTP's.
	hostname := func() string { return cfg().System.Global.MailName() }
	logs := m.svc.Log()
	m.dns = m.dnsServers(cfg())
	resolver := delivery.NewResolver(m.dns)
	if o.ResolvConf != "" {
		resolver.SetResolvConf(o.ResolvConf)
	}
	m.resolver = resolver
	m.dlv = delivery.New(delivery.Options{
		Config:   cfg,
		Resolver: resolver,
		Hostname: hostname,
		Roots:    func() *x509.CertPool { return roots(cfg()) },
		Log:      func(line string) { logs.Logf(eventlog.Information, "delivery", "%s", line) },
		MXPort:   o.MXPort,
		Unseal:   func(token string) ([]byte, error) { return m.svc.Env().Open(token) },
		Source:   o.Source,
	})
	var deliverer queue.Deliverer = m.dlv
	if o.Deliverer != nil {
		deliverer = o.Deliverer(m.dlv)
	}
	var err error
	m.q, err = queue.Open(queue.Options{
		Dir:       o.DataDir,
		Deliverer: deliverer,
		DSN: func() queue.DSNSettings {
			ms := cfg().System.Mailserver
			return queue.DSNSettings{Off: !ms.DSNStatus, From: ms.DSNSenderAddress, DisplayName: ms.DSNSenderName}
		},
		Schedule: func(domain string) queue.Schedule { return schedule(cfg(), domain) },
		DeadMailExpiry: func() time.Duration {
			return time.Duration(cfg().System.Mailserver.DeadmailExpiry) * 24 * time.Hour
		},
		Hostname: hostname,
		History: func(h queue.HistoryRecord) {
			logs.History(eventlog.History{Time: h.Time, SessionID: h.SessionID, MsgID: h.MsgID, ClientIP: addrString(h.ClientIP),
				From: h.From, To: h.To, Classifier: h.Classifier, Disposition: h.Disposition, TLS: h.InboundTLS,
				Status: h.Status, Host: h.Host, RelayTLS: h.TLS})
		},
		Event: func(level, msg string) {
			logs.Log(eventlog.Event{Level: parseLevel(level), Subsystem: "queue", Message: msg})
		},
	})
	if err != nil {
		m.dlv.Close()
		return nil, fmt.Errorf("mail queue: %w", err)
	}
	spoolDir, err := prepareSpool(o.DataDir)
	if err != nil {
		m.q.Close()
		m.dlv.Close()
		return nil, err
	}
	auth := o.Auth
	if auth == nil {
		auth = &mailauth.Checker{}
	}
	auth.Roots = func() *x509.CertPool { return roots(cfg()) }
	auth.HeloName = hostname
	auth.Lookup = resolver.LookupHost
	m.smtp = smtpd.New(smtpd.Options{
		Config:         cfg,
		CheckRecipient: o.CheckRecipient,
		Hidden:         o.Hidden,
		Certs:          m.svc.Certificates(),
		Queue:          m.q,
		LookupAddr: func(ctx context.Context, ip netip.Addr) (string, error) {
			return forwardConfirmed(ctx, resolver, ip)
		},
		SpoolDir: spoolDir,
		Auth:     auth,
		History: func(h smtpd.History) {
			logs.History(eventlog.History{Time: h.Time, SessionID: h.SessionID, ClientIP: addrString(h.ClientIP), From: h.From, To: h.To,
				Classifier: h.Classifier, Disposition: h.Disposition, TLS: h.TLS, Status: h.Status})
		},
		Event: func(level, msg string) {
			logs.Log(eventlog.Event{Level: parseLevel(level), Subsystem: "smtp", Message: msg})
		},
	})
	if err := m.Apply(cfg()); err != nil {
		m.Close()
		return nil, err
	}
	m.q.Start()
	m.svc.SetQueue(m.q)
	return m, nil
}

// schedule is the queue's retry policy for mail to domain: the mail-queue
// entry incoming for a protected domain, outgoing for any other, default
// when that entry is absent.
func schedule(c *config.Config, domain string) queue.Schedule {
	q := c.System.Mailserver.Queue(policy.IsProtected(c, domain))
	s := queue.Schedule{RetryInterval: q.RetryInterval(), WarningAfter: q.WarningAfter(), MaxAge: q.MaxAge(), DSNMaxAge: q.DSNMaxAge()}
	if s.DSNMaxAge == 0 {
		s.DSNMaxAge = queue.OneAttempt
	}
	return s
}

// prepareSpool creates the directory where smtpd keeps messages over 1 MiB
// while it receives them, and removes the files a crash left there (no
// session is running yet).
func prepareSpool(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "spool")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("spool directory: %w", err)
	}
	stale, _ := filepath.Glob(filepath.Join(dir, "smtpd-*.eml"))
	for _, f := range stale {
		os.Remove(f)
	}
	return dir, nil
}

// forwardConfirmed returns the client's reverse DNS name only when that
// name resolves back to the client's address: policies match on it, and a
// PTR record alone is whatever the owner of the address chose.
func forwardConfirmed(ctx context.Context, r *delivery.Resolver, ip netip.Addr) (string, error) {
	name, err := r.LookupAddr(ctx, ip)
	if err != nil || name == "" {
		return "", err
	}
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if a.Unmap() == ip.Unmap() {
			return name, nil
		}
	}
	return "", nil
}

// setCache applies `config system dns` cache, cache-min-ttl and
// truncate-handling.
func setCache(r *delivery.Resolver, c *config.Config) {
	r.SetCache(c.System.DNS.Cache, time.Duration(c.System.DNS.CacheMinTTL)*time.Second)
	r.SetTCPRetry(c.System.DNS.TruncateHandling != "disable")
}

// dnsServers returns the name servers for c: the override of this run,
// else `system dns`; none means resolv.conf's, which the resolver follows.
func (m *MTA) dnsServers(c *config.Config) []string {
	if len(m.opt.DNSServers) > 0 {
		return m.opt.DNSServers
	}
	var out []string
	for _, s := range []string{c.System.DNS.Primary, c.System.DNS.Secondary} {
		if s != "" {
			out = append(out, net.JoinHostPort(s, "53"))
		}
	}
	return out
}

// roots is the CA store for verified TLS: the system's roots plus the
// configured `system certificate ca` entries.
func roots(c *config.Config) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	for _, ca := range c.System.Certificate.CA {
		certs, err := cert.ParseChain([]byte(ca.Certificate))
		if err != nil {
			continue
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool
}

// Apply brings the running services in line with c: the name servers of
// MX and reverse DNS lookups, and the listeners (opened, moved or closed;
// each of SMTP, SMTPS and submission has its switch: smtp-service,
// smtps-tls-status, smtp-msa).
func (m *MTA) Apply(c *config.Config) error {
	dnsServers := m.dnsServers(c)
	ms := &c.System.Mailserver
	want := map[smtpd.Kind]int{}
	if ms.SMTPService {
		want[smtpd.SMTP] = pick(m.opt.SMTPPort, ms.SMTPPort)
	}
	if ms.SMTPSStatus {
		want[smtpd.SMTPS] = pick(m.opt.SMTPSPort, ms.SMTPSPort)
	}
	if ms.SMTPMSAStatus {
		want[smtpd.MSA] = pick(m.opt.MSAPort, ms.SMTPMSAPort)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New(m.opt.Mode + " mode is stopped")
	}
	setCache(m.resolver, c)
	if !slices.Equal(dnsServers, m.dns) {
		m.dns = dnsServers
		m.resolver.SetServers(dnsServers)
		m.svc.Log().Logf(eventlog.Notice, "delivery", "DNS servers for MX and reverse lookups: %s", strings.Join(m.resolver.Servers(), ", "))
	}
	var errs []error
	for k, l := range m.listeners {
		if port, ok := want[k]; !ok || l.addr != m.addr(port) {
			l.ln.Close()
			delete(m.listeners, k)
		}
	}
	for k, port := range want {
		if _, ok := m.listeners[k]; ok {
			continue
		}
		addr := m.addr(port)
		listen := net.Listen
		if m.opt.Listen != nil {
			listen = m.opt.Listen
		}
		ln, err := listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s listener: %w", k, err))
			continue
		}
		m.listeners[k] = &listener{addr: addr, ln: ln}
		serve := ln
		if m.opt.Guard != nil {
			service := "smtp" // the SMTP and submission ports
			if k == smtpd.SMTPS {
				service = "smtps"
			}
			serve = m.opt.Guard(ln, service)
		}
		m.wg.Add(1)
		go func(k smtpd.Kind) {
			defer m.wg.Done()
			m.smtp.Serve(serve, k)
		}(k)
	}
	return errors.Join(errs...)
}

func (m *MTA) addr(port int) string { return net.JoinHostPort(m.opt.ListenHost, strconv.Itoa(port)) }

func pick(override, configured int) int {
	if override != 0 {
		return override
	}
	return configured
}

// Addr returns the address a listener is bound to ("" when closed).
func (m *MTA) Addr(k smtpd.Kind) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.listeners[k]; ok {
		return l.ln.Addr().String()
	}
	return ""
}

// Queue is the mail queue.
func (m *MTA) Queue() *queue.Queue { return m.q }

// Close stops accepting mail, then delivery, and closes the queue: mail
// that was acknowledged stays on disk for the next start.
func (m *MTA) Close() error {
	m.mu.Lock()
	m.closed = true
	for k, l := range m.listeners {
		l.ln.Close()
		delete(m.listeners, k)
	}
	m.mu.Unlock()
	m.svc.SetQueue(nil)
	var errs []error
	if m.smtp != nil {
		errs = append(errs, m.smtp.Close())
	}
	m.wg.Wait()
	if m.q != nil {
		errs = append(errs, m.q.Close())
	}
	if m.dlv != nil {
		m.dlv.Close()
	}
	return errors.Join(errs...)
}

func parseLevel(s string) eventlog.Level {
	l, err := eventlog.ParseLevel(s)
	if err != nil {
		return eventlog.Information
	}
	return l
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
