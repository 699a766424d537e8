package config

import (
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"mailgate/queue/retry"
)

// Validate checks the tree as a whole and returns every problem found, each
// with its path; nil when the configuration can be committed.
func Validate(c *Config, env *Env) error {
	var errs ValidationError
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	// References name existing entries.
	visit(reflect.ValueOf(c).Elem(), Root(), func(n *Node, v reflect.Value) {
		for _, a := range n.Attrs {
			if a.Type != TRef {
				continue
			}
			if ref := v.Field(a.field).String(); ref != "" && !HasEntry(c, a.Ref, ref) {
				add("%s%s: %s %q does not exist", n.Path, entryLabel(n, v), a.Ref, ref)
			}
		}
	})

	// Rule patterns of type regexp compile: [type, pattern] pairs.
	regexps := func(table string, id int, patterns ...[2]string) {
		for _, p := range patterns {
			if p[0] == "regexp" {
				if _, err := regexp.Compile(p[1]); err != nil {
					add("policy access-control %s %d: pattern %q is not a valid regular expression: %v", table, id, p[1], err)
				}
			}
		}
	}
	for _, r := range c.Policy.AccessControl.Receive {
		rdnsType := "default"
		if r.ReverseDNSPatternRegexp == "yes" {
			rdnsType = "regexp"
		}
		regexps("receive", r.ID, [2]string{r.SenderPatternType, r.SenderPattern}, [2]string{r.RecipientPatternType, r.RecipientPattern},
			[2]string{rdnsType, r.ReverseDNSPattern})
	}
	for _, r := range c.Policy.AccessControl.Delivery {
		regexps("delivery", r.ID, [2]string{r.SenderPatternType, r.SenderPattern}, [2]string{r.RecipientPatternType, r.RecipientPattern})
	}

	errs = append(errs, OpenRelayRules(c)...)

	g := &c.System.Global
	if g.DefaultCertificate == "" {
		add("system global: default-certificate must be set")
	}
	if len(g.PreLoginBanner) > 0 && strings.TrimSpace(g.PreLoginBannerMessage) == "" {
		add("system global: pre-login-banner %s needs a pre-login-banner-message", strings.Join(g.PreLoginBanner, " "))
	}
	if len(g.PostLoginBanner) > 0 && strings.TrimSpace(g.PostLoginBannerMessage) == "" {
		add("system global: post-login-banner %s needs a post-login-banner-message", strings.Join(g.PostLoginBanner, " "))
	}
	super := 0
	for _, a := range c.System.Admin {
		if a.AccessProfile == "super_admin_prof" {
			super++
		}
	}
	if super == 0 {
		add("system admin: at least one administrator with access-profile super_admin_prof is required")
	}
	static := map[string]netip.Prefix{} // the static networks by interface
	for _, i := range c.System.Interface {
		if i.Mode != "static" {
			continue
		}
		p, err := netip.ParsePrefix(i.IP)
		switch {
		case i.IP == "":
			add("system interface %q: static mode needs ip", i.Name)
		case err != nil:
			add("system interface %q: ip %q is not an address/prefix", i.Name, i.IP)
		case p.Addr().Is6() && i.MTU < 1280:
			add("system interface %q: the IPv6 address %s needs mtu 1280 or more (mtu is %d)", i.Name, i.IP, i.MTU)
		default:
			static[i.Name] = p.Masked()
		}
	}
	routeOf := map[string]int{} // the first route of each destination
	for _, r := range c.System.Route {
		dst, dErr := netip.ParsePrefix(r.Destination)
		gw, gErr := netip.ParseAddr(r.Gateway)
		if dErr == nil {
			key := dst.Masked().String()
			if first, dup := routeOf[key]; dup {
				add("system route %d: destination %s is already route %d's", r.ID, key, first)
			} else {
				routeOf[key] = r.ID
			}
		}
		switch {
		case r.Gateway == "":
			add("system route %d: gateway must be set", r.ID)
		case dErr != nil || gErr != nil:
		case gw.Is4() != dst.Addr().Is4():
			add("system route %d: gateway %s and destination %s are not of one address family", r.ID, r.Gateway, r.Destination)
		case r.Interface != "":
			if n, ok := static[r.Interface]; ok && n.Addr().Is4() == gw.Is4() && !n.Contains(gw) {
				add("system route %d: gateway %s is not in the network of interface %s (%s)", r.ID, r.Gateway, r.Interface, n)
			}
		}
	}
	for _, lc := range c.System.Certificate.Local {
		switch {
		case lc.Certificate == "":
			add("system certificate local %q: certificate must be set", lc.Name)
		case lc.PrivateKey == "":
			add("system certificate local %q: private-key must be set", lc.Name)
		case env != nil && env.CheckCert != nil && env.Open != nil:
			key, err := env.Open(lc.PrivateKey)
			if err == nil {
				err = env.CheckCert([]byte(lc.Certificate), key)
			}
			if err != nil {
				add("system certificate local %q: %v", lc.Name, err)
			}
		}
	}
	for _, d := range c.Domain {
		if d.RelayType == "host" && d.SMTPServer == "" && g.OperationMode != "server" {
			add("domain %q: relay-type host needs smtp-server", d.Name)
		}
		if len(d.User.Mail) > 0 && g.OperationMode != "server" {
			add("domain %q: config user mail holds mailboxes, which only server mode has (operation-mode is %s)", d.Name, g.OperationMode)
		}
		seen := map[string]string{}
		for _, u := range d.User.Mail {
			if other, ok := seen[strings.ToLower(u.Name)]; ok {
				add("domain %q: user mail %q and %q differ only in case; logins and addresses ignore case", d.Name, other, u.Name)
			}
			seen[strings.ToLower(u.Name)] = u.Name
		}
	}
	for _, p := range c.Profile.TLS {
		if p.CheckCAName && p.CAName == "" {
			add("profile tls %q: check-ca-name needs ca-name", p.Name)
		}
		if p.CheckCertSubject && p.CertSubject == "" {
			add("profile tls %q: check-cert-subject needs cert-subject", p.Name)
		}
	}
	for _, r := range c.Mailsetting.RelayServer {
		switch {
		case r.RelayType == "mx-lookup" && r.MXDomain == "":
			add("mailsetting relay-host-list %q: relay-type mx-lookup needs mx-lookup-domain-name", r.Name)
		case r.RelayType != "mx-lookup" && r.Server == "":
			add("mailsetting relay-host-list %q: host-name must be set", r.Name)
		}
	}
	if strings.ContainsAny(c.System.Mailserver.DSNSenderName, "\r\n") {
		add("system mailserver: dsn-sender-displayname must be one line")
	}
	if c.System.Mailserver.RelayServerStatus && len(c.Mailsetting.RelayServer) == 0 {
		add("system mailserver: relay-server-status enable needs an entry in mailsetting relay-host-list")
	}
	validateMailQueue(c, add)
	if m := &c.System.Mailserver; m.MaxConnectionsIP > m.MaxConnections {
		add("system mailserver: max-connections-per-ip (%d) exceeds smtp-max-connections (%d)", m.MaxConnectionsIP, m.MaxConnections)
	}

	// Listening ports do not collide.
	ports := map[int][]string{}
	m := &c.System.Mailserver
	ports[g.PortSSH] = append(ports[g.PortSSH], "system global port-ssh")
	ports[g.PortHTTPS] = append(ports[g.PortHTTPS], "system global port-https")
	if m.SMTPService {
		ports[m.SMTPPort] = append(ports[m.SMTPPort], "smtp-port")
	}
	if m.SMTPSStatus {
		ports[m.SMTPSPort] = append(ports[m.SMTPSPort], "smtps-port")
	}
	if m.SMTPMSAStatus {
		ports[m.SMTPMSAPort] = append(ports[m.SMTPMSAPort], "smtp-msa-port")
	}
	if g.OperationMode == "server" {
		// Not a map keyed by port: two of these on one port would be one key.
		for _, p := range []struct {
			on   bool
			port int
			name string
		}{{m.POP3Service, m.POP3Port, "pop3-port"}, {m.POP3SStatus, m.POP3SPort, "pop3s-port"},
			{m.IMAPService, m.IMAPPort, "imap-port"}, {m.IMAPSStatus, m.IMAPSPort, "imaps-port"}} {
			if p.on {
				ports[p.port] = append(ports[p.port], p.name)
			}
		}
	}
	var clash []string
	for p, names := range ports {
		if len(names) > 1 {
			sort.Strings(names)
			clash = append(clash, fmt.Sprintf("port %d is used by %v", p, names))
		}
	}
	sort.Strings(clash)
	errs = append(errs, clash...)

	if len(errs) == 0 {
		return nil
	}
	return errs
}

func entryLabel(n *Node, v reflect.Value) string {
	if n.Kind != Table {
		return ""
	}
	return " " + Quote(keyString(n, v))
}

// minAlternatingAttempts is what the fallback modes next-retry and
// next-retry-any need: TLS, then plain text after a handshake failure,
// then TLS again.
const minAlternatingAttempts = 3

// retryBudget checks that the queue's schedule gives an alternating
// fallback mode enough attempts. It counts them with the queue's own
// schedule (package retry): the first on receipt, the first retry after
// at most five minutes, then one per interval, the last at the deadline.
// It returns the problem, or "".
func retryBudget(fallback string, interval, maxAge time.Duration) string {
	if fallback != "next-retry" && fallback != "next-retry-any" {
		return ""
	}
	var at []string
	for t := range retry.Attempts(interval, maxAge) {
		if at = append(at, t.String()); len(at) == minAlternatingAttempts {
			return ""
		}
	}
	return fmt.Sprintf("mailsetting starttls fallback %s alternates TLS and plain text and needs at least %d delivery attempts, "+
		"but queue-timeout %v with queue-retry %v allows only %d (at %s after receipt)",
		fallback, minAlternatingAttempts, maxAge, interval, len(at), strings.Join(at, ", "))
}
