// Package config owns mailgate's configuration tree: the typed Go structs
// below are the single source of truth for every setting. The schema that
// the CLI, the web UI, `show full-configuration` and backup/restore use is
// derived from these structs by reflection, so adding a setting is one
// struct field with its tags:
//
//	cfg:"name[,key|group]"  attribute, table key, or a group of sections
//	help:"..."              one line of help shown by '?'
//	type:"text|ip|prefix|password|secret|ref"   value syntax for strings
//	enum:"a|b|c"            allowed values (string or []string)
//	range:"min-max"         integer range
//	default:"..."           factory value in CLI syntax
//	ref:"profile tls"       the table a ref names
//	check:"hostname|..."    an extra value check (see checks in value.go);
//	                        on a []string, of each element ("prefix" is
//	                        for lists only: elements are address/prefix)
//
// A struct field whose type is a struct is a section (`config system dns`),
// a slice of structs is a table of entries (`config domain` / `edit ...`).
package config

// Config is the whole appliance configuration.
type Config struct {
	System      System      `cfg:"system,group"`
	Mailsetting Mailsetting `cfg:"mailsetting,group"`
	Profile     Profile     `cfg:"profile,group"` // before domain, whose mail users name resource profiles
	Domain      []Domain    `cfg:"domain" help:"Protected domains."`
	User        Users       `cfg:"user,group"`
	Policy      Policy      `cfg:"policy,group"`
}

// System groups the appliance's own settings.
// Certificates come first: global names the default certificate, and a
// configuration text replayed block by block must define it first.
type System struct {
	Certificate Certificates `cfg:"certificate,group"`
	Global      Global       `cfg:"global" help:"Global system settings."`
	Admin       []Admin      `cfg:"admin" help:"Administrator accounts."`
	DNS         DNS          `cfg:"dns" help:"DNS resolvers."`
	Interface   []Interface  `cfg:"interface" help:"Network interfaces."`
	Route       []Route      `cfg:"route" help:"Static routes."`
	Mailserver  Mailserver   `cfg:"mailserver,late" help:"Mail service ports, limits and the deferred queue."`
}

// Global is `config system global`.
type Global struct {
	Hostname               string   `cfg:"hostname" default:"mailgate" check:"hostname" help:"Host name of this appliance."`
	OperationMode          string   `cfg:"operation-mode" enum:"gateway|server|transparent" default:"gateway" help:"Operation mode; changing it resets the configuration."`
	LocalDomainName        string   `cfg:"local-domain-name" check:"domain" help:"Local domain name of this appliance."`
	DefaultCertificate     string   `cfg:"default-certificate" type:"ref" ref:"system certificate local" default:"Factory" help:"Certificate used when no other matches the requested name."`
	AdminMaintainer        bool     `cfg:"admin-maintainer" default:"disable" check:"off" help:"The maintainer account for password recovery at the console: mailgate has none, so only disable."`
	TFTP                   bool     `cfg:"tftp" default:"disable" check:"off" help:"TFTP for firmware and backups: mailgate has none (it uses HTTPS and SCP), so only disable."`
	AdminIdleTimeout       int      `cfg:"admin-idle-timeout" range:"1-480" default:"5" help:"Idle timeout of admin sessions, in minutes."`
	AdminLockoutThreshold  int      `cfg:"admin-lockout-threshold" range:"1-100" default:"4" help:"Failed admin logins from one address (within 5 minutes) that lock it out."`
	AdminLockoutDuration   int      `cfg:"admin-lockout-duration" range:"1-1440" default:"3" help:"Minutes an address is locked out; doubled for each further lockout, up to 15 minutes or this value."`
	PreLoginBanner         []string `cfg:"pre-login-banner" enum:"admin" help:"Where pre-login-banner-message is shown before login: admin (SSH CLI and web UI login page); unset: nowhere."`
	PreLoginBannerMessage  string   `cfg:"pre-login-banner-message" type:"text" default:"'This system is for authorized use only. Activity may be monitored and recorded.'" help:"Text of the pre-login banner, may be multi-line. mailgate: FortiMail edits this text under config customized-message."`
	PostLoginBanner        []string `cfg:"post-login-banner" enum:"admin" help:"Where post-login-banner-message is shown after login: admin (interactive SSH CLI sessions, and the web UI as a notice to accept); unset: nowhere. FortiMail's ibe and webmail are not offered: mailgate has no IBE or webmail yet."`
	PostLoginBannerMessage string   `cfg:"post-login-banner-message" type:"text" default:"'You are logged in to a system for authorized use only. Log out now if you are not authorized.'" help:"Text of the post-login banner, may be multi-line. mailgate: FortiMail edits this text under config customized-message."`
	SSLVersions            []string `cfg:"ssl-versions" enum:"tls1_0|tls1_1|tls1_2|tls1_3" default:"tls1_2 tls1_3" help:"TLS versions offered by the appliance's services."`
	StrongCrypto           bool     `cfg:"strong-crypto" default:"enable" help:"Only strong ciphers (AEAD, forward secrecy)."`
	Timezone               string   `cfg:"timezone" default:"UTC" check:"timezone" help:"Time zone (IANA name, e.g. Europe/Berlin)."`
	PortSSH                int      `cfg:"port-ssh" range:"1-65535" default:"22" help:"SSH CLI port."`
	PortHTTPS              int      `cfg:"port-https" range:"1-65535" default:"443" help:"Web UI port."`
}

