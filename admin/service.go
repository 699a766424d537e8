// Package admin is the administration layer: every operation an admin
// performs on the appliance, whether from the SSH CLI or the web UI, goes
// through a Service. It owns the committed configuration (loaded from and
// versioned in the store), validates and commits changes atomically,
// reverts, resets to factory defaults, and keeps the certificate store in
// step with the configuration.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"mailgate/cert"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/firmware"
	"mailgate/store"
)

// Options configure a Service.
type Options struct {
	DB  *store.DB
	Log *eventlog.Log
	// Dev selects the development factory profile (unprivileged ports).
	Dev bool
	// HashCost is the bcrypt cost of new passwords (0: default); tests lower it.
	HashCost int
	Now      func() time.Time
}

// Service is the appliance as its administrators see it.
type Service struct {
	opt   Options
	id    *cert.Identity
	env   *config.Env
	certs cert.Holder

	mu    sync.Mutex
	cur   *config.Config
	rev   uint64
	subs  []func(*config.Config)
	check func(*config.Config) error // SetCommitCheck
	queue MailQueue
	// interception is transparent mode's, while it runs.
	interception Interception
	// formatFrom[n] is the first revision stored in format n+1 or later
	// (n = 1, 2: formats 2 and 3); older ones are read through
	// config.Migrate.
	formatFrom [config.FormatVersion]uint64
	// Reboot restarts the appliance; set by the process that owns it.
	Reboot func()
	// Firmware installs image upgrades; nil when the process does not run
	// on the appliance image.
	Firmware Firmware
	// HostKeyFingerprint of the SSH CLI, for `get system status`.
	HostKeyFingerprint string
	// Started is when the appliance process started.
	Started time.Time
}

// Firmware is the appliance image's upgrade path (firmware.Runtime).
type Firmware interface {
	// Install writes an upgrade file to the inactive root partition,
	// verifies it and arms a test boot of it at the next reboot.
	Install(ctx context.Context, r io.Reader, progress io.Writer) (firmware.Manifest, error)
	// Status describes the root partitions.
	Status() string
}

// Version is the appliance version, set at build time with
// -ldflags "-X mailgate/admin.Version=...".
var Version = "dev"

