// Package delivery sends queued mail to its next hop: the configured mail
// server of a protected domain (with its fallback), the relay servers
// (smarthosts), or the recipient domain's MX hosts. It implements
// queue.Deliverer.
//
// Outbound TLS follows `config mailsetting starttls` and the delivery
// rules of `config policy access-control delivery`: STARTTLS is tried
// when the policy allows it and the server offers it; a rule's TLS profile
// may require encryption (encrypt) or a verified certificate (secure).
// Without a profile that requires TLS, a failed TLS negotiation is handled
// by the fallback mode: none (defer, try TLS again next time), plain
// (carry on without TLS now), next-retry and next-retry-any (defer, the
// next attempt goes in plain text: see queue.Job.PreferPlain).
// Credentials for a relay server's AUTH are only sent over TLS: on a
// plain text connection (whatever the reason) the delivery is deferred.
//
// Every attempt (one next-hop address) logs one line through
// Options.Log, in the style of sendmail/Postfix:
//
//	STARTTLS=client, relay=mx.example.com[192.0.2.1]:25, version=TLSv1.3, verify=OK, cipher=TLS_AES_128_GCM_SHA256, bits=128, status=sent (250 2.0.0 Ok: queued as 4bX), msgid=...
//	relay=mx.example.com[192.0.2.1]:25, tls=none (reason: not offered), status=deferred (451 4.3.0 try later), msgid=...
//
// Idle connections are kept for a few seconds per next hop and reused
// (after RSET) by the next delivery to the same hop.
package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"mailgate/config"
	"mailgate/policy"
	"mailgate/queue"
)

// Options configure a Deliverer.
type Options struct {
	// Config returns the running configuration (required).
	Config func() *config.Config
	// Resolver answers MX and address lookups (default: NewResolver(nil)).
	Resolver *Resolver
	// Hostname is the EHLO name unless `mailsetting starttls` sets
	// helo-name (default "localhost").
	Hostname func() string
	// Roots is the CA store for certificate verification (default: the
	// system roots).
	Roots func() *x509.CertPool
	// Log receives one line per delivery attempt (nil: none).
	Log func(line string)
	// MXPort is the port of MX deliveries (0: 25).
	MXPort int
	// DialTimeout bounds a TCP connect (0: 30s); CommandTimeout each SMTP
	// command and the TLS handshake (0: 5 minutes). The reply to the end
	// of the message may take up to 10 minutes.
	DialTimeout, CommandTimeout time.Duration
	// Unseal decrypts sealed secrets of the configuration (relay
	// passwords).
	Unseal func(token string) ([]byte, error)
	// Source, when set, may give a job another source than the
	// appliance's own: an address to connect from and the EHLO name
	// (transparent mode's hidden box: the client's). ok false: the
	// appliance's own.
	Source func(job *queue.Job) (src Source, ok bool)
}

