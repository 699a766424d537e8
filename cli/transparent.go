package cli

import (
	"fmt"

	"mailgate/config"
)

// transparentStatus is `diagnose system transparent`: the kernel features,
// rules, counters and sessions of transparent mode's pick-up.
func (s *Session) transparentStatus(con Console, args []config.Token) error {
	if err := s.usage(con, args, 0, "diagnose system transparent"); err != nil {
		return err
	}
	i, err := s.svc.Interception()
	if err != nil {
		return s.fail(con, err)
	}
	status, err := i.Status()
	fmt.Fprint(con, status)
	if err != nil {
		return s.fail(con, err)
	}
	return nil
}
