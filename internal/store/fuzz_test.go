package store

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the store parser: it must never panic,
// must refuse with a *CorruptError or *VersionError, and what it accepts
// must survive Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"entries":[{"uuid":"6f1c7c52-3b7a-4a8e-9d0a-111111111111","vm":"web01","mac":"52:54:00:AA:00:01","tap":"vnet0","bridge":"br0","since":"2025-03-04T14:02:00+01:00"}]}`))
	f.Add([]byte(`{"version":1,"entries":[]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"entries":[{"uuid":"a","mac":"52:54:00:00:00:01","tap":"t","bridge":"b","since":"0001-01-01T00:00:00Z"},{"uuid":"a","mac":"52:54:00:00:00:02","tap":"t","bridge":"b","since":"0001-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"entries":[{"uuid":"a\u0000","mac":"52-54-00-00-00-01","tap":"vnet0","bridge":"br0"}]}`))
	f.Add([]byte{})
	f.Add(Marshal(nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := Parse(data)
		if err != nil {
			var ce *CorruptError
			var ve *VersionError
			if !errors.As(err, &ce) && !errors.As(err, &ve) {
				t.Fatalf("Parse error %v (%T) is neither corrupt nor version", err, err)
			}
			return
		}
		out := Marshal(entries)
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(x))) failed: %v\n%s", err, out)
		}
		if out2 := Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("round trip changed the store:\n%s\n----\n%s", out, out2)
		}
		s := &Store{entries: entries}
		for _, e := range entries {
			if got, ok := s.ByTap(e.Tap); !ok || got != e {
				t.Fatalf("ByTap(%q) = %+v, %v", e.Tap, got, ok)
			}
		}
	})
}
