package config

import (
	"slices"
	"strings"
)

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

// AdminPreLoginBanner is the text shown to administrators before they log
// in (the SSH pre-authentication banner, the web UI login page): the
// pre-login-banner-message when pre-login-banner includes admin, else "".
func (g *Global) AdminPreLoginBanner() string {
	return bannerFor(g.PreLoginBanner, g.PreLoginBannerMessage)
}

// AdminPostLoginBanner is the text shown to administrators once they have
// logged in (interactive SSH sessions, the web UI): the
// post-login-banner-message when post-login-banner includes admin, else "".
func (g *Global) AdminPostLoginBanner() string {
	return bannerFor(g.PostLoginBanner, g.PostLoginBannerMessage)
}

// bannerFor is text when where (a banner's audiences) has admin.
func bannerFor(where []string, text string) string {
	if slices.Contains(where, "admin") {
		return text
	}
	return ""
}