// Admin is one `config system admin` entry.
type Admin struct {
	Name          string   `cfg:"name,key" check:"username"`
	Status        bool     `cfg:"status" default:"enable" help:"Account in use; a disabled administrator cannot log in (and is logged out)."`
	Access        []string `cfg:"access" enum:"cli|gui" default:"cli gui" help:"Where this administrator may log in: cli (SSH), gui (web UI); FortiMail's rest: mailgate has no REST API."`
	AuthStrategy  string   `cfg:"auth-strategy" enum:"local" default:"local" help:"How the password is checked: local, on the appliance (FortiMail's ldap, radius, pki, sso and cloud are not supported)."`
	Level         string   `cfg:"level" enum:"system" default:"system" help:"What this administrator manages: system, the whole appliance (FortiMail's domain and domain-group administrators are not supported)."`
	Password      string   `cfg:"password" type:"password" help:"Password (stored as a bcrypt hash)."`
	SSHKeys       []string `cfg:"sshkey" check:"authkey" help:"SSH public keys that log in as this administrator: a list, each key one quoted word in authorized_keys format (\"ssh-ed25519 AAAA... you@host\")."`
	TrustedHosts  []string `cfg:"trusted-hosts" check:"prefix" default:"0.0.0.0/0 ::/0" help:"Networks this administrator may log in from: a list of IPv4 or IPv6 prefixes (192.0.2.0/24 2001:db8::/32); the default is any address."`
	WebMode       string   `cfg:"webmode" enum:"advanced" default:"advanced" help:"Web UI mode: advanced, the full administration pages (FortiMail's simple and cloud-api are not offered)."`
	AccessProfile string   `cfg:"access-profile" enum:"super_admin_prof|read_only_prof" default:"super_admin_prof" help:"Access profile."`
	Comments      string   `cfg:"comments" fm:"none" help:"Comments."`
}

// DNS is `config system dns`.
type DNS struct {
	Primary          string `cfg:"primary" type:"ip" help:"Primary DNS server (empty: from DHCP or resolv.conf)."`
	Secondary        string `cfg:"secondary" type:"ip" help:"Secondary DNS server."`
	Cache            bool   `cfg:"cache" default:"enable" help:"Cache DNS answers (for their TTL, at least cache-min-ttl)."`
	CacheMinTTL      int    `cfg:"cache-min-ttl" range:"0-86400" default:"300" help:"Least seconds a cached answer is kept, whatever its TTL (0: its TTL)."`
	TruncateHandling string `cfg:"truncate-handling" enum:"disable|tcp-retry" default:"tcp-retry" help:"A truncated UDP answer is asked again over TCP (tcp-retry), or used as it is (disable)."`
}

