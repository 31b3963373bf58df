package netnstest

import (
	"os/exec"
	"strings"
	"testing"
)

func TestNewIsIsolatedAndRemoved(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		n := New(t, "vbt")
		name = n.Name
		out := n.Run(t, "ip", "-o", "link", "show")
		if strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
			t.Fatalf("fresh namespace has more than lo:\n%s", out)
		}
	})
	if name == "" {
		t.Skip("inner test skipped")
	}
	out, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(out), name) {
		t.Fatalf("namespace %s left behind after the test", name)
	}
}