// Source is where a delivery connects from.
type Source struct {
	Addr netip.Addr
	Helo string
	// Dial connects from Addr to dst.
	Dial func(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
}

// Deliverer performs delivery attempts.
type Deliverer struct {
	o        Options
	pool     *pool
	tlsCache tls.ClientSessionCache
}

var _ queue.Deliverer = (*Deliverer)(nil)

// New returns a Deliverer.
func New(o Options) *Deliverer {
	if o.Resolver == nil {
		o.Resolver = NewResolver(nil)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 30 * time.Second
	}
	if o.CommandTimeout <= 0 {
		o.CommandTimeout = 5 * time.Minute
	}
	return &Deliverer{o: o, pool: newPool(), tlsCache: tls.NewLRUClientSessionCache(1024)}
}

// Close closes the pooled connections.
func (d *Deliverer) Close() { d.pool.close() }

// maxAddrAttempts bounds the next-hop addresses one Deliver tries.
const maxAddrAttempts = 10

// hop is a next hop: a host name (or address literal) and port.
type hop struct {
	name  string
	port  int
	smtps bool
	relay *config.RelayServer // authentication, for relay servers
}

// run is the state of one Deliver call.
type run struct {
	d       *Deliverer
	ctx     context.Context
	cfg     *config.Config
	job     *queue.Job
	res     []queue.Result
	done    []bool  // result is final
	tried   []bool  // res holds the failure of a real attempt
	tlsFail []bool  // an attempt failed in TLS in a way next-retry* reacts to
	src     *Source // Options.Source's, nil for the appliance's own
}

// Deliver makes one delivery attempt for the recipients of job.
func (d *Deliverer) Deliver(ctx context.Context, job *queue.Job) []queue.Result {
	st := &run{d: d, ctx: ctx, job: job,
		res: make([]queue.Result, len(job.Rcpts)), done: make([]bool, len(job.Rcpts)),
		tried: make([]bool, len(job.Rcpts)), tlsFail: make([]bool, len(job.Rcpts))}
	if len(job.Rcpts) == 0 {
		return st.res
	}
	if d.o.Source != nil {
		if src, ok := d.o.Source(job); ok {
			st.src = &src
		}
	}
	for i, r := range job.Rcpts {
		st.res[i] = queue.Result{Rcpt: r, Status: queue.TempFail, Code: 451, Enhanced: "4.4.0", Text: "delivery not attempted"}
	}
	if d.o.Config != nil {
		st.cfg = d.o.Config()
	}
	if st.cfg == nil {
		for i := range job.Rcpts {
			st.finish(i, queue.Result{Status: queue.TempFail, Code: 451, Enhanced: "4.3.5", Text: "no configuration"})
		}
		return st.result()
	}
	// Addresses go into SMTP commands as they are: refuse line breaks.
	for i, r := range job.Rcpts {
		if badAddr(job.From) {
			st.finish(i, queue.Result{Status: queue.PermFail, Code: 553, Enhanced: "5.1.7", Text: "invalid sender address"})
		} else if badAddr(r) || r == "" {
			st.finish(i, queue.Result{Status: queue.PermFail, Code: 553, Enhanced: "5.1.3", Text: "invalid recipient address"})
		}
	}
	if len(st.pending()) == 0 {
		return st.result()
	}
	hops, fail := st.route()
	if fail != nil {
		for _, i := range st.pending() {
			st.finish(i, *fail)
		}
		st.log(fmt.Sprintf("relay=none, status=%s", statusText(fail)))
		return st.result()
	}
	attempts := 0
hops:
	for _, h := range hops {
		addrs, fail := st.addrs(h)
		if fail != nil {
			for _, i := range st.pending() {
				st.deferTo(i, *fail)
			}
			st.log(fmt.Sprintf("relay=%s, status=%s", h.name, statusText(fail)))
			continue
		}
		for _, a := range addrs {
			if attempts == maxAddrAttempts || ctx.Err() != nil {
				break hops
			}
			attempts++
			st.attempt(h, a)
			if len(st.pending()) == 0 {
				break hops
			}
		}
	}
	if err := ctx.Err(); err != nil {
		for _, i := range st.pending() {
			if !st.tried[i] {
				st.deferTo(i, queue.Result{Status: queue.TempFail, Code: 451, Enhanced: "4.4.2", Text: "delivery interrupted: " + err.Error()})
			}
		}
	}
	return st.result()
}

func (st *run) pending() []int {
	var out []int
	for i, done := range st.done {
		if !done {
			out = append(out, i)
		}
	}
	return out
}

// finish records a final result.
func (st *run) finish(i int, r queue.Result) {
	r.Rcpt = st.job.Rcpts[i]
	st.res[i], st.done[i], st.tried[i] = r, true, true
}

// deferTo records a failure that another next hop may still overcome. A
// temporary failure of an earlier hop wins over a permanent one of a
// later hop: the domain is then retried rather than bounced.
func (st *run) deferTo(i int, r queue.Result) {
	r.Rcpt = st.job.Rcpts[i]
	if r.Status == queue.PermFail && st.tried[i] && st.res[i].Status == queue.TempFail {
		return
	}
	st.res[i], st.tried[i] = r, true
}

// record records a recipient decided before any transaction: a temporary
// failure is deferred (another hop may do better), anything else final.
func (st *run) record(i int, r queue.Result, a *attemptLog) {
	if r.Status == queue.TempFail {
		st.deferTo(i, r)
	} else {
		st.finish(i, r)
	}
	a.add(i, r)
}

// tlsRequired is the result of a recipient whose TLS profile the session
// with relay does not meet (f from policy.CheckTLS).
func tlsRequired(f *policy.TLSFailure, text, relay string) queue.Result {
	r := queue.Result{Status: queue.PermFail, Code: f.Code, Enhanced: f.Enhanced, Text: text, Host: relay, Classifier: policy.ClassTLS}
	if f.Temp {
		r.Status = queue.TempFail
	}
	return r
}

func (st *run) result() []queue.Result {
	for i := range st.res {
		if st.tlsFail[i] && st.res[i].Status == queue.TempFail {
			st.res[i].TLSHandshakeFailed = true
		}
	}
	return st.res
}

func (st *run) log(line string) {
	if st.d.o.Log != nil {
		st.d.o.Log(line + ", msgid=" + st.job.MsgID)
	}
}

func localFail(status queue.Status, code int, enh, format string, args ...any) *queue.Result {
	return &queue.Result{Status: status, Code: code, Enhanced: enh, Text: fmt.Sprintf(format, args...)}
}

// route decides the next hops of the job's domain.
func (st *run) route() ([]hop, *queue.Result) {
	domain := strings.ToLower(strings.TrimSuffix(st.job.Domain, "."))
	for i := range st.cfg.Domain {
		pd := &st.cfg.Domain[i]
		if !strings.EqualFold(strings.TrimSuffix(pd.Name, "."), domain) {
			continue
		}
		if pd.RelayType == "mx-lookup" {
			return st.mxRoute(domain)
		}
		if pd.SMTPServer == "" {
			return nil, localFail(queue.TempFail, 451, "4.3.5", "protected domain %s has no smtp-server configured", pd.Name)
		}
		hops := []hop{{name: pd.SMTPServer, port: portOr(pd.SMTPPort, 25), smtps: pd.SMTPS}}
		if pd.FallbackHost != "" {
			hops = append(hops, hop{name: pd.FallbackHost, port: portOr(pd.FallbackPort, 25), smtps: pd.FallbackSMTPS})
		}
		return hops, nil
	}
	if ms := &st.cfg.System.Mailserver; ms.RelayServerStatus {
		return st.relayRoute(ms.RelayServerName)
	}
	return st.mxRoute(domain)
}

// relayRoute is the way out through `config mailsetting relay-host-list`:
// the entry named (relay-server-name), or every entry in order, each the
// fallback of the one before. An entry of relay-type mx-lookup stands for
// the mail exchangers of its mx-lookup-domain-name, at its host-port.
func (st *run) relayRoute(name string) ([]hop, *queue.Result) {
	rs := st.cfg.Mailsetting.RelayServer
	var hops []hop
	var fail *queue.Result
	for i := range rs {
		r := &rs[i]
		if name != "" && r.Name != name {
			continue
		}
		port := portOr(r.Port, 25)
		if r.RelayType != "mx-lookup" {
			if r.Server != "" {
				hops = append(hops, hop{name: r.Server, port: port, smtps: r.SMTPS, relay: r})
			}
			continue
		}
		mx, f := st.mxRoute(r.MXDomain)
		if f != nil {
			fail = f
			continue
		}
		for _, h := range mx {
			hops = append(hops, hop{name: h.name, port: port, smtps: r.SMTPS, relay: r})
		}
	}
	if len(hops) > 0 {
		return hops, nil
	}
	if fail != nil {
		return nil, fail
	}
	return nil, localFail(queue.TempFail, 451, "4.3.5", "relay-server-status is enabled but relay-host-list has no usable relay %s", name)
}

func portOr(p, def int) int {
	if p <= 0 || p > 65535 {
		return def
	}
	return p
}

func (st *run) mxPort() int { return portOr(st.d.o.MXPort, 25) }

// mxRoute resolves the MX hosts of domain.
func (st *run) mxRoute(domain string) ([]hop, *queue.Result) {
	if strings.HasPrefix(domain, "[") && strings.HasSuffix(domain, "]") {
		lit := strings.TrimPrefix(domain[1:len(domain)-1], "ipv6:")
		if _, err := netip.ParseAddr(lit); err != nil {
			return nil, localFail(queue.PermFail, 550, "5.1.2", "bad address literal %s", domain)
		}
		return []hop{{name: lit, port: st.mxPort()}}, nil
	}
	mxs, err := st.d.o.Resolver.LookupMX(st.ctx, domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, localFail(queue.PermFail, 550, "5.1.2", "domain %s not found (NXDOMAIN)", domain)
		}
		return nil, localFail(queue.TempFail, 451, "4.4.3", "MX lookup for %s failed: %v", domain, err)
	}
	if len(mxs) == 0 {
		return []hop{{name: domain, port: st.mxPort()}}, nil // implicit MX
	}
	var hops []hop
	for _, mx := range mxs {
		if mx.Host == "." || mx.Host == "" {
			continue
		}
		hops = append(hops, hop{name: mx.Host, port: st.mxPort()})
	}
	if len(hops) == 0 {
		return nil, localFail(queue.PermFail, 550, "5.1.10", "domain %s does not accept mail (null MX)", domain)
	}
	return hops, nil
}

