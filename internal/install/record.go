package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// record is what Install did that Uninstall must take back. It lives in the
// state directory, not in the hook directory, so libvirt never sees it.
type record struct {
	// Hook and Target are the link Install placed, for the operator.
	Hook   string `json:"hook"`
	Target string `json:"target"`
	// CreatedDirs are the directories Install created, parents first.
	CreatedDirs []string `json:"created_dirs,omitempty"`
	// Saved is where the hook Install found in its place went.
	Saved string `json:"saved,omitempty"`
}

func (r *record) addDirs(dirs []string) {
	for _, d := range dirs {
		if !slices.Contains(r.CreatedDirs, d) {
			r.CreatedDirs = append(r.CreatedDirs, d)
		}
	}
}

// readRecord returns the record at path, or nil when there is none.
func readRecord(path string) (*record, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the install record: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("reading the install record %s: %w (delete it if the hook was removed by hand)", path, err)
	}
	return &r, nil
}

// writeRecord replaces the record at path in one rename.
func writeRecord(path string, r *record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing the install record: %w", err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the install record: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the install record: %w", err)
	}
	return nil
}
