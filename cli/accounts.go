package cli

import (
	"net/netip"
	"time"

	"mailgate/admin"
	"mailgate/config"
)

// ServiceAccounts answers the SSH server's questions about administrators
// from the committed configuration of svc; logins are checked, logged and
// throttled by svc itself, so that every administrative interface shares
// one password check, one trusted-host check and one lockout per address.
func ServiceAccounts(svc *admin.Service) Accounts { return serviceAccounts{svc} }

type serviceAccounts struct{ svc *admin.Service }

func (a serviceAccounts) admin(name string) (config.Admin, bool) {
	c, _ := a.svc.Config()
	for _, ad := range c.System.Admin {
		if ad.Name == name {
			return ad, true
		}
	}
	return config.Admin{}, false
}

func (a serviceAccounts) Admin(name string) (AdminInfo, bool) {
	ad, ok := a.admin(name)
	if !ok {
		return AdminInfo{}, false
	}
	info := AdminInfo{Name: ad.Name, ReadOnly: ad.AccessProfile == "read_only_prof", MustChangePassword: ad.Password == ""}
	for _, k := range ad.SSHKeys {
		if k != "" {
			info.PublicKeys = append(info.PublicKeys, k)
		}
	}
	return info, true
}

func (a serviceAccounts) CheckLogin(name, password string, ip netip.Addr) (admin.Access, error) {
	return a.svc.CheckLogin(name, password, ip, admin.ChannelCLI)
}

func (a serviceAccounts) LoginRefusal(name string, ip netip.Addr) string {
	ad, ok := a.admin(name)
	if !ok {
		return "unknown user"
	}
	return admin.LoginRefusal(ad, ip, admin.ChannelCLI)
}

func (a serviceAccounts) LoginThrottled(ip netip.Addr) bool { return a.svc.LoginThrottled(ip) }

func (a serviceAccounts) RecordLoginFailure(name string, ip netip.Addr, reason string) {
	a.svc.RecordLoginFailure(name, ip, reason)
}

func (a serviceAccounts) ClearLoginFailures(ip netip.Addr) { a.svc.ClearLoginFailures(ip) }

func (a serviceAccounts) SetPassword(name, password string) error {
	return a.svc.SetPassword(name, name, password)
}

func (a serviceAccounts) IdleTimeout() time.Duration {
	c, _ := a.svc.Config()
	return time.Duration(c.System.Global.AdminIdleTimeout) * time.Minute
}

// ServiceBanners returns the administrators' login banners of the
// committed configuration of svc, for ServerConfig.Banners.
func ServiceBanners(svc *admin.Service) func() (pre, post string) {
	return func() (string, string) {
		c, _ := svc.Config()
		g := &c.System.Global
		return g.AdminPreLoginBanner(), g.AdminPostLoginBanner()
	}
}