// addrs resolves a next hop's addresses.
func (st *run) addrs(h hop) ([]netip.Addr, *queue.Result) {
	addrs, err := st.d.o.Resolver.LookupHost(st.ctx, h.name)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, localFail(queue.PermFail, 550, "5.4.4", "host %s not found: %s", h.name, de.Err)
		}
		return nil, localFail(queue.TempFail, 451, "4.4.3", "address lookup for %s failed: %v", h.name, err)
	}
	return addrs, nil
}

// tlsOutcome is how STARTTLS went on a new connection.
type tlsOutcome int

const (
	tlsUnused     tlsOutcome = iota // not tried (policy)
	tlsNotOffered                   // server has no STARTTLS
	tlsUp                           // TLS established (STARTTLS or SMTPS)
	tlsRefused                      // STARTTLS answered with an error
	tlsHandshake                    // the TLS handshake failed
	tlsAfter                        // EHLO after the handshake failed
)

// rcptPlan is the TLS policy of one recipient for one destination address.
type rcptPlan struct {
	i        int
	profile  *config.TLSProfile
	required bool // encrypt or secure
	noTLS    bool // profile level none
}

// attempt delivers the pending recipients to one address of a hop.
func (st *run) attempt(h hop, ip netip.Addr) {
	d, cfg, job := st.d, st.cfg, st.job
	ap := netip.AddrPortFrom(ip, uint16(h.port))
	relay := fmt.Sprintf("%s[%s]:%d", h.name, ip, h.port)

	var plans []rcptPlan
	anyRequired, anyOpportunistic := false, false
	for _, i := range st.pending() {
		p, _ := policy.DeliveryProfile(cfg, job.From, job.Rcpts[i], ip)
		pl := rcptPlan{i: i, profile: p}
		if p != nil {
			pl.required = p.Level == "encrypt" || p.Level == "secure"
			pl.noTLS = p.Level == "none"
		}
		anyRequired = anyRequired || pl.required
		anyOpportunistic = anyOpportunistic || (!pl.required && !pl.noTLS)
		plans = append(plans, pl)
	}

	stls := &cfg.Mailsetting.StartTLS
	fallback := stls.Fallback
	if fallback == "" {
		fallback = "plain"
	}
	nextRetry := fallback == "next-retry" || fallback == "next-retry-any"
	wantTLS, plainWhy := true, ""
	switch {
	case h.smtps || anyRequired:
	case !anyOpportunistic:
		wantTLS, plainWhy = false, "disabled by TLS profile"
	case !policy.UseSTARTTLS(cfg, job.Domain, h.name):
		wantTLS, plainWhy = false, "excluded by policy"
	case job.PreferPlain && nextRetry && (h.relay == nil || !h.relay.AuthStatus):
		// A relay that needs AUTH gets no plain text attempt: credentials
		// only go over TLS, so it could only defer.
		wantTLS, plainWhy = false, "plain text retry after TLS failure"
	}
	helo := stls.HeloName
	if helo == "" && d.o.Hostname != nil {
		helo = d.o.Hostname()
	}
	if helo == "" {
		helo = "localhost"
	}
	if st.src != nil {
		helo = st.src.Helo
	}
	key := poolKey{addr: ap, host: strings.ToLower(h.name), helo: helo, implicit: h.smtps, wantTLS: wantTLS}
	if st.src != nil {
		key.from = st.src.Addr
	}
	if minV, maxV, ok := policy.PinnedVersions(cfg, job.Domain, h.name); ok {
		key.minV, key.maxV = minV, maxV
	}
	if h.relay != nil && h.relay.AuthStatus {
		key.user = h.relay.AuthUsername
	}

	a := &attemptLog{relay: relay, rcpts: job.Rcpts, decided: map[int]bool{}}
	defer func() { st.log(a.line()) }()

	// A pooled session. RSET checks that it is still alive: it goes out
	// ahead of the transaction in the same write when nothing is to be
	// decided before (the usual case), else on its own first.
	s := d.pool.get(key)
	pooled := false
	if s != nil {
		c := s.c
		c.release = context.AfterFunc(st.ctx, func() { c.raw.Close() })
		if anyRequired && c.tls == nil {
			go c.quit() // healthy, but in plain text
			s = nil
		} else {
			pooled = true
		}
	}
	for {
		if s == nil {
			var fail *queue.Result
			s, fail = st.connect(h, ap, key, relay, wantTLS, plainWhy, plans, fallback, a)
			if fail != nil {
				for _, pl := range plans {
					if !st.done[pl.i] && !a.decided[pl.i] {
						st.deferTo(pl.i, *fail)
						a.add(pl.i, st.res[pl.i])
					}
				}
				return
			}
			if s == nil {
				return // every recipient was decided in the TLS phase
			}
		}
		send, verdicts, tlsDesc, needUTF8 := st.screen(s, plans, a, relay)
		if pooled && len(verdicts) > 0 {
			pooled = false
			if s.c.reset() != nil {
				s.c.close()
				s = nil
				continue
			}
		}
		release := func() {
			if s.c.release != nil && !s.c.release() {
				s.c.broken = true // the context closed the connection
			}
			s.c.release = nil
		}
		a.setSession(s)
		for _, v := range verdicts {
			st.record(v.i, v.r, a)
		}
		if len(send) == 0 {
			release()
			d.pool.put(s)
			return
		}
		rcpts := make([]string, len(send))
		for k, i := range send {
			rcpts[k] = job.Rcpts[i]
		}
		s.uses++
		tx := s.c.transaction(job.From, rcpts, job.Size, needUTF8, pooled, job.Open)
		release()
		if tx.stale {
			s.c.close()
			s, pooled = nil, false
			continue
		}
		for k, i := range send {
			r := st.txResult(tx, k, relay, tlsDesc)
			if tx.err != nil && !tx.committed && tx.stage != "message open" {
				st.deferTo(i, r) // the server took nothing: another hop may
			} else {
				st.finish(i, r)
			}
			a.add(i, st.res[i])
		}
		if s.c.broken {
			s.c.close()
			return
		}
		d.pool.put(s)
		return
	}
}

