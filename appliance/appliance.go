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
	"strings"
	"sync"

	"github.com/vishvananda/netlink"

	"mailgate/admin"
	"mailgate/cli"
	"mailgate/config"
	"mailgate/eventlog"
	"mailgate/firmware"
	"mailgate/modes/gateway"
	"mailgate/modes/mta"
	"mailgate/modes/server"
	"mailgate/modes/transparent"
	"mailgate/netif"
	"mailgate/smtpd"
	"mailgate/store"
	"mailgate/webui"
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
	// HTTPSPort overrides the configured port-https when non-zero.
	HTTPSPort int
	// SMTPPort, SMTPSPort and MSAPort override the configured mail ports,
	// POP3Port and POP3SPort those of server mode.
	SMTPPort, SMTPSPort, MSAPort int
	POP3Port, POP3SPort          int
	// DNSServers override `system dns` (host:port), for test networks.
	DNSServers []string
	// MXPort overrides port 25 for MX deliveries, for test networks.
	MXPort int
	// HashCost is the bcrypt cost for new passwords (0 = default).
	HashCost int
	// Console receives the start-up banner (nil = none).
	Console io.Writer
	// MaxEvents bounds the event log (0 = 100000).
	MaxEvents int
	// Firmware is the appliance image's runtime (nil when not running on
	// the image): upgrades, reboots, the network configuration file.
	Firmware *firmware.Runtime
	// ReadyFile is written once the services are up (image/init confirms
	// an upgrade's test boot on it).
	ReadyFile string
	// ManageICMP lets allowaccess ping switch the kernel's answers to
	// echo requests (the image, or a network namespace of its own).
	ManageICMP bool
	// ManageNetwork applies `system interface` and `system route` to the
	// kernel (package netif) at start and at every commit: the image,
	// or a network namespace of its own. Off, the host's network is
	// never touched (make run).
	ManageNetwork bool
}

// Appliance is a running appliance.
type Appliance struct {
	opt Options
	db  *store.DB
	log *eventlog.Log
	svc *admin.Service
	ssh *cli.Server
	// guard enforces the interfaces' allowaccess on every listener.
	guard *accessGuard
	// network applies the network configuration (Options.ManageNetwork).
	network *netif.Manager

	mu      sync.Mutex
	mode    string
	mail    mailMode
	sshL    adminListener
	webL    adminListener
	web     *webui.Server
	reboot  chan struct{}
	closing chan struct{}
	serveWG sync.WaitGroup
}

// Start opens the data directory and starts the services.
func Start(opt Options) (*Appliance, error) {
	if opt.MaxEvents == 0 {
		opt.MaxEvents = 100000
	}
	a := &Appliance{opt: opt, reboot: make(chan struct{}, 1), closing: make(chan struct{})}
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
	a.svc.SetCommitCheck(transparent.Check)
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
		Banners:    cli.ServiceBanners(a.svc),
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
	a.web = webui.New(webui.Options{Service: a.svc})
	a.guard = newAccessGuard(func() *config.Config { c, _ := a.svc.Config(); return c }, func(msg string) {
		a.svc.Event(eventlog.Warning, "system", "", "", msg)
	})
	if opt.ManageNetwork {
		h, err := netlink.NewHandle()
		if err != nil {
			a.closeStores()
			return nil, fmt.Errorf("network configuration: %w", err)
		}
		a.network = netif.NewManager(h)
	}
	cfg, _ := a.svc.Config()
	if err := a.applyHost(cfg, true); err != nil {
		a.svc.Event(eventlog.Error, "system", "", "", err.Error())
	}
	if err := a.applyAdmin(cfg); err != nil {
		a.Close()
		return nil, err
	}
	// The CLI must stay reachable to fix whatever keeps mail from starting.
	if err := a.applyMode(cfg); err != nil {
		a.svc.Event(eventlog.Error, "system", "", "", err.Error())
		if opt.Console != nil {
			fmt.Fprintln(opt.Console, "mailgate:", err)
		}
	}
	a.svc.Subscribe(func(c *config.Config) {
		if err := a.apply(c); err != nil {
			a.svc.Event(eventlog.Error, "system", "", "", err.Error())
		}
	})
	if opt.Firmware != nil {
		a.svc.Firmware = opt.Firmware
	}
	a.svc.Event(eventlog.Notice, "system", "", "", "mailgate "+admin.Version+" started")
	a.banner()
	if err := firmware.Ready(opt.ReadyFile); err != nil {
		a.svc.Event(eventlog.Error, "system", "", "", "ready file: "+err.Error())
	}
	if opt.Firmware != nil && opt.Console != nil {
		go a.announceAddresses(a.closing)
	}
	return a, nil
}