// Interface is one `config system interface` entry.
type Interface struct {
	Name        string   `cfg:"name,key" check:"ifname"`
	Mode        string   `cfg:"mode" enum:"static|dhcp" default:"dhcp" help:"Addressing mode."`
	IP          string   `cfg:"ip" type:"prefix" help:"Address and prefix length in static mode, e.g. 192.0.2.10/24."`
	MTU         int      `cfg:"mtu" range:"576-9000" default:"1500" help:"Maximum transmission unit in bytes (IPv6 needs at least 1280)."`
	AllowAccess []string `cfg:"allowaccess" enum:"ping|ssh|https" default:"ping ssh https" help:"Administrative access on this interface: ssh (CLI), https (web UI); ping is answered while any interface allows it (FortiMail's http, snmp and telnet: mailgate has no such service)."`
	MailAccess  []string `cfg:"mailaccess" enum:"smtp|smtps|imap|imaps|pop3|pop3s" default:"smtp smtps imap imaps pop3 pop3s" help:"Mail services reachable on this interface: smtp (SMTP and submission ports), smtps (SMTPS port); imap, imaps, pop3, pop3s in server mode."`
	// Transparent mode's connection pick-up.
	ProxySMTPInMode  string `cfg:"proxy-smtp-in-mode" enum:"pass-through|drop|proxy" default:"pass-through" help:"Transparent mode: SMTP connections (port 25) coming in on this interface addressed to a protected domain's server (its smtp-server or fallback-host): proxy picks them up (the built-in MTA receives the mail and relays it to that server), drop drops them, pass-through routes them on untouched."`
	ProxySMTPOutMode string `cfg:"proxy-smtp-out-mode" enum:"pass-through|drop|proxy" default:"pass-through" help:"Transparent mode: SMTP connections (port 25) coming in on this interface addressed to any other server: proxy picks them up (the built-in MTA relays the mail by relay host or MX, as the receive policy allows), drop drops them, pass-through routes them on untouched."`
}

// Route is one `config system route` entry.
type Route struct {
	ID          int    `cfg:"id,key"`
	Destination string `cfg:"destination" type:"prefix" default:"0.0.0.0/0" help:"Destination network."`
	Gateway     string `cfg:"gateway" type:"ip" help:"Gateway address."`
	Interface   string `cfg:"interface" type:"ref" ref:"system interface" help:"Interface the gateway is reached on (empty: the one whose network holds the gateway)."`
}

// Certificates groups the certificate stores.
type Certificates struct {
	Local  []LocalCert `cfg:"local" help:"Server certificates with their private keys."`
	CA     []CACert    `cfg:"ca" help:"Trusted CA certificates."`
	Remote []CACert    `cfg:"remote" help:"Certificates of remote peers."`
}

// LocalCert is a certificate with its private key.
type LocalCert struct {
	Name        string `cfg:"name,key" check:"objname"`
	Certificate string `cfg:"certificate" type:"text" help:"Certificate chain in PEM, leaf first."`
	PrivateKey  string `cfg:"private-key" type:"secret" help:"Private key in PEM (stored encrypted)."`
	Comments    string `cfg:"comments" help:"Comments."`
}

// CACert is a certificate without a key (trusted CA or remote peer).
type CACert struct {
	Name        string `cfg:"name,key" check:"objname"`
	Certificate string `cfg:"certificate" type:"text" help:"Certificate in PEM."`
	Comments    string `cfg:"comments" fm:"none" help:"Comments."`
}

// Mailsetting groups mail transfer settings.
type Mailsetting struct {
	RelayServer []RelayServer `cfg:"relay-host-list" help:"Relay hosts (smarthosts) for outgoing mail."`
	StartTLS    StartTLS      `cfg:"starttls" fm:"none" help:"Outbound STARTTLS policy; FortiMail sets TLS per delivery rule with a TLS profile."`
}

