package transparent

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"mailgate/config"
	"mailgate/config/configtest"
	"mailgate/intercept"
)

func rules(spec intercept.Spec) string {
	out := make([]string, len(spec.Rules))
	for i, r := range spec.Rules {
		out[i] = r.String()
	}
	return strings.Join(out, "\n")
}

// The rules follow each interface's pick-up per direction: a rule per
// protected server for the incoming direction when it differs from the
// outgoing one, then one for every other destination; interfaces that
// pass everything through have none.
func TestSpec(t *testing.T) {
	c := configtest.Apply(t, config.New(), `config system global
set operation-mode transparent
end
config system interface
edit port1
next
edit port2
set proxy-smtp-in-mode proxy
set proxy-smtp-out-mode pass-through
next
edit port3
set proxy-smtp-in-mode drop
set proxy-smtp-out-mode proxy
next
edit port4
set proxy-smtp-in-mode proxy
set proxy-smtp-out-mode proxy
next
end
config domain
edit example.com
set smtp-server 198.51.100.25
set fallback-host mx2.example.com
next
end
`)
	resolve := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host == "mx2.example.com" {
			return []netip.Addr{netip.MustParseAddr("2001:db8:2::26")}, nil
		}
		return nil, errors.New("no such host")
	}
	servers, err := protectedServers(context.Background(), c, resolve)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{"port1": "eth0", "port2": "eth1", "port3": "eth2", "port4": "eth3"}
	spec, err := Spec(c, names, servers)
	if err != nil {
		t.Fatal(err)
	}
	want := `eth1 tcp/25 to 198.51.100.25/32: intercept
eth1 tcp/25 to 2001:db8:2::26/128: intercept
eth1 tcp/25 to any: pass-through
eth2 tcp/25 to 198.51.100.25/32: drop
eth2 tcp/25 to 2001:db8:2::26/128: drop
eth2 tcp/25 to any: intercept
eth3 tcp/25 to any: intercept`
	if got := rules(spec); got != want {
		t.Errorf("rules:\n%s\nwant:\n%s", got, want)
	}
	// A port the appliance does not have, a server without an address:
	// errors, not silent pass-through.
	delete(names, "port4")
	if _, err := Spec(c, names, servers); err == nil || !strings.Contains(err.Error(), "port4") {
		t.Errorf("missing port: %v", err)
	}
	c.Domain[0].SMTPServer = "gone.example.com"
	if _, err := protectedServers(context.Background(), c, resolve); err == nil || !strings.Contains(err.Error(), "gone.example.com") {
		t.Errorf("unresolvable server: %v", err)
	}
}
