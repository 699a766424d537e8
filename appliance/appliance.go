// Package appliance wires the appliance process together: it opens the
// data directory, loads the device identity and configuration through the
// administration layer, starts the services the configuration asks for
// (the SSH CLI now; the mail services of the operation mode as they come)
// and restarts listeners when a committed change moves them.
package appliance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"

	"mailgate/admin"
	"mailgate/cert"
	"mailgate/cli"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/store"
)

// Options configure an appliance process.
type Options struct {
	DataDir string
	// Dev selects the development factory profile (unprivileged ports).
	Dev bool
	// ListenHost is the address services bind to ("" = all).
	ListenHost string
	// SSHPort overrides the configured port-ssh when non-zero.
	SSHPort int
	// HashCost is the bcrypt cost for new passwords (0 = default).
	HashCost int
	// Console receives the start-up banner (nil = none).
	Console io.Writer
	// MaxEvents bounds the event log (0 = 100000).
	MaxEvents int
}

// Appliance is a running appliance.
type Appliance struct {
	opt Options
	db  *store.DB
	log *eventlog.Log
	svc *admin.Service
	ssh *cli.Server

	mu      sync.Mutex
	sshLn   net.Listener
	sshAddr string
	reboot  chan struct{}
	serveWG sync.WaitGroup
}

// Start opens the data directory and starts the services.
func Start(opt Options) (*Appliance, error) {
	if opt.MaxEvents == 0 {
		opt.MaxEvents = 100000
	}
	a := &Appliance{opt: opt, reboot: make(chan struct{}, 1)}
	var err error
	if a.db, err = store.Open(opt.DataDir); err != nil {
		return nil, err
	}
	if a.log, err = eventlog.Open(opt.DataDir, opt.MaxEvents); err != nil {
		a.db.Close()
		return nil, err
	}
	a.svc, err = admin.Open(admin.Options{DB: a.db, Log: a.log, Dev: opt.Dev, HashCost: opt.HashCost})
	if err != nil {
		a.closeStores()
		return nil, err
	}
	a.svc.Reboot = func() {
		select {
		case a.reboot <- struct{}{}:
		default:
		}
	}
	hostKey, err := a.db.MetaOrCreate("ssh-host-key", cli.GenerateHostKey)
	if err != nil {
		a.closeStores()
		return nil, fmt.Errorf("ssh host key: %w", err)
	}
	a.ssh, err = cli.NewServer(cli.ServerConfig{
		HostKeyPEM: hostKey,
		Accounts:   cli.ServiceAccounts(a.svc),
		NewInterpreter: func(user string, readOnly bool) cli.Interpreter {
			return cli.NewSession(a.svc, user, readOnly)
		},
		Event: func(level, subsystem, user, remote, msg string) {
			lv, err := eventlog.ParseLevel(level)
			if err != nil {
				lv = eventlog.Information
			}
			a.svc.Event(lv, subsystem, user, remote, msg)
		},
	})
	if err != nil {
		a.closeStores()
		return nil, err
	}
	a.svc.HostKeyFingerprint = a.ssh.HostKeyFingerprint()
	cfg, _ := a.svc.Config()
	if err := a.apply(cfg); err != nil {
		a.Close()
		return nil, err
	}
	a.svc.Subscribe(func(c *config.Config) {
		if err := a.apply(c); err != nil {
			a.svc.Event(eventlog.Error, "system", "", "", err.Error())
		}
	})
	a.svc.Event(eventlog.Notice, "system", "", "", "mailgate "+admin.Version+" started")
	a.banner()
	return a, nil
}

// apply brings the running services in line with c.
func (a *Appliance) apply(c *config.Config) error {
	port := c.System.Global.PortSSH
	if a.opt.SSHPort != 0 {
		port = a.opt.SSHPort
	}
	addr := net.JoinHostPort(a.opt.ListenHost, strconv.Itoa(port))
	a.mu.Lock()
	defer a.mu.Unlock()
	if addr == a.sshAddr {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	old := a.sshLn
	a.sshLn, a.sshAddr = ln, addr
	a.serveWG.Add(1)
	go func() {
		defer a.serveWG.Done()
		a.ssh.Serve(ln)
	}()
	if old != nil {
		old.Close()
	}
	return nil
}

// SSHAddr is the address the SSH CLI listens on.
func (a *Appliance) SSHAddr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sshLn == nil {
		return ""
	}
	return a.sshLn.Addr().String()
}

// Service is the administration layer.
func (a *Appliance) Service() *admin.Service { return a.svc }

// RebootRequested is signalled when an admin asks for a reboot.
func (a *Appliance) RebootRequested() <-chan struct{} { return a.reboot }

func (a *Appliance) banner() {
	if a.opt.Console == nil {
		return
	}
	id := a.svc.Identity()
	fp, _ := cert.Fingerprint(id.FactoryCertPEM)
	cfg, rev := a.svc.Config()
	fmt.Fprintf(a.opt.Console, "mailgate %s (%s mode, configuration revision %d)\n", admin.Version, cfg.System.Global.OperationMode, rev)
	fmt.Fprintf(a.opt.Console, "  data directory:        %s\n", a.opt.DataDir)
	fmt.Fprintf(a.opt.Console, "  SSH CLI:               %s\n", a.SSHAddr())
	fmt.Fprintf(a.opt.Console, "  SSH host key:          %s\n", a.ssh.HostKeyFingerprint())
	fmt.Fprintf(a.opt.Console, "  factory certificate:   SHA-256 %s\n", fp)
}

// Close stops the services and closes the data directory.
func (a *Appliance) Close() error {
	var errs []error
	if a.ssh != nil {
		errs = append(errs, a.ssh.Close())
	}
	a.mu.Lock()
	if a.sshLn != nil {
		a.sshLn.Close()
	}
	a.mu.Unlock()
	a.serveWG.Wait()
	errs = append(errs, a.closeStores())
	return errors.Join(errs...)
}

func (a *Appliance) closeStores() error {
	var errs []error
	if a.log != nil {
		errs = append(errs, a.log.Close())
	}
	if a.db != nil {
		errs = append(errs, a.db.Close())
	}
	return errors.Join(errs...)
}