// Mailserver is `config system mailserver`: the mail services and the
// deferred queue. It is rendered last (late): relay-server-name names an
// entry of mailsetting relay-host-list, and a text replayed block by
// block must define that first. The queue's schedules are the nested
// table mail-queue (FortiMail's; see MailQueue).
type Mailserver struct {
	MailQueue         []MailQueue `cfg:"mail-queue" help:"Deferred queue schedules: default, and incoming (to protected domains) or outgoing (to other domains) where they differ."`
	SMTPService       bool        `cfg:"smtp-service" default:"enable" help:"SMTP service on smtp-port (disable: the port is closed; SMTPS and submission are set apart)."`
	SMTPPort          int         `cfg:"smtp-port" range:"1-65535" default:"25" help:"SMTP port."`
	SMTPSStatus       bool        `cfg:"smtps-tls-status" default:"enable" help:"SMTP over implicit TLS (SMTPS)."`
	SMTPSPort         int         `cfg:"smtps-port" range:"1-65535" default:"465" help:"SMTPS port."`
	SMTPMSAStatus     bool        `cfg:"smtp-msa" default:"enable" help:"Message submission (MSA) service."`
	SMTPMSAPort       int         `cfg:"smtp-msa-port" range:"1-65535" default:"587" help:"Submission port."`
	POP3Service       bool        `cfg:"pop3-service" default:"enable" help:"POP3 on pop3-port, with STLS (server mode; disable for POP3S only)."`
	POP3Port          int         `cfg:"pop3-port" range:"1-65535" default:"110" help:"POP3 port (server mode)."`
	POP3SPort         int         `cfg:"pop3s-port" range:"1-65535" default:"995" help:"POP3S port (server mode)."`
	POP3SStatus       bool        `cfg:"pop3s-status" fm:"none" default:"enable" help:"POP3 over implicit TLS on pop3s-port (server mode)."`
	IMAPService       bool        `cfg:"imap-service" default:"enable" help:"IMAP on imap-port, with STARTTLS (server mode; disable for IMAPS only)."`
	IMAPPort          int         `cfg:"imap-port" range:"1-65535" default:"143" help:"IMAP port (server mode)."`
	IMAPSPort         int         `cfg:"imaps-port" range:"1-65535" default:"993" help:"IMAPS port (server mode)."`
	IMAPSStatus       bool        `cfg:"imaps-status" fm:"none" default:"enable" help:"IMAP over implicit TLS on imaps-port (server mode)."`
	QuotaAction       string      `cfg:"quota-exceeded-action" fm:"none" enum:"fail|tempfail" default:"fail" help:"Reply at RCPT to a mailbox over its disk-quota (server mode): fail, 552 5.2.2; tempfail, 452 4.2.2 (the sender retries)."`
	DefaultAuthDomain string      `cfg:"default-auth-domain" check:"domain" help:"Domain appended to user names without one at SMTP AUTH."`
	SMTPAuth          bool        `cfg:"smtp-auth" default:"enable" help:"Offer SMTP AUTH on the SMTP port (the submission port always offers it)."`
	SMTPAuthOverTLS   bool        `cfg:"smtp-auth-over-tls" default:"enable" help:"On the SMTP and submission ports, offer SMTP AUTH only after STARTTLS; disable also offers it in plain text, where passwords can be read on the network."`
	SMTPAuthSMTPS     bool        `cfg:"smtp-auth-smtps" default:"enable" help:"Offer SMTP AUTH on the SMTPS port."`
	SMTPStartTLS      bool        `cfg:"smtp-starttls" fm:"none" default:"enable" help:"Offer STARTTLS on the SMTP port."`
	SMTPMSAMode       string      `cfg:"smtp-msa-mode" fm:"none" enum:"starttls|implicit" default:"starttls" help:"Submission port: STARTTLS, or implicit TLS."`
	StartTLSExclude   []string    `cfg:"starttls-exclude-hosts" fm:"none" check:"token" help:"Clients whose reverse DNS name contains one of these are not offered STARTTLS."`
	TLSAutodetect     bool        `cfg:"tls-autodetect" fm:"none" default:"disable" help:"Accept implicit TLS on plain ports (a TLS ClientHello as the first bytes)."`
	MaxMessageSize    int         `cfg:"max-message-size" range:"1-1048576" default:"10240" help:"Largest message accepted, in KiB."`
	MaxRecipients     int         `cfg:"max-recipients" range:"1-10000" default:"500" help:"Recipients per message."`
	MaxConnections    int         `cfg:"smtp-max-connections" range:"1-100000" default:"2000" help:"Concurrent SMTP connections in total."`
	MaxConnectionsIP  int         `cfg:"max-connections-per-ip" range:"1-100000" default:"50" help:"Concurrent SMTP connections per client address."`
	CommandTimeout    int         `cfg:"command-timeout" fm:"none" range:"5-3600" default:"300" help:"Seconds to wait for an SMTP command."`
	DataTimeout       int         `cfg:"data-timeout" fm:"none" range:"5-3600" default:"600" help:"Seconds to wait for message data."`
	MaxLineLength     int         `cfg:"max-line-length" fm:"none" range:"1000-65536" default:"2000" help:"Longest SMTP line accepted, in bytes."`
	DSNStatus         bool        `cfg:"dsn-status" default:"enable" help:"Send delivery status notifications (bounces, delay warnings) to the sender."`
	DSNSenderAddress  string      `cfg:"dsn-sender-address" check:"email" help:"From address of delivery status notifications (empty: MAILER-DAEMON@ the host name)."`
	DSNSenderName     string      `cfg:"dsn-sender-displayname" help:"Display name of that address (empty: Mail Delivery System)."`
	DeadmailExpiry    int         `cfg:"deadmail-expiry" range:"0-365" default:"0" help:"Days dead mail (an undeliverable message whose notification could not be delivered either) is kept after its last attempt, then deleted (0: kept until deleted)."`
	RelayServerStatus bool        `cfg:"relay-server-status" default:"disable" help:"Send outgoing mail (to domains that are not protected) through the relay of mailsetting relay-host-list."`
	RelayServerName   string      `cfg:"relay-server-name" type:"ref" ref:"mailsetting relay-host-list" help:"The relay-host-list entry to use (empty: every entry, in order, each the fallback of the one before)."`
}