// mailMode is the running operation mode's mail services.
type mailMode interface {
	Apply(c *config.Config) error
	Close() error
}

// apply brings the running services in line with c.
func (a *Appliance) apply(c *config.Config) error {
	return errors.Join(a.applyHost(c, false), a.applyAdmin(c), a.applyMode(c))
}

// applyHost brings the system around the services in line with c: the
// network (Options.ManageNetwork: interfaces, addresses, routes, applied
// at once and announced), on the image the DHCP switch of port1 and the
// name servers of a static port1, and the kernel's answers to ping
// (Options.ManageICMP).
func (a *Appliance) applyHost(c *config.Config, starting bool) error {
	var errs []error
	var changes []string
	if a.opt.Firmware != nil {
		// Before the addresses: a static port1 stops the DHCP client.
		changed, err := writeNetwork(a.opt.DataDir, c)
		errs = append(errs, err)
		if changed {
			if port1Static(c) {
				changes = append(changes, "port1 DHCP client stopped")
			} else {
				changes = append(changes, "port1 DHCP client started")
			}
		}
		if _, err := writeResolvConf(resolvConf, c); err != nil {
			errs = append(errs, fmt.Errorf("name servers of the static port1: %w", err))
		}
	}
	if a.network != nil {
		ch, err := a.network.Apply(c)
		changes = append(changes, ch...)
		if err != nil {
			errs = append(errs, fmt.Errorf("network configuration: %w", err))
		}
	}
	if len(changes) > 0 {
		when := "network configuration applied: "
		if starting {
			when = "network configuration applied at start: "
		}
		a.svc.Event(eventlog.Notice, "system", "", "", when+strings.Join(changes, ", "))
	}
	if a.opt.ManageICMP {
		errs = append(errs, applyPing(c))
	}
	return errors.Join(errs...)
}

// applyMode starts the mail services of the configured operation mode,
// replacing those of another mode, or updates the running ones.
func (a *Appliance) applyMode(c *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	mode := c.System.Global.OperationMode
	if a.mail != nil && a.mode == mode {
		return a.mail.Apply(c)
	}
	if a.mail != nil {
		a.mail.Close()
		a.mail = nil
		a.svc.Event(eventlog.Notice, "system", "", "", "stopped "+a.mode+" mode")
	}
	a.mode = mode
	core := mta.Options{DataDir: a.opt.DataDir, Service: a.svc, ListenHost: a.opt.ListenHost,
		SMTPPort: a.opt.SMTPPort, SMTPSPort: a.opt.SMTPSPort, MSAPort: a.opt.MSAPort,
		DNSServers: a.opt.DNSServers, MXPort: a.opt.MXPort, Guard: a.guard.Listener}
	switch mode {
	case "gateway":
		m, err := gateway.Start(core)
		if err != nil {
			return fmt.Errorf("gateway mode: %w", err)
		}
		a.mail = m
		a.svc.Event(eventlog.Notice, "system", "", "", "started gateway mode")
	case "server":
		m, err := server.Start(server.Options{Options: core, POP3Port: a.opt.POP3Port, POP3SPort: a.opt.POP3SPort})
		if err != nil {
			return fmt.Errorf("server mode: %w", err)
		}
		a.mail = m
		a.svc.Event(eventlog.Notice, "system", "", "", "started server mode")
	case "transparent":
		m, err := transparent.Start(transparent.Options{Options: core})
		if err != nil {
			return fmt.Errorf("transparent mode: %w", err)
		}
		a.mail = m
		a.svc.Event(eventlog.Notice, "system", "", "", "started transparent mode")
	default:
		return fmt.Errorf("%s mode is not available in this version: mail services are stopped", mode)
	}
	return nil
}

// adminListener is the listener of an admin service (SSH CLI, web UI),
// moved when its configured port changes.
type adminListener struct {
	addr string
	ln   net.Listener
}

