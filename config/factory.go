package config

import "strings"

// FactoryOptions are the per-device inputs of the factory configuration.
type FactoryOptions struct {
	Mode string // operation mode; "" is gateway
	// Dev selects the development profile: unprivileged listener ports
	// (SMTP 2525, SMTPS 2465, submission 2587, SSH 2222, web 8443, ...).
	Dev bool
	// The device's Factory certificate and its sealed private key.
	FactoryCertPEM, FactoryKeySealed string
}

// Factory returns the factory configuration of a device.
func Factory(o FactoryOptions) *Config {
	c := New()
	if o.Mode != "" {
		c.System.Global.OperationMode = o.Mode
	}
	admin := Admin{}
	setDefaultsOf(&admin, "system admin")
	admin.Name = "admin"
	c.System.Admin = []Admin{admin}
	port1 := Interface{}
	setDefaultsOf(&port1, "system interface")
	port1.Name = "port1"
	c.System.Interface = []Interface{port1}
	c.System.Mailserver.MailQueue = []MailQueue{c.System.Mailserver.Queue(false)}
	if o.FactoryCertPEM != "" {
		c.System.Certificate.Local = []LocalCert{{
			Name: "Factory", Certificate: strings.TrimSpace(o.FactoryCertPEM), PrivateKey: o.FactoryKeySealed,
			Comments: "factory certificate",
		}}
	}
	if o.Dev {
		g, m := &c.System.Global, &c.System.Mailserver
		g.PortSSH, g.PortHTTPS = 2222, 8443
		m.SMTPPort, m.SMTPSPort, m.SMTPMSAPort = 2525, 2465, 2587
		m.POP3Port, m.POP3SPort, m.IMAPPort, m.IMAPSPort = 2110, 2995, 2143, 2993
	}
	return c
}

// SwitchMode returns the factory configuration for a new operation mode,
// keeping what identifies and reaches the device: administrators,
// interfaces, routes, DNS, certificates, host name and the listener ports.
func SwitchMode(old *Config, mode string) *Config {
	c := New()
	keep := old.Clone()
	c.System.Admin = keep.System.Admin
	c.System.Interface = keep.System.Interface
	c.System.Route = keep.System.Route
	c.System.DNS = keep.System.DNS
	c.System.Certificate = keep.System.Certificate
	g := &c.System.Global
	og := keep.System.Global
	g.Hostname, g.LocalDomainName, g.Timezone = og.Hostname, og.LocalDomainName, og.Timezone
	g.DefaultCertificate, g.PortSSH, g.PortHTTPS = og.DefaultCertificate, og.PortSSH, og.PortHTTPS
	c.System.Mailserver = keep.System.Mailserver
	g.OperationMode = mode
	return c
}