// MailQueue is one `config mail-queue` entry of `system mailserver`: the
// schedule of the deferred queue for mail to protected domains
// (incoming), to other domains (outgoing), or for both where the entry of
// that direction is absent (default). See Mailserver.Queue.
type MailQueue struct {
	Name       string `cfg:"name,key" enum:"default|incoming|outgoing"`
	Timeout    int    `cfg:"queue-timeout" range:"1-720" default:"120" help:"Hours a message may stay queued before it bounces."`
	DSNTimeout int    `cfg:"queue-dsn-timeout" range:"0-30" default:"5" help:"Days a delivery status notification (a message from the null sender) may stay queued before it is kept as dead mail (0: one attempt)."`
	Warning    int    `cfg:"queue-warning" range:"0-240" default:"4" help:"Hours before a delay notification (0: none)."`
	Retry      int    `cfg:"queue-retry" range:"1-1440" default:"15" help:"Minutes between delivery attempts of a deferred message."`
}

// RelayServer is one relay host (smarthost).
type RelayServer struct {
	Name         string `cfg:"name,key" check:"objname"`
	RelayType    string `cfg:"relay-type" enum:"host|mx-lookup" default:"host" help:"The relay is host-name, or the mail exchangers of mx-lookup-domain-name (FortiMail's ip-group is not supported)."`
	Server       string `cfg:"host-name" check:"host" help:"Relay host name or address (relay-type host)."`
	Port         int    `cfg:"host-port" range:"1-65535" default:"25" help:"Relay port."`
	MXDomain     string `cfg:"mx-lookup-domain-name" check:"domain" help:"Domain whose MX hosts are the relay (relay-type mx-lookup)."`
	SMTPS        bool   `cfg:"use-smtps" default:"disable" help:"Implicit TLS to the relay."`
	AuthStatus   bool   `cfg:"auth-status" default:"disable" help:"Authenticate to the relay."`
	AuthType     string `cfg:"auth-type" enum:"auto|plain|login|cram-md5" default:"auto" help:"SASL mechanism: auto (PLAIN, else LOGIN, else CRAM-MD5, as offered), or only the one named (FortiMail's digest-md5 and ntlm are not supported)."`
	AuthUsername string `cfg:"auth-username" help:"User name for relay authentication."`
	AuthPassword string `cfg:"auth-password" type:"secret" help:"Password for relay authentication (stored encrypted)."`
}

