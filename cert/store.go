package cert

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// Entry is one named server certificate handed to NewStore. KeyPEM is the
// private key already unsealed.
type Entry struct {
	Name     string
	ChainPEM []byte
	KeyPEM   []byte
}

// Store answers "which certificate for SNI name X". It is immutable and safe
// for concurrent use; the appliance builds a new one on every configuration
// change and publishes it through a Holder.
type Store struct {
	entries []*storeEntry // in the order given to NewStore
	byName  map[string]*storeEntry
	def     *storeEntry // nil when the default is missing or failed to load
	now     func() time.Time
}

type storeEntry struct {
	name string
	cert *tls.Certificate
	leaf *x509.Certificate
	dns  []string // normalised DNS SANs, wildcards included
}

// NewStore loads entries. Entries that fail to parse, whose key does not
// match, or whose name is empty or repeated are left out and reported in
// the returned errors, each naming its entry; a defaultName that names no
// entry is reported too. now gives the time against which validity is
// checked on every lookup; nil means time.Now.
func NewStore(entries []Entry, defaultName string, now func() time.Time) (*Store, []error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{byName: map[string]*storeEntry{}, now: now}
	var errs []error
	failed := map[string]bool{}
	for i, e := range entries {
		if e.Name == "" {
			errs = append(errs, fmt.Errorf("certificate #%d: no name", i+1))
			continue
		}
		if _, dup := s.byName[e.Name]; dup || failed[e.Name] {
			errs = append(errs, fmt.Errorf("certificate %q: duplicate name", e.Name))
			continue
		}
		se, err := loadEntry(e)
		if err != nil {
			failed[e.Name] = true
			errs = append(errs, fmt.Errorf("certificate %q: %w", e.Name, err))
			continue
		}
		s.entries = append(s.entries, se)
		s.byName[e.Name] = se
	}
	if defaultName != "" {
		s.def = s.byName[defaultName]
		if s.def == nil && !failed[defaultName] {
			errs = append(errs, fmt.Errorf("certificate %q: default certificate not found", defaultName))
		}
	}
	return s, errs
}

func loadEntry(e Entry) (*storeEntry, error) {
	bundle := make([]byte, 0, len(e.ChainPEM)+len(e.KeyPEM)+1)
	bundle = append(append(append(bundle, e.ChainPEM...), '\n'), e.KeyPEM...)
	chainPEM, keyPEM, err := ParsePEMBundle(bundle)
	if err != nil {
		return nil, strip(err)
	}
	c, err := tls.X509KeyPair(chainPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	se := &storeEntry{name: e.Name, cert: &c, leaf: c.Leaf}
	for _, n := range c.Leaf.DNSNames {
		if n = NormaliseName(n); n != "" {
			se.dns = append(se.dns, n)
		}
	}
	return se, nil
}

// strip removes the package prefix from err's message, for errors that are
// themselves wrapped with the entry name.
func strip(err error) error {
	if msg, ok := strings.CutPrefix(err.Error(), "cert: "); ok {
		return errors.New(msg)
	}
	return err
}

// Names returns the names of the loaded certificates, sorted.
func (s *Store) Names() []string {
	if s == nil {
		return nil
	}
	names := make([]string, 0, len(s.entries))
	for _, e := range s.entries {
		names = append(names, e.name)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the certificate to present for serverName.
//
// Only certificates valid at the store's current time are ever returned.
// The order of preference is: a certificate with a DNS SAN equal to
// serverName (case-insensitive, trailing dot ignored; an IP address is
// matched against IP SANs), then one with a wildcard SAN matching it
// ("*.example.com" covers exactly one extra label), then the default
// certificate, then the one named "Factory". Among several matching
// certificates the one expiring last wins. An empty serverName (no SNI)
// goes straight to the default, as does a name holding "*".
func (s *Store) Lookup(serverName string) (*tls.Certificate, error) {
	name := NormaliseName(serverName)
	if s == nil {
		return nil, noValid(name)
	}
	t := s.now()
	valid := func(e *storeEntry) bool {
		return e != nil && !t.Before(e.leaf.NotBefore) && !t.After(e.leaf.NotAfter)
	}
	if name != "" && !strings.Contains(name, "*") {
		if e := s.best(valid, func(e *storeEntry) bool { return e.matchesExact(name) }); e != nil {
			return e.cert, nil
		}
		if dot := strings.IndexByte(name, '.'); dot > 0 && net.ParseIP(name) == nil {
			pattern := "*" + name[dot:]
			if e := s.best(valid, func(e *storeEntry) bool { return e.hasDNS(pattern) }); e != nil {
				return e.cert, nil
			}
		}
	}
	if valid(s.def) {
		return s.def.cert, nil
	}
	if f := s.byName[FactoryName]; valid(f) {
		return f.cert, nil
	}
	return nil, noValid(name)
}

func noValid(name string) error {
	if name == "" {
		name = "(no server name)"
	}
	return fmt.Errorf("no valid certificate for %s", name)
}

// best returns the valid entry satisfying match that expires last; on a tie
// the earlier entry wins.
func (s *Store) best(valid, match func(*storeEntry) bool) *storeEntry {
	var best *storeEntry
	for _, e := range s.entries {
		if !match(e) || !valid(e) {
			continue
		}
		if best == nil || e.leaf.NotAfter.After(best.leaf.NotAfter) {
			best = e
		}
	}
	return best
}

func (e *storeEntry) hasDNS(name string) bool {
	for _, n := range e.dns {
		if n == name {
			return true
		}
	}
	return false
}

func (e *storeEntry) matchesExact(name string) bool {
	if ip := net.ParseIP(name); ip != nil {
		for _, a := range e.leaf.IPAddresses {
			if a.Equal(ip) {
				return true
			}
		}
		return false
	}
	return e.hasDNS(name)
}

// GetCertificate is suitable for tls.Config.GetCertificate.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := ""
	if hello != nil {
		name = hello.ServerName
	}
	return s.Lookup(name)
}

// Holder is an atomically swappable *Store, so that listeners keep one
// tls.Config across reloads. The zero value holds no store.
type Holder struct {
	p atomic.Pointer[Store]
}

// Set publishes s; handshakes that start afterwards use it. Set(nil)
// withdraws the current store.
func (h *Holder) Set(s *Store) { h.p.Store(s) }

// Get returns the current store, or nil.
func (h *Holder) Get() *Store { return h.p.Load() }

// GetCertificate is suitable for tls.Config.GetCertificate; it fails while
// no store has been set.
func (h *Holder) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := h.p.Load()
	if s == nil {
		return nil, errors.New("no certificate store loaded")
	}
	return s.GetCertificate(hello)
}