// verdict is a recipient decided before its transaction.
type verdict struct {
	i int
	r queue.Result
}

// screen decides, without recording anything, which of the pending
// recipients go into a transaction on s: the TLS requirements of their
// profiles, the server's size limit and SMTPUTF8.
func (st *run) screen(s *session, plans []rcptPlan, a *attemptLog, relay string) (send []int, verdicts []verdict, tlsDesc string, needUTF8 bool) {
	job := st.job
	info, tlsDesc := s.tlsState()
	// TLS requirements of the recipients' profiles.
	for _, pl := range plans {
		if st.done[pl.i] || a.decided[pl.i] {
			continue
		}
		if f := policy.CheckTLS(pl.profile, info); f != nil {
			text := f.Text
			switch {
			case info == nil:
				text = "TLS required, but the session with " + relay + " is not encrypted"
			case !s.verified && s.verifyErr != nil && strings.Contains(text, "not verified"):
				text += ": " + s.verifyErr.Error()
			}
			r := tlsRequired(f, text, relay)
			r.TLS = tlsDesc
			verdicts = append(verdicts, verdict{i: pl.i, r: r})
			continue
		}
		send = append(send, pl.i)
	}
	if len(send) == 0 {
		return nil, verdicts, tlsDesc, false
	}

	// Size and SMTPUTF8 limits of the server.
	if limit, err := strconv.ParseInt(s.c.ext["SIZE"], 10, 64); err == nil && limit > 0 && job.Size > limit {
		r := queue.Result{Status: queue.PermFail, Code: 552, Enhanced: "5.3.4", Host: relay, TLS: tlsDesc,
			Text: fmt.Sprintf("message size %d exceeds the limit of %d bytes of %s", job.Size, limit, relay)}
		for _, i := range send {
			verdicts = append(verdicts, verdict{i: i, r: r})
		}
		return nil, verdicts, tlsDesc, false
	}
	needUTF8 = !isASCII(job.From)
	for _, i := range send {
		needUTF8 = needUTF8 || !isASCII(job.Rcpts[i])
	}
	if needUTF8 && !s.c.has("SMTPUTF8") {
		r := queue.Result{Status: queue.PermFail, Code: 553, Enhanced: "5.6.7", Host: relay, TLS: tlsDesc,
			Text: relay + " does not support SMTPUTF8 for internationalized addresses"}
		for _, i := range send {
			verdicts = append(verdicts, verdict{i: i, r: r})
		}
		return nil, verdicts, tlsDesc, false
	}
	return send, verdicts, tlsDesc, needUTF8
}

