package appliance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailgate/config"
)

func TestStaticNetwork(t *testing.T) {
	c := config.Factory(config.FactoryOptions{})
	if l, err := StaticNetwork(c); l != nil || err != nil {
		t.Fatalf("factory (DHCP): %v %v", l, err)
	}
	c.System.Interface[0].Mode = "static"
	c.System.Interface[0].IP = "192.0.2.10/25"
	c.System.Route = []config.Route{{ID: 1, Destination: "0.0.0.0/0", Gateway: "192.0.2.1"}}
	c.System.DNS.Primary, c.System.DNS.Secondary = "192.0.2.53", "198.51.100.53"
	dir := t.TempDir()
	if changed, err := writeNetwork(dir, c); err != nil || !changed {
		t.Fatalf("static: changed %v, %v", changed, err)
	}
	if changed, err := writeNetwork(dir, c); err != nil || changed {
		t.Fatalf("static again: changed %v, %v", changed, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, networkFile))
	if err != nil {
		t.Fatal(err)
	}
	// The DHCP client's static lease: net.IPMask is JSON base64.
	var got struct {
		IP      string
		Netmask []byte
		Router  string
		DNS     []string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.IP != "192.0.2.10" || string(got.Netmask) != "\xff\xff\xff\x80" || got.Router != "192.0.2.1" ||
		strings.Join(got.DNS, ",") != "192.0.2.53,198.51.100.53" {
		t.Fatalf("lease %s", b)
	}
	c.System.Interface[0].Mode = "dhcp"
	if changed, err := writeNetwork(dir, c); err != nil || !changed {
		t.Fatalf("DHCP: changed %v, %v", changed, err)
	}
	if _, err := os.Stat(filepath.Join(dir, networkFile)); !os.IsNotExist(err) {
		t.Fatalf("DHCP again: the static file stays (%v)", err)
	}
	c.System.Interface[0].Mode, c.System.Interface[0].IP = "static", "2001:db8::1/64"
	if _, err := StaticNetwork(c); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Fatalf("IPv6 static: %v", err)
	}
}