// move listens on addr (when it changed) and serves it, then closes the
// previous listener; sessions already open stay.
func (a *Appliance) move(l *adminListener, addr string, serve func(net.Listener) error) error {
	if addr == l.addr {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	old := l.ln
	l.ln, l.addr = ln, addr
	a.serveWG.Add(1)
	go func() {
		defer a.serveWG.Done()
		serve(ln)
	}()
	if old != nil {
		old.Close()
	}
	return nil
}

// applyAdmin binds the SSH CLI and the web UI to their configured ports.
// The SSH CLI failing to listen is an error; the web UI is only logged, so
// a clash on its port never locks the admin out of the CLI.
func (a *Appliance) applyAdmin(c *config.Config) error {
	sshPort, webPort := c.System.Global.PortSSH, c.System.Global.PortHTTPS
	if a.opt.SSHPort != 0 {
		sshPort = a.opt.SSHPort
	}
	if a.opt.HTTPSPort != 0 {
		webPort = a.opt.HTTPSPort
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	serveSSH := func(l net.Listener) error { return a.ssh.Serve(a.guard.Listener(l, "ssh")) }
	serveWeb := func(l net.Listener) error { return a.web.Serve(a.guard.Listener(l, "https")) }
	if err := a.move(&a.sshL, net.JoinHostPort(a.opt.ListenHost, strconv.Itoa(sshPort)), serveSSH); err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	if err := a.move(&a.webL, net.JoinHostPort(a.opt.ListenHost, strconv.Itoa(webPort)), serveWeb); err != nil {
		a.svc.Event(eventlog.Error, "system", "", "", "web UI: "+err.Error())
	}
	return nil
}

// SSHAddr is the address the SSH CLI listens on.
func (a *Appliance) SSHAddr() string { return a.listening(&a.sshL) }

// WebAddr is the address the web UI listens on ("" when it could not).
func (a *Appliance) WebAddr() string { return a.listening(&a.webL) }

func (a *Appliance) listening(l *adminListener) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l.ln == nil {
		return ""
	}
	return l.ln.Addr().String()
}

// Service is the administration layer.
func (a *Appliance) Service() *admin.Service { return a.svc }

// RebootRequested is signalled when an admin asks for a reboot.
func (a *Appliance) RebootRequested() <-chan struct{} { return a.reboot }

func (a *Appliance) banner() {
	if a.opt.Console == nil {
		return
	}
	fp := a.svc.FactoryFingerprint()
	cfg, rev := a.svc.Config()
	fmt.Fprintf(a.opt.Console, "mailgate %s (%s mode, configuration revision %d)\n", admin.Version, cfg.System.Global.OperationMode, rev)
	fmt.Fprintf(a.opt.Console, "  data directory:        %s\n", a.opt.DataDir)
	ips := strings.Join(addresses(), ", ")
	if ips == "" {
		ips = "none yet"
	}
	fmt.Fprintf(a.opt.Console, "  IP addresses:          %s\n", ips)
	fmt.Fprintf(a.opt.Console, "  SSH CLI:               %s\n", a.SSHAddr())
	fmt.Fprintf(a.opt.Console, "  web UI:                https://%s/\n", a.WebAddr())
	a.mu.Lock()
	if m, ok := a.mail.(interface{ Addr(smtpd.Kind) string }); ok {
		for _, k := range []smtpd.Kind{smtpd.SMTP, smtpd.SMTPS, smtpd.MSA} {
			if addr := m.Addr(k); addr != "" {
				fmt.Fprintf(a.opt.Console, "  %-22s %s\n", k.String()+":", addr)
			}
		}
	}
	a.mu.Unlock()
	fmt.Fprintf(a.opt.Console, "  SSH host key:          %s\n", a.ssh.HostKeyFingerprint())
	fmt.Fprintf(a.opt.Console, "  factory certificate:   SHA-256 %s\n", fp)
}

// Close stops the services and closes the data directory.
func (a *Appliance) Close() error {
	select {
	case <-a.closing:
	default:
		close(a.closing)
	}
	var errs []error
	if a.ssh != nil {
		errs = append(errs, a.ssh.Close())
	}
	if a.web != nil {
		errs = append(errs, a.web.Close())
	}
	a.mu.Lock()
	if a.mail != nil {
		errs = append(errs, a.mail.Close())
		a.mail = nil
	}
	for _, l := range []*adminListener{&a.sshL, &a.webL} {
		if l.ln != nil {
			l.ln.Close()
		}
	}
	a.mu.Unlock()
	a.serveWG.Wait()
	if a.network != nil {
		a.network.Close()
	}
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