// txResult maps a transaction's replies to the result of recipient k.
func (st *run) txResult(tx txResult, k int, relay, tlsDesc string) queue.Result {
	base := queue.Result{Host: relay, TLS: tlsDesc}
	fromReply := func(r reply) queue.Result {
		out := base
		out.Code, out.Enhanced, out.Text = r.Code, r.Enh, oneLine(r.Text)
		switch {
		case r.Code >= 200 && r.Code < 300:
			out.Status = queue.Delivered
		case r.Code >= 500 && r.Code < 600:
			out.Status = queue.PermFail
		default:
			out.Status = queue.TempFail
		}
		if out.Enhanced == "" && r.Code >= 200 && r.Code < 600 {
			out.Enhanced = fmt.Sprintf("%d.0.0", r.Code/100)
		}
		return out
	}
	local := func(enh, text string) queue.Result {
		out := base
		out.Status, out.Code, out.Enhanced, out.Text = queue.TempFail, 451, enh, text
		return out
	}
	switch {
	case tx.stage == "message open":
		return local("4.3.0", "cannot read the queued message: "+tx.err.Error())
	case tx.err != nil && tx.committed:
		return local("4.4.2", fmt.Sprintf("lost connection with %s after end of data (the message may be delivered twice): %v", relay, tx.err))
	case tx.err != nil:
		return local("4.4.2", fmt.Sprintf("lost connection with %s while sending %s: %v", relay, tx.stage, tx.err))
	case !tx.mail.ok():
		return fromReply(tx.mail)
	case !tx.rcpt[k].ok():
		return fromReply(tx.rcpt[k])
	}
	return fromReply(tx.data)
}

