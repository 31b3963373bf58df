package sysctl

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Fake is an in-memory sysctl backend for tests of callers. It keeps the
// settings it knows; a setting it does not know fails like a missing file
// (a net.bridge.* one with ErrBridgeNetfilter when no net.bridge.* setting
// is known at all).
type Fake struct {
	Values map[string]string
}

// NewFake returns a Fake holding a copy of values.
func NewFake(values map[string]string) *Fake {
	f := &Fake{Values: map[string]string{}}
	for k, v := range values {
		f.Values[k] = normalize(v)
	}
	return f
}

// Ensure is Manager.Ensure on the in-memory settings; it is idempotent.
func (f *Fake) Ensure(ctx context.Context, s desired.Sysctl, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "setting sysctl %q", s.Name); err != nil {
		return nil, err
	}
	want := normalize(s.Value)
	if want == "" {
		return nil, fmt.Errorf("setting sysctl %q: empty value", s.Name)
	}
	before, ok := f.Values[s.Name]
	if !ok {
		if isBridgeSetting(s.Name) && !f.hasBridge() {
			return nil, fmt.Errorf("sysctl %q: %w", s.Name, ErrBridgeNetfilter)
		}
		return nil, fmt.Errorf("sysctl %q: %w", s.Name, fs.ErrNotExist)
	}
	if before == want {
		return nil, nil
	}
	f.Values[s.Name] = want
	rv.Add(func() error { f.Values[s.Name] = before; return nil })
	return []change.Change{{Kind: change.SysctlChanged, Object: s.Name, Before: before, After: want}}, nil
}

func (f *Fake) hasBridge() bool {
	for k := range f.Values {
		if isBridgeSetting(k) {
			return true
		}
	}
	return false
}

// String renders the settings like `sysctl -a`, sorted by name.
func (f *Fake) String() string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(f.Values)) {
		fmt.Fprintf(&b, "%s = %s\n", k, f.Values[k])
	}
	return b.String()
}
