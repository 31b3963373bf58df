package lease

import (
	"os"
	"path/filepath"
	"testing"
)

// TestClientIDOf: the identifier dhclient sent is read from its
// configuration (-cf) first, else from the uplink's last lease in its
// lease file (-lf); none by default (Debian's dhclient.conf sends none).
func TestClientIDOf(t *testing.T) {
	dir := t.TempDir()
	leases := filepath.Join(dir, "dhclient.leases")
	os.WriteFile(leases, []byte(`lease {
  interface "uplink0";
  fixed-address 10.88.0.104;
  option dhcp-client-identifier 1:52:54:0:12:34:56;
}
lease {
  interface "eth9";
  fixed-address 10.9.0.4;
  option dhcp-client-identifier "other";
}
`), 0o644)
	conf := filepath.Join(dir, "dhclient.conf")
	os.WriteFile(conf, []byte("# send dhcp-client-identifier 1:0:a0:24:ab:fb:9c;\nsend host-name = gethostname();\n"), 0o644)
	args := []string{"dhclient", "-d", "-4", "-cf", conf, "-lf", leases, "uplink0"}
	if got := ClientIDOf(args, "uplink0"); string(got) != "\x01\x52\x54\x00\x12\x34\x56" {
		t.Errorf("from the lease file: %x", got)
	}
	if got := ClientIDOf(args, "eth9"); string(got) != "other" {
		t.Errorf("from the lease file, quoted: %q", got)
	}
	if got := ClientIDOf([]string{"dhclient", "-cf", conf, "uplink0"}, "uplink0"); got != nil {
		t.Errorf("without a lease file and none configured: %x, want none", got)
	}
	os.WriteFile(conf, []byte("send dhcp-client-identifier \"host-1\";\n"), 0o644)
	if got := ClientIDOf(args, "uplink0"); string(got) != "host-1" {
		t.Errorf("from the configuration: %q", got)
	}
}
