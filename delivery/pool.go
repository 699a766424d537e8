package delivery

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"mailgate/policy"
)

// poolKey identifies sessions that are interchangeable: same next hop and
// address, same EHLO name, same TLS intent and pinning, same credentials.
type poolKey struct {
	addr       netip.AddrPort
	host       string
	helo       string
	implicit   bool // SMTPS
	wantTLS    bool
	minV, maxV uint16
	user       string
	from       netip.Addr // the source address, when not the appliance's own
}

// session is an established connection ready for a mail transaction.
type session struct {
	c         *conn
	key       poolKey
	relay     string // "host[ip]:port"
	plainWhy  string // why the session is in plain text ("" with TLS)
	verified  bool
	verifyErr error
	created   time.Time
	uses      int

	// The TLS state as the policy and the logs want it, worked out once
	// per connection.
	tlsInfo *policy.TLSInfo
	tlsDesc string // "TLSv1.3 TLS_AES_128_GCM_SHA256"
	tlsLog  string // "version=TLSv1.3, verify=OK, cipher=TLS_AES_128_GCM_SHA256, bits=128"
}

// tlsState returns the session's TLS state for the policy and its short
// description; nil and "" in plain text.
func (s *session) tlsState() (*policy.TLSInfo, string) {
	cs := s.c.tls
	if cs == nil {
		return nil, ""
	}
	if s.tlsDesc == "" {
		s.tlsInfo = policy.Info(cs, s.verified)
		s.tlsDesc = policy.VersionName(cs.Version) + " " + tls.CipherSuiteName(cs.CipherSuite)
		verify := "FAIL"
		if s.verified {
			verify = "OK"
		} else if len(cs.PeerCertificates) == 0 {
			verify = "NONE"
		}
		s.tlsLog = fmt.Sprintf("version=%s, verify=%s, cipher=%s, bits=%d",
			policy.VersionName(cs.Version), verify, tls.CipherSuiteName(cs.CipherSuite), policy.CipherBits(cs.CipherSuite))
	}
	return s.tlsInfo, s.tlsDesc
}

// Connection reuse limits.
const (
	poolIdle       = 5 * time.Second // idle sessions are closed after this
	poolMaxIdle    = 32              // per key
	poolMaxUses    = 1000            // transactions per connection
	poolMaxSession = 5 * time.Minute // age of a connection
)

type idleSession struct {
	s     *session
	timer *time.Timer
}

// pool keeps idle sessions for a few seconds.
type pool struct {
	mu     sync.Mutex
	idle   map[poolKey][]*idleSession
	closed bool
}

func newPool() *pool { return &pool{idle: map[poolKey][]*idleSession{}} }

// get takes an idle session for key (most recently used first).
func (p *pool) get(key poolKey) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		is := list[len(list)-1]
		list = list[:len(list)-1]
		if is.timer.Stop() {
			p.setList(key, list)
			return is.s
		}
	}
	p.setList(key, list)
	return nil
}

func (p *pool) setList(key poolKey, list []*idleSession) {
	if len(list) == 0 {
		delete(p.idle, key)
	} else {
		p.idle[key] = list
	}
}

// put returns a healthy session after a transaction.
func (p *pool) put(s *session) {
	if s.c.broken || s.uses >= poolMaxUses || time.Since(s.created) > poolMaxSession {
		go s.c.quit()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle[s.key]) >= poolMaxIdle {
		p.mu.Unlock()
		go s.c.quit()
		return
	}
	is := &idleSession{s: s}
	is.timer = time.AfterFunc(poolIdle, func() { p.expire(is) })
	p.idle[s.key] = append(p.idle[s.key], is)
	p.mu.Unlock()
}

func (p *pool) expire(is *idleSession) {
	p.mu.Lock()
	list := p.idle[is.s.key]
	for i, x := range list {
		if x == is {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	p.setList(is.s.key, list)
	p.mu.Unlock()
	is.s.c.quit()
}

// close quits every idle session and refuses new ones.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*session
	for k, list := range p.idle {
		for _, is := range list {
			if is.timer.Stop() {
				all = append(all, is.s)
			}
		}
		delete(p.idle, k)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.c.quit()
		}()
	}
	wg.Wait()
}