// Open loads the device identity (creating it on first boot) and the last
// committed configuration (committing the factory configuration on first
// boot). A revision that no longer parses is skipped for the one before.
func Open(opt Options) (*Service, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Service{opt: opt, Reboot: func() {}, Started: opt.Now()}
	raw, err := opt.DB.MetaOrCreate("identity", func() ([]byte, error) {
		id, err := cert.GenerateIdentity("mailgate", "", localIPs(), opt.Now())
		if err != nil {
			return nil, err
		}
		return id.Marshal()
	})
	if err != nil {
		return nil, fmt.Errorf("device identity: %w", err)
	}
	if s.id, err = cert.UnmarshalIdentity(raw); err != nil {
		return nil, fmt.Errorf("device identity: %w", err)
	}
	s.env = &config.Env{
		Seal:      func(p []byte) (string, error) { return cert.Seal(s.id.DeviceKey, p) },
		Open:      func(t string) ([]byte, error) { return cert.Open(s.id.DeviceKey, t) },
		CheckCert: checkCert,
		HashCost:  opt.HashCost,
	}
	for f := 2; f <= config.FormatVersion; f++ {
		if s.formatFrom[f-1], err = revisionFormat(opt.DB, f); err != nil {
			return nil, fmt.Errorf("configuration store: %w", err)
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// revisionFormat returns the first revision stored in format (or a later
// one) of the configuration language: on the first start of a version
// that has it, every revision already stored is older.
func revisionFormat(db *store.DB, format int) (uint64, error) {
	latest, err := db.Latest()
	if err != nil {
		return 0, err
	}
	next := uint64(1)
	if latest != nil {
		next = latest.ID + 1
	}
	raw, err := db.MetaOrCreate(fmt.Sprintf("config-format-%d-from", format), func() ([]byte, error) {
		return []byte(strconv.FormatUint(next, 10)), nil
	})
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(raw), 10, 64)
}

// revision reads a stored revision in the current names.
func (s *Service) revision(id uint64) (*store.Revision, error) {
	r, err := s.opt.DB.Get(id)
	if err != nil {
		return r, err
	}
	for f := 1; f < config.FormatVersion; f++ {
		if r.ID < s.formatFrom[f] {
			r.Text = config.Migrate(r.Text, f)
			break
		}
	}
	return r, nil
}

func checkCert(chain, key []byte) error {
	_, _, err := cert.ParsePEMBundle(append(append(append([]byte(nil), chain...), '\n'), key...))
	return err
}

func (s *Service) load() error {
	revs, err := s.opt.DB.List()
	if err != nil {
		return err
	}
	if len(revs) == 0 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.commitLocked("system", "factory defaults", s.factory(""))
	}
	for _, r := range revs {
		full, err := s.revision(r.ID)
		if err != nil {
			return err
		}
		c, err := config.Parse(full.Text, s.env)
		var disabled []int
		if err == nil {
			disabled = config.DisableOpenRelays(c)
			err = config.Validate(c, s.env)
		}
		if err != nil {
			s.event(eventlog.Error, "", "revision %d cannot be loaded, trying the previous one: %v", r.ID, err)
			continue
		}
		if len(disabled) > 0 {
			// Stored before the open-relay check: load it without the hole.
			s.mu.Lock()
			defer s.mu.Unlock()
			s.event(eventlog.Warning, "", "revision %d: receive rules %v made an open relay and are disabled", r.ID, disabled)
			return s.commitLocked("system", fmt.Sprintf("receive rules %v disabled: open relay", disabled), c)
		}
		s.cur, s.rev = c, r.ID
		s.rebuildCerts()
		return nil
	}
	return errors.New("no configuration revision can be loaded; run with a fresh data directory or restore a backup")
}

func (s *Service) factory(mode string) *config.Config {
	sealed, err := cert.Seal(s.id.DeviceKey, s.id.FactoryKeyPEM)
	if err != nil {
		panic(err) // only fails when the system has no randomness
	}
	return config.Factory(config.FactoryOptions{Mode: mode, Dev: s.opt.Dev,
		FactoryCertPEM: string(s.id.FactoryCertPEM), FactoryKeySealed: sealed})
}

// Factory is this device's factory configuration for an operation mode
// ("" is gateway), with its Factory certificate.
func (s *Service) Factory(mode string) *config.Config { return s.factory(mode) }

// Env is what config values need from this device (sealing secrets).
func (s *Service) Env() *config.Env { return s.env }

// Identity is the device identity (device CA and Factory certificate).
func (s *Service) Identity() *cert.Identity { return s.id }

// FactoryFingerprint is the SHA-256 fingerprint of the Factory certificate
// as configured (it follows renames, see renameFactory), or of the one made
// on first boot when the configuration has none.
func (s *Service) FactoryFingerprint() string {
	pemText := s.id.FactoryCertPEM
	c, _ := s.Config()
	for _, lc := range c.System.Certificate.Local {
		if lc.Name == cert.FactoryName {
			pemText = []byte(lc.Certificate)
		}
	}
	fp, _ := cert.Fingerprint(pemText)
	return fp
}

// Certificates is the live certificate store for the listeners.
func (s *Service) Certificates() *cert.Holder { return &s.certs }

// Log is the event log.
func (s *Service) Log() *eventlog.Log { return s.opt.Log }

// Config returns the committed configuration and its revision. The tree
// must not be modified: clone it first.
func (s *Service) Config() (*config.Config, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.rev
}

// Subscribe registers fn to run with every newly committed configuration.
func (s *Service) Subscribe(fn func(*config.Config)) {
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
}

// Commit commits a block edited on revision base. When another session
// committed in between, the block's operations are replayed on the newer
// configuration instead, so neither session's changes are lost.
func (s *Service) Commit(user string, base uint64, work *config.Config, ops []config.Op) error {
	s.mu.Lock()
	next := work
	if base != s.rev {
		next = s.cur.Clone()
		if err := config.Replay(next, ops); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("the configuration changed in another session and this change no longer applies: %w", err)
		}
	}
	return s.commitUnlock(user, "", next)
}

// Replace commits c as a whole (restore, revert, operation mode switch).
func (s *Service) Replace(user, comment string, c *config.Config) error {
	s.mu.Lock()
	return s.commitUnlock(user, comment, c)
}

// Update applies fn to a copy of the configuration and commits it.
func (s *Service) Update(user, comment string, fn func(*config.Config) error) error {
	s.mu.Lock()
	c := s.cur.Clone()
	if err := fn(c); err != nil {
		s.mu.Unlock()
		return err
	}
	return s.commitUnlock(user, comment, c)
}

