package cli

import (
	"net/netip"
	"time"

	"mailgate/admin"
)

// ServiceAccounts answers the SSH server's questions about administrators
// from the committed configuration of svc.
func ServiceAccounts(svc *admin.Service) Accounts { return serviceAccounts{svc} }

type serviceAccounts struct{ svc *admin.Service }

func (a serviceAccounts) Admin(name string) (AdminInfo, bool) {
	c, _ := a.svc.Config()
	for _, ad := range c.System.Admin {
		if ad.Name != name {
			continue
		}
		info := AdminInfo{Name: ad.Name, PasswordHash: ad.Password, ReadOnly: ad.AccessProfile == "read_only_prof"}
		for _, k := range []string{ad.SSHPublicKey1, ad.SSHPublicKey2, ad.SSHPublicKey3} {
			if k != "" {
				info.PublicKeys = append(info.PublicKeys, k)
			}
		}
		for _, t := range []string{ad.Trusthost1, ad.Trusthost2, ad.Trusthost3} {
			if p, err := netip.ParsePrefix(t); err == nil {
				info.TrustHosts = append(info.TrustHosts, p.Masked())
			}
		}
		return info, true
	}
	return AdminInfo{}, false
}

func (a serviceAccounts) SetPassword(name, password string) error {
	return a.svc.SetPassword(name, name, password)
}

func (a serviceAccounts) IdleTimeout() time.Duration {
	c, _ := a.svc.Config()
	return time.Duration(c.System.Global.AdminIdleTimeout) * time.Minute
}
