package main

import (
	"os"
	"strings"
	"testing"
)

// TestDeadlineWithStdinNeverClosed: a stdin that is never closed does not
// hang the hook: at hook_timeout (read from the config before stdin) it
// gives up with one line naming the domain, the op, the limit, the key and
// what it was doing, refusing at prepare and exiting 0 at release.
func TestDeadlineWithStdinNeverClosed(t *testing.T) {
	for _, tc := range []struct {
		op, subop string
		code      int
		want      string
	}{
		{"prepare", "begin", 1, `virtbridge: domain "vm1" (prepare): refused: gave up after 1s (hook_timeout) while reading the domain XML on stdin; raise hook_timeout in `},
		{"release", "end", 0, `virtbridge: domain "vm1" (release): gave up after 1s (hook_timeout) while reading the domain XML on stdin; raise hook_timeout in `},
	} {
		t.Run(tc.op, func(t *testing.T) {
			t.Parallel()
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			defer w.Close() // never closed before the hook ends
			res := runHookFrom(t, cfgNone+"hook_timeout: 1s\n", r, "vm1", tc.op, tc.subop, "-")
			if res.code != tc.code || !strings.HasPrefix(res.stderr, tc.want) || res.stdout != "" {
				t.Fatalf("exit %d (want %d)\nstderr %q\nwant it to start with %q", res.code, tc.code, res.stderr, tc.want)
			}
			t.Logf("%s", res.stderr)
			if strings.Count(strings.TrimSpace(res.stderr), "\n") > 0 {
				t.Errorf("not one line: %q", res.stderr)
			}
		})
	}
}
