// Package server runs server mode: the appliance is the organisation's
// mail server. Every `config domain` entry is a local domain whose users
// (`config user mail`) have mailboxes in the mail store; mail to them is
// received and queued by the mail transfer core (modes/mta) exactly as in
// gateway mode, and the queue's delivery of it goes to the store (local
// delivery) instead of another server. Authenticated users send anywhere
// through submission and the same queue. Users read their mail over POP3
// (pop3d).
//
// This package wires those engines together: the local deliverer in front
// of the delivery engine, the recipient check at RCPT (the mailbox exists,
// is enabled and has room), the POP3 backend over the store, and the
// POP3/POP3S listeners in step with the configuration.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"mailgate/admin"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/mailauth"
	"mailgate/mailstore"
	"mailgate/modes/mta"
	"mailgate/policy"
	"mailgate/pop3d"
	"mailgate/queue"
	"mailgate/smtpd"
)

// Options configure server mode: those of the mail transfer core, and
// port overrides for this run (0: the configured port).
type Options struct {
	mta.Options
	POP3Port, POP3SPort int
}

// Mode is running server mode.
type Mode struct {
	*mta.MTA
	opt   Options
	svc   *admin.Service
	store *mailstore.Store
	auth  *mailauth.Checker
	pop3  *pop3d.Server

	mu        sync.Mutex
	listeners map[string]*listener // "pop3", "pop3s"
	closed    bool
	stop      chan struct{} // closed by Close: ends the retention sweeper
	wg        sync.WaitGroup
}

type listener struct {
	addr string
	ln   net.Listener
}

// Start opens the mail store and starts the mail transfer core with local
// delivery, then the POP3 listeners.
func Start(o Options) (*Mode, error) {
	m := &Mode{opt: o, svc: o.Service, listeners: map[string]*listener{}, stop: make(chan struct{})}
	store, err := mailstore.Open(filepath.Join(o.DataDir, "mail"), mailstore.Options{})
	if err != nil {
		return nil, fmt.Errorf("mail store: %w", err)
	}
	m.store = store
	m.auth = &mailauth.Checker{}
	core := o.Options
	core.Mode = "server"
	core.Auth = m.auth
	core.Deliverer = func(remote queue.Deliverer) queue.Deliverer { return &localDeliverer{m: m, remote: remote} }
	core.CheckRecipient = m.checkRecipient
	if m.MTA, err = mta.Start(core); err != nil {
		store.Close()
		return nil, err
	}
	logs := m.svc.Log()
	m.pop3 = pop3d.New(pop3d.Options{
		Backend: m,
		TLS: func() *tls.Config {
			return policy.MailServerTLS(m.cfg().System.Global, m.svc.Certificates().GetCertificate)
		},
		Hostname: m.cfg().System.Global.MailName(),
		Event: func(level, msg string) {
			logs.Log(eventlog.Event{Level: parseLevel(level), Subsystem: "pop3", Message: msg})
		},
	})
	if err := m.applyListeners(m.cfg()); err != nil {
		m.Close()
		return nil, err
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.retention(m.stop) }()
	return m, nil
}

func (m *Mode) cfg() *config.Config { c, _ := m.svc.Config(); return c }

// Apply brings the running services in line with c.
func (m *Mode) Apply(c *config.Config) error {
	return errors.Join(m.MTA.Apply(c), m.applyListeners(c))
}

// applyListeners opens, moves or closes the POP3 (pop3-service) and
// POP3S (pop3s-status) listeners.
func (m *Mode) applyListeners(c *config.Config) error {
	ms := &c.System.Mailserver
	want := map[string]int{}
	if ms.POP3Service {
		want["pop3"] = pick(m.opt.POP3Port, ms.POP3Port)
	}
	if ms.POP3SStatus {
		want["pop3s"] = pick(m.opt.POP3SPort, ms.POP3SPort)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("server mode is stopped")
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
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s listener: %w", k, err))
			continue
		}
		m.listeners[k] = &listener{addr: addr, ln: ln}
		serve := ln
		if m.opt.Guard != nil {
			serve = m.opt.Guard(ln, k)
		}
		m.wg.Add(1)
		go func(implicit bool) {
			defer m.wg.Done()
			m.pop3.Serve(serve, implicit)
		}(k == "pop3s")
	}
	return errors.Join(errs...)
}

func (m *Mode) addr(port int) string {
	return net.JoinHostPort(m.opt.ListenHost, strconv.Itoa(port))
}

func pick(override, configured int) int {
	if override != 0 {
		return override
	}
	return configured
}