// connect opens a session to ap: greeting, EHLO, STARTTLS as the policy
// wants, fallback, AUTH. A nil session and nil failure mean that the TLS
// phase decided every recipient.
func (st *run) connect(h hop, ap netip.AddrPort, key poolKey, relay string, wantTLS bool, plainWhy string,
	plans []rcptPlan, fallback string, a *attemptLog) (*session, *queue.Result) {
	d := st.d
	tcfg := &tls.Config{
		InsecureSkipVerify: true, // verified below, so that the outcome can be logged and judged by the profile
		MinVersion:         tls.VersionTLS10,
		ClientSessionCache: d.tlsCache,
	}
	if _, err := netip.ParseAddr(h.name); err != nil {
		tcfg.ServerName = h.name
	}
	if key.minV != 0 {
		tcfg.MinVersion, tcfg.MaxVersion = key.minV, key.maxV
	}

	c, out, tlsErr, fail := st.open(h, ap, relay, key.helo, wantTLS, tcfg)
	if fail != nil {
		return nil, fail
	}
	s := &session{c: c, key: key, relay: relay, created: time.Now()}
	switch out {
	case tlsUnused:
		s.plainWhy = plainWhy
	case tlsNotOffered:
		s.plainWhy = "not offered"
	case tlsUp:
		s.verified, s.verifyErr = st.verify(c.tls, h.name)
	default:
		// The TLS phase failed: recipients that require TLS fail by
		// their profile, the others by the fallback mode.
		what := map[tlsOutcome]string{tlsRefused: "STARTTLS refused", tlsHandshake: "TLS handshake failed", tlsAfter: "EHLO after STARTTLS failed"}[out]
		reason := fmt.Sprintf("%s: %v", what, tlsErr)
		if h.smtps {
			fallback = "none" // SMTPS has no plain text to fall back to, now or next time
		}
		flag := (fallback == "next-retry" && out == tlsHandshake) || fallback == "next-retry-any"
		continuePlain := false
		for _, pl := range plans {
			if st.done[pl.i] {
				continue
			}
			if pl.required {
				f := policy.CheckTLS(pl.profile, nil)
				st.record(pl.i, tlsRequired(f, fmt.Sprintf("TLS required, but %s (%s)", reason, relay), relay), a)
				continue
			}
			if fallback == "plain" {
				continuePlain = true
				continue
			}
			r := queue.Result{Status: queue.TempFail, Code: 451, Enhanced: "4.7.5", Host: relay,
				Text: fmt.Sprintf("%s (%s, STARTTLS fallback %s)", reason, relay, fallback)}
			if h.smtps {
				r.Text = fmt.Sprintf("TLS handshake with %s failed: %v", relay, tlsErr)
			}
			st.deferTo(pl.i, r)
			if flag {
				st.tlsFail[pl.i] = true
			}
			a.add(pl.i, r)
		}
		a.tlsFailed = reason
		if !continuePlain {
			if c.broken {
				c.close()
			} else {
				go c.quit()
			}
			return nil, nil
		}
		if out == tlsRefused && !c.broken {
			s.plainWhy = "fallback to plain after " + reason
		} else {
			// A failed handshake leaves the connection unusable: start
			// over in plain text.
			c.close()
			c2, _, _, fail := st.open(h, ap, relay, key.helo, false, nil)
			if fail != nil {
				return nil, fail
			}
			s.c = c2
			s.plainWhy = "fallback to plain after " + reason
		}
		a.tlsFailed = ""
	}

	if h.relay != nil && h.relay.AuthStatus {
		if s.c.tls == nil {
			// PLAIN and LOGIN (the mechanisms offered) give the password
			// away: as Postfix's smtp_sasl_security_options = noplaintext,
			// never over an unencrypted connection.
			fail := localFail(queue.TempFail, 451, "4.7.0",
				"relay %s requires authentication but the connection is not encrypted; credentials not sent", relay)
			fail.Host = relay
			s.c.quit()
			a.setSession(s)
			return nil, fail
		}
		if fail := st.auth(s.c, h.relay, relay); fail != nil {
			fail.Host = relay
			s.c.quit()
			a.setSession(s)
			return nil, fail
		}
	}
	return s, nil
}