// SetCommitCheck adds a check every configuration must pass to be
// committed, beside its validation: what the running system can do (the
// kernel features transparent mode needs).
func (s *Service) SetCommitCheck(fn func(*config.Config) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.check = fn
}

// commitUnlock commits with s.mu held, releases it, then tells subscribers.
func (s *Service) commitUnlock(user, comment string, c *config.Config) error {
	err := s.commitLocked(user, comment, c)
	subs := append([](func(*config.Config)){}, s.subs...)
	cur := s.cur
	s.mu.Unlock()
	if err == nil {
		for _, fn := range subs {
			fn(cur)
		}
	}
	return err
}

func (s *Service) commitLocked(user, comment string, c *config.Config) error {
	if err := config.Validate(c, s.env); err != nil {
		return err
	}
	if s.check != nil {
		if err := s.check(c); err != nil {
			return err
		}
	}
	renamed, err := s.renameFactory(c)
	if err != nil {
		return err
	}
	if comment == "" && s.cur != nil {
		comment = "config " + strings.Join(config.ChangedPaths(s.cur, c), ", config ")
	}
	rev, err := s.opt.DB.Commit(user, comment, config.Render(c, true), s.opt.Now())
	if err != nil && !errors.Is(err, store.ErrUnchanged) {
		return fmt.Errorf("saving the configuration: %w", err)
	}
	changed := rev.ID != s.rev
	s.cur, s.rev = c, rev.ID
	s.rebuildCerts()
	if changed {
		s.event(eventlog.Notice, user, "configuration revision %d committed: %s", rev.ID, comment)
	}
	if renamed != "" {
		s.event(eventlog.Notice, user, "Factory certificate re-issued for %s", renamed)
	}
	return nil
}

// renameFactory keeps the Factory certificate naming the appliance: when
// c's Factory certificate is one the device CA made (cert.FactoryNames)
// but for other names than c's hostname and local-domain-name, it is
// replaced by the committed one if that one is for c's names (a text
// edited from an older copy), else by a new one. It returns the new host
// name ("" when nothing changed). A certificate of the administrator's
// own under the name Factory is never touched.
func (s *Service) renameFactory(c *config.Config) (string, error) {
	i := slices.IndexFunc(c.System.Certificate.Local, func(lc config.LocalCert) bool { return lc.Name == cert.FactoryName })
	if i < 0 {
		return "", nil
	}
	lc := &c.System.Certificate.Local[i]
	g := c.System.Global
	host, domain := cert.NormaliseName(g.Hostname), cert.NormaliseName(g.LocalDomainName)
	if h, d, ok := s.id.FactoryNames([]byte(lc.Certificate)); !ok || (h == host && d == domain) {
		return "", nil
	}
	if s.cur != nil {
		for _, cur := range s.cur.System.Certificate.Local {
			if h, d, ok := s.id.FactoryNames([]byte(cur.Certificate)); cur.Name == cert.FactoryName && ok && h == host && d == domain {
				*lc = cur
				return "", nil
			}
		}
	}
	certPEM, keyPEM, ok, err := s.id.RenameFactory([]byte(lc.Certificate), host, domain, s.opt.Now())
	if err != nil || !ok {
		return "", err
	}
	sealed, err := cert.Seal(s.id.DeviceKey, keyPEM)
	if err != nil {
		return "", err
	}
	lc.Certificate, lc.PrivateKey = strings.TrimSpace(string(certPEM)), sealed
	if domain != "" {
		host += "." + domain
	}
	return host, nil
}

func (s *Service) rebuildCerts() {
	var entries []cert.Entry
	for _, lc := range s.cur.System.Certificate.Local {
		key, err := cert.Open(s.id.DeviceKey, lc.PrivateKey)
		if err != nil {
			s.event(eventlog.Error, "", "certificate %q: %v", lc.Name, err)
			continue
		}
		entries = append(entries, cert.Entry{Name: lc.Name, ChainPEM: []byte(lc.Certificate), KeyPEM: key})
	}
	st, errs := cert.NewStore(entries, s.cur.System.Global.DefaultCertificate, time.Now)
	for _, err := range errs {
		s.event(eventlog.Error, "", "certificate store: %v", err)
	}
	s.certs.Set(st)
}

