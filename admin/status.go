package admin

import (
	"runtime"
	"strconv"
	"time"

	"mailgate/cert"
)

// Fact is one line of the system status: a name and its value.
type Fact struct{ Name, Value string }

// Status is what `get system status` and the web UI's status page show,
// as of now.
func (s *Service) Status(now time.Time) []Fact {
	c, rev := s.Config()
	ca, _ := cert.Describe(s.id.CACertPEM)
	return []Fact{
		{"Version", "mailgate " + Version},
		{"Hostname", c.System.Global.Hostname},
		{"Operation mode", c.System.Global.OperationMode},
		{"Device CA", ca.Subject},
		{"Factory certificate SHA-256", s.FactoryFingerprint()},
		{"SSH host key", s.HostKeyFingerprint},
		{"Configuration revision", strconv.FormatUint(rev, 10)},
		{"System time", now.Format(time.RFC1123Z)},
		{"Uptime", now.Sub(s.Started).Truncate(time.Second).String()},
		{"Platform", runtime.GOOS + "/" + runtime.GOARCH},
		{"Firmware", s.FirmwareStatus()},
	}
}

// FirmwareStatus describes the root partitions, or says that the
// appliance does not run from its image.
func (s *Service) FirmwareStatus() string {
	if s.Firmware == nil {
		return "not running from the appliance image"
	}
	return s.Firmware.Status()
}
