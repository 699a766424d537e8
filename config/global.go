package config

import "strings"

// MailName is the name the appliance gives itself in SMTP, inbound (the
// greeting, Received headers) and outbound (EHLO unless `mailsetting
// starttls` sets helo-name, delivery status notifications): the host name
// ("mailgate" when empty), qualified with local-domain-name when it has no
// dot and a local domain is set.
func (g *Global) MailName() string {
	name := g.Hostname
	if name == "" {
		name = "mailgate"
	}
	if g.LocalDomainName != "" && !strings.Contains(name, ".") {
		name += "." + strings.TrimSuffix(g.LocalDomainName, ".")
	}
	return name
}