// open dials ap and runs greeting, EHLO and (when wanted) STARTTLS. A
// failure there is returned as fail; TLS outcomes as out/tlsErr.
func (st *run) open(h hop, ap netip.AddrPort, relay, helo string, wantTLS bool, tcfg *tls.Config) (c *conn, out tlsOutcome, tlsErr error, fail *queue.Result) {
	d := st.d
	dialer := net.Dialer{Timeout: d.o.DialTimeout}
	var raw net.Conn
	var err error
	if st.src != nil {
		ctx, cancel := context.WithTimeout(st.ctx, d.o.DialTimeout)
		raw, err = st.src.Dial(ctx, ap)
		cancel()
	} else {
		raw, err = dialer.DialContext(st.ctx, "tcp", ap.String())
	}
	if err != nil {
		return nil, 0, nil, localFail(queue.TempFail, 451, "4.4.1", "connect to %s: %v", relay, netErr(err))
	}
	c = newConn(raw, d.o.CommandTimeout)
	c.release = context.AfterFunc(st.ctx, func() { raw.Close() })
	bad := func(f *queue.Result) (*conn, tlsOutcome, error, *queue.Result) {
		if c.broken {
			c.close()
		} else {
			go c.quit()
		}
		return nil, 0, nil, f
	}
	lost := func(stage string, err error) (*conn, tlsOutcome, error, *queue.Result) {
		c.broken = true
		f := localFail(queue.TempFail, 451, "4.4.2", "lost connection with %s while %s: %v", relay, stage, netErr(err))
		f.Host = relay
		return bad(f)
	}
	if h.smtps {
		if err := c.handshake(st.ctx, tcfg); err != nil {
			return c, tlsHandshake, err, nil // judged by the recipients' profiles
		}
		out = tlsUp
	}
	g, err := c.greet()
	if err != nil {
		return lost("receiving the initial greeting", err)
	}
	if g.Code != 220 {
		return bad(replyFail(g, relay, "%s refused to talk: %s", relay, g))
	}
	r, err := c.hello(helo)
	if err != nil {
		return lost("sending EHLO", err)
	}
	if !r.ok() {
		return bad(replyFail(r, relay, "%s rejected EHLO/HELO: %s", relay, r))
	}
	if !wantTLS || h.smtps {
		return c, out, nil, nil
	}
	if !c.has("STARTTLS") {
		return c, tlsNotOffered, nil, nil
	}
	r, err = c.cmd("STARTTLS")
	if err != nil {
		c.broken = true
		return c, tlsRefused, netErr(err), nil
	}
	if r.Code != 220 {
		return c, tlsRefused, errors.New(r.String()), nil
	}
	if err := c.startTLS(st.ctx, tcfg); err != nil {
		return c, tlsHandshake, err, nil
	}
	r, err = c.hello(helo)
	if err != nil {
		c.broken = true
		return c, tlsAfter, netErr(err), nil
	}
	if !r.ok() {
		c.broken = true
		return c, tlsAfter, errors.New(r.String()), nil
	}
	return c, tlsUp, nil, nil
}

// replyFail turns an error reply before the transaction into a result:
// 5xx is permanent (unless another hop does better), anything else
// temporary.
func replyFail(r reply, relay, format string, args ...any) *queue.Result {
	status, enh := queue.TempFail, r.Enh
	if r.Code >= 500 && r.Code < 600 {
		status = queue.PermFail
	}
	if enh == "" {
		enh = fmt.Sprintf("%d.0.0", max(r.Code/100, 4))
	}
	return &queue.Result{Status: status, Code: r.Code, Enhanced: enh, Text: oneLine(fmt.Sprintf(format, args...)), Host: relay}
}

