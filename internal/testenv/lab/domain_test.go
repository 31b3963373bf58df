package lab

import (
	"strings"
	"testing"
)

func TestDomainXML(t *testing.T) {
	got, err := DomainXML(VM{
		Name: "vm1", UUID: "5b0c0000-0000-4000-8000-000000000001",
		MAC: "52:54:00:aa:00:01", Bridges: []string{"br-a", "br-b"},
		NICs: []NIC{{Type: "user"}, {Type: "direct", Source: "eth9"}, {Type: "network", Source: "lan", Target: "vbt0"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`<domain type="qemu">`,
		`<memory unit="MiB">64</memory>`,
		`<acpi></acpi>`,
		`<type arch="x86_64" machine="pc">hvm</type>`,
		`<boot dev="network"></boot>`,
		`<mac address="52:54:00:aa:00:01"></mac>`,
		`<source bridge="br-a"></source>`,
		`<mac address="52:54:00:aa:00:02"></mac>`,
		`<source bridge="br-b"></source>`,
		`<interface type="user">`,
		`<source dev="eth9" mode="bridge"></source>`,
		`<source network="lan"></source>`,
		`<target dev="vbt0"></target>`,
		`<model type="e1000"></model>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("domain xml lacks %s:\n%s", want, got)
		}
	}
	if strings.Count(got, "<interface") != 5 {
		t.Errorf("want 5 interfaces:\n%s", got)
	}
}

func TestDomainXMLErrors(t *testing.T) {
	for name, vm := range map[string]VM{
		"no name":        {},
		"bad mac":        {Name: "x", MAC: "zz", Bridges: []string{"br"}},
		"mac overflow":   {Name: "x", MAC: "52:54:00:00:00:ff", Bridges: []string{"a", "b"}},
		"unknown type":   {Name: "x", NICs: []NIC{{Type: "vhostuser", Source: "s"}}},
		"missing source": {Name: "x", NICs: []NIC{{Type: "bridge"}}},
	} {
		if _, err := DomainXML(vm); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseLease(t *testing.T) {
	const leases = "1700000000 52:54:00:aa:00:01 10.77.0.120 * 01:52:54:00:aa:00:01\n" +
		"garbage\n" +
		"1700000001 52:54:00:AA:00:02 10.77.0.121 host *\n"
	for mac, want := range map[string]string{
		"52:54:00:aa:00:01": "10.77.0.120",
		"52:54:00:aa:00:02": "10.77.0.121",
		"52:54:00:aa:00:03": "",
	} {
		got, ok := parseLease(strings.NewReader(leases), mac)
		if got != want || ok != (want != "") {
			t.Errorf("parseLease(%s) = %q, %v; want %q", mac, got, ok, want)
		}
	}
}
