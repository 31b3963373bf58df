package firewall

import (
	"os"
	"path/filepath"
	"testing"
)

// TestSaveStateRemovesStaleTemps: a writer SIGKILLed between creating its
// temp file and renaming it leaves the temp file behind; the next save
// removes it, and leaves other files alone.
func TestSaveStateRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "firewall.state")
	for _, f := range []string{".firewall.state.tmp-123", ".firewall.state.tmp-456", "other"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(`{"boot_id":`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := saveState(path, state{Backend: BackendAuto}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "firewall.state" || names[1] != "other" {
		t.Fatalf("after a save the directory holds %v, want [firewall.state other]", names)
	}
	if s, err := loadState(path); err != nil || s == nil || s.Backend != BackendAuto {
		t.Fatalf("loadState = %+v, %v", s, err)
	}
}