// StartTLS is `config mailsetting starttls`: outbound STARTTLS policy.
type StartTLS struct {
	Fallback     string         `cfg:"fallback" enum:"none|plain|next-retry|next-retry-any" default:"plain" help:"What to do when STARTTLS fails."`
	IncludeHosts []string       `cfg:"include-hosts" check:"hostpattern" help:"Only these destinations use STARTTLS (example.com, .example.com, [mx.example.com])."`
	ExcludeHosts []string       `cfg:"exclude-hosts" check:"hostpattern" help:"These destinations never use STARTTLS."`
	HeloName     string         `cfg:"helo-name" check:"host" help:"Name sent in EHLO (empty: the host name)."`
	HostProtocol []HostProtocol `cfg:"host-protocol" fm:"none" help:"TLS versions pinned per destination."`
}

// HostProtocol pins TLS versions for one destination.
type HostProtocol struct {
	Host        string   `cfg:"host,key" check:"hostpattern"`
	SSLVersions []string `cfg:"ssl-versions" enum:"tls1_0|tls1_1|tls1_2|tls1_3" default:"tls1_2 tls1_3" help:"TLS versions allowed to this destination."`
}

// User is one `config user local` entry: a mail user who may authenticate
// with SMTP AUTH (and, in server mode, owns a mailbox).
type User struct {
	Name     string `cfg:"name,key" check:"username"`
	Status   bool   `cfg:"status" default:"enable" help:"Account in use."`
	Password string `cfg:"password" type:"password" help:"Password (stored as a bcrypt hash)."`
	Comments string `cfg:"comments" help:"Comments."`
}

// Domain is one protected domain.
type Domain struct {
	Name          string        `cfg:"name,key" check:"domain"`
	RelayType     string        `cfg:"relay-type" enum:"host|mx-lookup" default:"host" help:"Deliver to the named SMTP server or by MX lookup."`
	SMTPServer    string        `cfg:"smtp-server" check:"host" help:"Internal mail server of this domain."`
	SMTPPort      int           `cfg:"smtp-port" range:"1-65535" default:"25" help:"Its port."`
	SMTPS         bool          `cfg:"smtps" default:"disable" help:"Implicit TLS to it."`
	FallbackHost  string        `cfg:"fallback-host" check:"host" help:"Fallback mail server."`
	FallbackPort  int           `cfg:"fallback-port" range:"1-65535" default:"25" help:"Fallback port."`
	FallbackSMTPS bool          `cfg:"fallback-smtps" default:"disable" help:"Implicit TLS to the fallback server."`
	Comments      string        `cfg:"comments" help:"Comments."`
	HideBox       bool          `cfg:"hide-transparent-box" fm:"none" default:"disable" help:"Transparent mode (FortiMail's \"Hide the transparent box\"): mail of picked-up sessions to this domain goes on from the client's own address with the client's HELO name, and the appliance adds no Received header, so the server sees the client, not the appliance."`
	Profile       DomainProfile `cfg:"profile,group"`
	User          DomainUsers   `cfg:"user,group"`
}

// DomainUsers groups a domain's user accounts.
type DomainUsers struct {
	Mail []MailUser `cfg:"mail" help:"Mailboxes of this domain (server mode); a user logs in as name@domain, or as name when default-auth-domain is this domain."`
}

// MailUser is one `config user mail` entry of a domain: a mailbox on the
// appliance in server mode.
type MailUser struct {
	Name            string `cfg:"name,key" check:"localpart"`
	Status          bool   `cfg:"status" default:"enable" help:"Account in use; a disabled user cannot log in, and mail to it is refused."`
	Type            string `cfg:"type" enum:"local" default:"local" help:"Where the password is checked: local, on the appliance (FortiMail's ldap and radius are not supported)."`
	Password        string `cfg:"password" type:"password" help:"Password (stored as a bcrypt hash)."`
	DisplayName     string `cfg:"displayname" help:"Display name."`
	ResourceProfile string `cfg:"resource-profile" fm:"none" type:"ref" ref:"profile resource" help:"Resource profile (quota, account status, webmail access, retention); empty: no limits. FortiMail binds resource profiles through recipient-based policies."`
	Comments        string `cfg:"comments" fm:"none" help:"Comments."`
}