// POP3Addr returns the address the POP3 (implicit false) or POP3S listener
// is bound to ("" when closed).
func (m *Mode) POP3Addr(implicit bool) string {
	k := "pop3"
	if implicit {
		k = "pop3s"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.listeners[k]; ok {
		return l.ln.Addr().String()
	}
	return ""
}

// Store is the mail store.
func (m *Mode) Store() *mailstore.Store { return m.store }

// Close stops the POP3 service, then the mail transfer core (which
// finishes the deliveries in progress), then closes the store.
func (m *Mode) Close() error {
	m.mu.Lock()
	if !m.closed {
		close(m.stop)
	}
	m.closed = true
	for k, l := range m.listeners {
		l.ln.Close()
		delete(m.listeners, k)
	}
	m.mu.Unlock()
	var errs []error
	if m.pop3 != nil {
		errs = append(errs, m.pop3.Close())
	}
	m.wg.Wait()
	if m.MTA != nil {
		errs = append(errs, m.MTA.Close())
	}
	errs = append(errs, m.store.Close())
	return errors.Join(errs...)
}

// mailbox is the account of a local recipient.
type mailbox struct {
	account string // local@domain, as configured
	enabled bool
	quota   int64 // octets, 0 for none
}

// lookup finds the mailbox of rcpt in c; ok is false when rcpt's domain is
// not local, known false when the domain is local but has no such user.
func lookup(c *config.Config, rcpt string) (mb mailbox, local, known bool) {
	user, domain, found := strings.Cut(rcpt, "@")
	if !found {
		return mailbox{}, false, false
	}
	domain = strings.TrimSuffix(domain, ".")
	for _, d := range c.Domain {
		if !strings.EqualFold(d.Name, domain) {
			continue
		}
		for _, u := range d.User.Mail {
			if !strings.EqualFold(u.Name, user) {
				continue
			}
			mb = mailbox{account: u.Name + "@" + d.Name, enabled: u.Status}
			for _, p := range c.Profile.Resource {
				if p.Name == u.ResourceProfile {
					mb.enabled = mb.enabled && p.AccountStatus
					mb.quota = int64(p.DiskQuota) << 20
				}
			}
			return mb, true, true
		}
		return mailbox{}, true, false
	}
	return mailbox{}, false, false
}

// checkRecipient refuses, at RCPT, a local recipient without an enabled
// mailbox, or whose mailbox is already at its quota.
func (m *Mode) checkRecipient(c *config.Config, rcpt string) error {
	mb, local, known := lookup(c, rcpt)
	switch {
	case !local:
		return nil
	case !known:
		return &smtpd.Refusal{Code: 550, Enhanced: "5.1.1", Text: "No such mailbox", Classifier: "Unknown Recipient"}
	case !mb.enabled:
		return &smtpd.Refusal{Code: 550, Enhanced: "5.2.1", Text: "Mailbox disabled", Classifier: "Disabled Mailbox"}
	case mb.quota == 0:
		return nil
	}
	a, err := m.store.Account(mb.account)
	if err != nil {
		return err
	}
	u, err := a.Usage()
	if err != nil {
		return err
	}
	if u.Bytes >= mb.quota {
		if c.System.Mailserver.QuotaAction == "tempfail" {
			return &smtpd.Refusal{Code: 452, Enhanced: "4.2.2", Text: "Mailbox full", Classifier: "Mailbox Full"}
		}
		return &smtpd.Refusal{Code: 552, Enhanced: "5.2.2", Text: "Mailbox full", Classifier: "Mailbox Full"}
	}
	return nil
}

// localDeliverer delivers the jobs of local domains to the store and
// hands the others to the delivery engine.
type localDeliverer struct {
	m      *Mode
	remote queue.Deliverer
}

func (l *localDeliverer) Deliver(ctx context.Context, job *queue.Job) []queue.Result {
	c := l.m.cfg()
	if _, local, _ := lookup(c, "x@"+job.Domain); !local {
		return l.remote.Deliver(ctx, job)
	}
	out := make([]queue.Result, 0, len(job.Rcpts))
	for _, rcpt := range job.Rcpts {
		out = append(out, l.deliver(c, job, rcpt))
	}
	return out
}

// deliver commits one recipient's copy: the queue releases it only after
// the store's commit, and the delivery ID (message and recipient) makes a
// second delivery after a crash a no-op.
func (l *localDeliverer) deliver(c *config.Config, job *queue.Job, rcpt string) queue.Result {
	res := queue.Result{Rcpt: rcpt, Host: "mailbox"}
	fail := func(st queue.Status, code int, enh, text string) queue.Result {
		res.Status, res.Code, res.Enhanced, res.Text = st, code, enh, text
		return res
	}
	mb, _, known := lookup(c, rcpt)
	switch {
	case !known:
		return fail(queue.PermFail, 550, "5.1.1", "No such mailbox")
	case !mb.enabled:
		return fail(queue.PermFail, 550, "5.2.1", "Mailbox disabled")
	}
	body, err := job.Open()
	if err != nil {
		return fail(queue.TempFail, 451, "4.3.0", "Queued message unreadable: "+err.Error())
	}
	defer body.Close()
	d, err := l.m.store.Deliver(mb.account, mailstore.Delivery{
		ID:      job.MsgID + " " + strings.ToLower(rcpt),
		Prepend: traceHeaders(c, job, rcpt, time.Now()),
		Body:    body,
		Quota:   mb.quota,
	})
	switch {
	case errors.Is(err, mailstore.ErrOverQuota):
		return fail(queue.PermFail, 552, "5.2.2", "Mailbox full")
	case errors.Is(err, syscall.ENOSPC):
		return fail(queue.TempFail, 452, "4.3.1", "Insufficient system storage")
	case err != nil:
		return fail(queue.TempFail, 451, "4.3.0", "Mailbox unavailable: "+err.Error())
	}
	note := ""
	if d.Duplicate {
		note = ", already delivered"
	}
	res.Status, res.Code, res.Enhanced = queue.Delivered, 250, "2.0.0"
	res.Text = fmt.Sprintf("Delivered to %s %s uid %d%s", mb.account, d.Mailbox, d.UID, note)
	return res
}

// traceHeaders are the header fields written at delivery: Return-Path
// (the envelope sender), Delivered-To and Received.
func traceHeaders(c *config.Config, job *queue.Job, rcpt string, now time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "Return-Path: <%s>\r\n", job.From)
	fmt.Fprintf(&b, "Delivered-To: %s\r\n", rcpt)
	fmt.Fprintf(&b, "Received: by %s (mailgate) id %s\r\n\tfor <%s>; %s\r\n", c.System.Global.MailName(), job.MsgID, rcpt,
		now.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	return []byte(b.String())
}

// Login is the POP3 backend: a mailbox user's INBOX.
func (m *Mode) Login(ctx context.Context, user, pass string, remote netip.Addr) (pop3d.Maildrop, string, error) {
	res, err := m.auth.Check(ctx, m.cfg(), user, pass, remote)
	switch {
	case errors.Is(err, mailauth.ErrFailed) || errors.Is(err, mailauth.ErrThrottled):
		return nil, "", fmt.Errorf("%w: %v", pop3d.ErrAuthFailed, err)
	case err != nil:
		return nil, "", err
	case res.Via != "mailbox":
		return nil, "", fmt.Errorf("%w: %s has no mailbox", pop3d.ErrAuthFailed, res.User)
	}
	a, err := m.store.Account(res.User)
	if err != nil {
		return nil, "", err
	}
	st, err := a.Status("INBOX")
	if err != nil {
		return nil, "", err
	}
	msgs, err := a.Fetch("INBOX", mailstore.AllUIDs, mailstore.FetchOptions{})
	if err != nil {
		return nil, "", err
	}
	return &maildrop{a: a, validity: st.UIDValidity, msgs: msgs}, res.User, nil
}

// maildrop is the INBOX of a POP3 session, as it was at login.
type maildrop struct {
	a        *mailstore.Account
	validity uint32
	msgs     []mailstore.Message
}

func (d *maildrop) Messages() []pop3d.Message {
	out := make([]pop3d.Message, len(d.msgs))
	for i, msg := range d.msgs {
		// Stable across sessions and restarts: UIDs are never reused
		// within a UIDVALIDITY.
		out[i] = pop3d.Message{UIDL: fmt.Sprintf("%d.%d", d.validity, msg.UID), Size: msg.Size}
	}
	return out
}

func (d *maildrop) Open(i int) (io.ReadCloser, error) {
	body, _, err := d.a.OpenBody("INBOX", d.msgs[i].UID)
	return body, err
}

// Delete marks the messages \Deleted and expunges them, so that IMAP
// sessions see them go.
func (d *maildrop) Delete(idx []int) error {
	set := make(mailstore.UIDSet, 0, len(idx))
	for _, i := range idx {
		set = append(set, mailstore.UIDRange{Start: d.msgs[i].UID, Stop: d.msgs[i].UID})
	}
	if _, _, err := d.a.Store("INBOX", set, mailstore.FlagUpdate{Mode: mailstore.StoreAdd, Flags: mailstore.FlagDeleted}); err != nil {
		return err
	}
	_, err := d.a.Expunge("INBOX", set)
	return err
}

func (d *maildrop) Close() error { return nil }

func parseLevel(s string) eventlog.Level {
	l, err := eventlog.ParseLevel(s)
	if err != nil {
		return eventlog.Information
	}
	return l
}