// auth authenticates to a relay server, over TLS only (see connect).
func (st *run) auth(c *conn, rs *config.RelayServer, relay string) *queue.Result {
	if !c.has("AUTH") {
		return localFail(queue.TempFail, 451, "4.7.0", "%s does not offer AUTH", relay)
	}
	pass := rs.AuthPassword
	if pass != "" && st.d.o.Unseal != nil {
		p, err := st.d.o.Unseal(pass)
		if err != nil {
			return localFail(queue.TempFail, 451, "4.7.0", "cannot decrypt the password of relay server %s: %v", rs.Name, err)
		}
		pass = string(p)
	}
	r, err := c.auth(rs.AuthUsername, pass, rs.AuthType)
	if err != nil {
		c.broken = true
		return localFail(queue.TempFail, 451, "4.7.0", "authentication to %s failed: %v", relay, err)
	}
	if r.Code != 235 {
		return localFail(queue.TempFail, 451, "4.7.0", "authentication to %s failed: %s", relay, r)
	}
	return nil
}

// verify checks the server certificate chain against the CA store and
// the next hop's name.
func (st *run) verify(cs *tls.ConnectionState, name string) (bool, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return false, errors.New("no certificate")
	}
	var roots *x509.CertPool
	if st.d.o.Roots != nil {
		roots = st.d.o.Roots()
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName: strings.TrimSuffix(name, "."), Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err == nil, err
}

func netErr(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func badAddr(s string) bool { return strings.ContainsAny(s, "\r\n<>\x00") }

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// attemptLog collects one attempt's log line.
type attemptLog struct {
	relay     string
	rcpts     []string
	decided   map[int]bool // recipients this attempt decided
	s         *session
	tlsFailed string
	outcomes  []outcome
}

type outcome struct {
	rcpt string
	r    queue.Result
}

func (a *attemptLog) setSession(s *session) { a.s = s }

func (a *attemptLog) add(i int, r queue.Result) {
	a.decided[i] = true
	a.outcomes = append(a.outcomes, outcome{a.rcpts[i], r})
}

func (a *attemptLog) line() string {
	var b strings.Builder
	switch {
	case a.s != nil && a.s.c.tls != nil:
		prefix := "STARTTLS=client"
		if a.s.key.implicit {
			prefix = "SMTPS=client"
		}
		a.s.tlsState()
		b.WriteString(prefix + ", relay=" + a.relay + ", " + a.s.tlsLog)
	case a.s != nil:
		fmt.Fprintf(&b, "relay=%s, tls=none (reason: %s)", a.relay, a.s.plainWhy)
	case a.tlsFailed != "":
		fmt.Fprintf(&b, "relay=%s, tls=failed (%s)", a.relay, a.tlsFailed)
	default:
		fmt.Fprintf(&b, "relay=%s", a.relay)
	}
	b.WriteString(", status=")
	b.WriteString(summary(a.outcomes))
	return b.String()
}

// summary renders the outcomes of an attempt: "sent (250 2.0.0 Ok)" when
// all recipients share one, else one part per distinct outcome with its
// recipients.
func summary(outs []outcome) string {
	if len(outs) == 0 {
		return "none"
	}
	type group struct {
		text  string
		rcpts []string
	}
	var groups []*group
	idx := map[string]*group{}
	for _, o := range outs {
		t := statusText(&o.r)
		g := idx[t]
		if g == nil {
			g = &group{text: t}
			idx[t] = g
			groups = append(groups, g)
		}
		g.rcpts = append(g.rcpts, "<"+o.rcpt+">")
	}
	if len(groups) == 1 {
		return groups[0].text
	}
	parts := make([]string, len(groups))
	for k, g := range groups {
		parts[k] = g.text + " to=" + strings.Join(g.rcpts, ",")
	}
	return strings.Join(parts, "; ")
}

// statusText is "sent (250 2.0.0 Ok)", "deferred (...)" or "bounced (...)".
func statusText(r *queue.Result) string {
	word := "deferred"
	switch r.Status {
	case queue.Delivered:
		word = "sent"
	case queue.PermFail:
		word = "bounced"
	}
	var parts []string
	if r.Code != 0 {
		parts = append(parts, strconv.Itoa(r.Code))
	}
	if r.Enhanced != "" {
		parts = append(parts, r.Enhanced)
	}
	if r.Text != "" {
		parts = append(parts, r.Text)
	}
	return word + " (" + strings.Join(parts, " ") + ")"
}