// DomainProfile groups a domain's own profiles (FortiMail's domain-level
// profiles).
type DomainProfile struct {
	Authentication AuthProfiles `cfg:"authentication,group"`
}

// AuthProfiles groups the authentication profiles.
type AuthProfiles struct {
	SMTP []SMTPAuthProfile `cfg:"smtp" help:"SMTP servers that check the passwords of this domain's users at SMTP AUTH (tried in order; local users are checked first)."`
}

// SMTPAuthProfile is one `config profile authentication smtp` entry of a
// domain: the appliance checks a user's name and password by
// authenticating with them to this server.
type SMTPAuthProfile struct {
	Name    string   `cfg:"name,key" check:"objname"`
	Server  string   `cfg:"server" check:"host" help:"Host name or address of the SMTP server that checks the passwords."`
	Port    int      `cfg:"port" range:"1-65535" default:"25" help:"Its port."`
	Option  []string `cfg:"option" enum:"ssl|secure|tls|senddomain" help:"ssl: implicit TLS (SMTPS); tls: STARTTLS, required; secure: CRAM-MD5 only, the password itself is never sent; senddomain: the user name is sent as user@domain (without it, only the part before @). The server's certificate must verify against the system and system certificate ca."`
	Comment string   `cfg:"comment" help:"Comment."`
}

// Users groups user accounts.
type Users struct {
	Local []User `cfg:"local" help:"Mail users (SMTP AUTH)."`
}

// Profile groups reusable profiles.
type Profile struct {
	TLS      []TLSProfile      `cfg:"tls" help:"TLS profiles."`
	Resource []ResourceProfile `cfg:"resource" help:"Resource profiles of mail users (server mode)."`
}

// ResourceProfile is one `config profile resource` entry: the limits of
// the mail users that name it.
type ResourceProfile struct {
	Name           string `cfg:"name,key" check:"objname"`
	DiskQuota      int    `cfg:"disk-quota" range:"0-1048576" default:"0" help:"Mailbox size limit of each user, in MB (0: unlimited)."`
	AccountStatus  bool   `cfg:"account-status" default:"enable" help:"disable: the users of this profile cannot log in, and mail to them is refused."`
	WebmailAccess  bool   `cfg:"webmail-access" default:"enable" help:"The users of this profile may log in to webmail."`
	EmailRetention int    `cfg:"email-retention" range:"0-3650" default:"0" help:"Days a message is kept in a user's folders before it is deleted (0: kept)."`
}

// TLSProfile is one `config profile tls` entry.
type TLSProfile struct {
	Name                    string `cfg:"name,key" check:"objname"`
	Level                   string `cfg:"level" enum:"none|preferred|encrypt|secure" default:"preferred" help:"TLS requirement."`
	Action                  string `cfg:"action" enum:"fail|tempfail" default:"tempfail" help:"Reply when the requirement is not met."`
	CheckEncryptionStrength bool   `cfg:"check-encryption-strength" default:"disable" help:"Require a minimum cipher strength."`
	EncryptionStrength      int    `cfg:"encryption-strength" range:"40-256" default:"128" help:"Minimum cipher key bits."`
	CheckSSLVersion         bool   `cfg:"check-ssl-version" default:"enable" help:"Require at least min-ssl-version."`
	MinSSLVersion           string `cfg:"min-ssl-version" enum:"tls1_0|tls1_1|tls1_2|tls1_3" default:"tls1_2" help:"Lowest TLS version accepted (with check-ssl-version)."`
	CheckCAName             bool   `cfg:"check-ca-name" default:"disable" help:"Require the peer certificate's issuer to match ca-name (secure level)."`
	CheckCAType             string `cfg:"check-ca-type" enum:"match|substring|wildcard" default:"wildcard" help:"How ca-name is compared: the whole name, a part of it, or wildcards (* ?); case-insensitive."`
	CAName                  string `cfg:"ca-name" help:"Issuer: a distinguished name (/CN=ca.example.com/O=Example or CN=ca.example.com,O=Example) or a common name."`
	CheckCertSubject        bool   `cfg:"check-cert-subject" default:"disable" help:"Require the peer certificate's subject to match cert-subject (secure level)."`
	CheckCertType           string `cfg:"check-cert-type" enum:"match|substring|wildcard" default:"wildcard" help:"How cert-subject is compared: the whole name, a part of it, or wildcards (* ?); case-insensitive."`
	CertSubject             string `cfg:"cert-subject" help:"Subject: a distinguished name (/CN=mx.example.com/O=Example or CN=mx.example.com,O=Example) or a common name."`
	Comments                string `cfg:"comments" fm:"none" help:"Comments."`
}