// Revisions lists the kept configuration revisions, newest first.
func (s *Service) Revisions() ([]store.Revision, error) { return s.opt.DB.List() }

// Revision returns one revision with its text.
func (s *Service) Revision(id uint64) (*store.Revision, error) { return s.revision(id) }

// Revert commits the configuration of an earlier revision as a new one.
func (s *Service) Revert(user string, id uint64) error {
	r, err := s.revision(id)
	if err != nil {
		return err
	}
	c, err := config.Parse(r.Text, s.env)
	if err != nil {
		return fmt.Errorf("revision %d: %w", id, err)
	}
	return s.Replace(user, fmt.Sprintf("revert to revision %d", id), c)
}

// FactoryReset commits the factory configuration (keeping the device
// identity: the Factory certificate and the SSH host key stay).
func (s *Service) FactoryReset(user string) error {
	return s.Replace(user, "factory reset", s.factory(""))
}

// SwitchMode commits the factory configuration of another operation mode,
// keeping administrators, network settings and certificates.
func (s *Service) SwitchMode(user, mode string, from *config.Config) error {
	return s.Replace(user, "operation mode changed to "+mode, config.SwitchMode(from, mode))
}

// SetPassword sets an administrator's password (strength checked).
func (s *Service) SetPassword(user, name, password string) error {
	if err := config.CheckPasswordStrength(password); err != nil {
		return err
	}
	h, err := config.HashPassword(password, s.env)
	if err != nil {
		return err
	}
	return s.Update(user, "password of "+name+" changed", func(c *config.Config) error {
		for i := range c.System.Admin {
			if c.System.Admin[i].Name == name {
				c.System.Admin[i].Password = h
				return nil
			}
		}
		return fmt.Errorf("no administrator %q", name)
	})
}

// IssueCertificate creates a certificate signed by the device CA and stores
// it as `system certificate local NAME`.
func (s *Service) IssueCertificate(user, name, commonName string, sans []string, days int) error {
	now := s.opt.Now()
	certPEM, keyPEM, err := s.id.Issue(commonName, sans, now.AddDate(0, 0, days), now)
	if err != nil {
		return err
	}
	return s.PutCertificate(user, name, certPEM, keyPEM, "issued by the device CA")
}

// PutCertificate stores (or replaces) a local certificate with its key.
func (s *Service) PutCertificate(user, name string, chainPEM, keyPEM []byte, comments string) error {
	sealed, err := cert.Seal(s.id.DeviceKey, keyPEM)
	if err != nil {
		return err
	}
	lc := config.LocalCert{Name: name, Certificate: strings.TrimSpace(string(chainPEM)), PrivateKey: sealed, Comments: comments}
	return s.Update(user, "certificate "+name+" imported", func(c *config.Config) error {
		c.System.Certificate.Local = upsert(c.System.Certificate.Local, lc, func(e config.LocalCert) bool { return e.Name == name })
		return nil
	})
}

// PutCACertificate stores (or replaces) a trusted CA certificate.
func (s *Service) PutCACertificate(user, name string, pemText []byte) error {
	if _, err := cert.ParseChain(pemText); err != nil {
		return err
	}
	ca := config.CACert{Name: name, Certificate: strings.TrimSpace(string(pemText))}
	return s.Update(user, "CA certificate "+name+" imported", func(c *config.Config) error {
		c.System.Certificate.CA = upsert(c.System.Certificate.CA, ca, func(e config.CACert) bool { return e.Name == name })
		return nil
	})
}

// upsert replaces the entry of list that same selects, or appends v.
func upsert[T any](list []T, v T, same func(T) bool) []T {
	for i := range list {
		if same(list[i]) {
			list[i] = v
			return list
		}
	}
	return append(list, v)
}

// Event records an event in the event log.
func (s *Service) Event(level eventlog.Level, subsystem, user, remote, msg string) {
	if s.opt.Log != nil {
		s.opt.Log.Log(eventlog.Event{Level: level, Subsystem: subsystem, User: user, Remote: remote, Message: msg})
	}
}

func (s *Service) event(level eventlog.Level, user, format string, args ...any) {
	s.Event(level, "config", user, "", fmt.Sprintf(format, args...))
}

func localIPs() []net.IP {
	var out []net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n.IP)
		}
	}
	return out
}
