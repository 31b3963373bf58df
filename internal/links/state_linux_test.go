package links

import "testing"

// TestNewCurrentNamespace opens a Manager on the test's own namespace and
// only reads a name that does not exist there.
func TestNewCurrentNamespace(t *testing.T) {
	m, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := m.BridgeState("vbt-absent0")
	if err != nil || info.Exists {
		t.Fatalf("BridgeState(vbt-absent0) = %+v, %v", info, err)
	}
	m.Close() // idempotent
}