// Policy groups the policies.
type Policy struct {
	AccessControl AccessControl `cfg:"access-control,group"`
}

// AccessControl holds the ordered receive and delivery rules.
type AccessControl struct {
	Receive  []ReceiveRule  `cfg:"receive" help:"Rules for mail received (first match wins)."`
	Delivery []DeliveryRule `cfg:"delivery" help:"Rules for mail delivered (first match wins)."`
}

// ReceiveRule is one `config policy access-control receive` entry.
type ReceiveRule struct {
	ID                      int    `cfg:"id,key"`
	Status                  bool   `cfg:"status" default:"enable" help:"Rule in use."`
	SenderPatternType       string `cfg:"sender-pattern-type" enum:"default|regexp" default:"default" help:"Wildcards (* ?) or regular expression."`
	SenderPattern           string `cfg:"sender-pattern" default:"*" help:"Envelope sender."`
	RecipientPatternType    string `cfg:"recipient-pattern-type" enum:"default|regexp" default:"default" help:"Wildcards (* ?) or regular expression."`
	RecipientPattern        string `cfg:"recipient-pattern" default:"*" help:"Envelope recipient."`
	SenderIPType            string `cfg:"sender-ip-type" enum:"ip-mask" default:"ip-mask" help:"How the client is matched: ip-mask (FortiMail's ip-group and geoip-group are not supported)."`
	SenderIPMask            string `cfg:"sender-ip-mask" type:"prefix" default:"0.0.0.0/0" help:"Client address and netmask."`
	ReverseDNSPattern       string `cfg:"reverse-dns-pattern" default:"*" help:"Client reverse DNS name (wildcards * ?, or a regular expression)."`
	ReverseDNSPatternRegexp string `cfg:"reverse-dns-pattern-regexp" enum:"yes|no" default:"no" help:"reverse-dns-pattern is a regular expression."`
	Authenticated           string `cfg:"authenticated" enum:"any|authenticated|not-authenticated" default:"any" help:"Whether the client authenticated (SMTP AUTH)."`
	TLSProfile              string `cfg:"tls-profile" type:"ref" ref:"profile tls" help:"TLS profile required of the session."`
	Action                  string `cfg:"action" enum:"relay|reject|discard|safe|safe-relay|receive" default:"reject" help:"What to do with matching mail."`
	Comments                string `cfg:"comment" help:"Comment."`
}

// DeliveryRule is one `config policy access-control delivery` entry.
type DeliveryRule struct {
	ID                   int    `cfg:"id,key"`
	Status               bool   `cfg:"status" default:"enable" help:"Rule in use."`
	SenderPatternType    string `cfg:"sender-pattern-type" enum:"default|regexp" default:"default" help:"Wildcards (* ?) or regular expression."`
	SenderPattern        string `cfg:"sender-pattern" default:"*" help:"Envelope sender."`
	RecipientPatternType string `cfg:"recipient-pattern-type" enum:"default|regexp" default:"default" help:"Wildcards (* ?) or regular expression."`
	RecipientPattern     string `cfg:"recipient-pattern" default:"*" help:"Envelope recipient."`
	DestinationIPType    string `cfg:"destination-ip-type" enum:"ip-mask" default:"ip-mask" help:"How the destination is matched: ip-mask (FortiMail's ip-group is not supported)."`
	DestinationIPMask    string `cfg:"destination" type:"prefix" default:"0.0.0.0/0" help:"Address and netmask of the server the mail is delivered to."`
	TLSProfile           string `cfg:"tls-profile" type:"ref" ref:"profile tls" help:"TLS profile for the delivery."`
	Comments             string `cfg:"comment" help:"Comment."`
}
