package pathstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TraceDirEnv tells the test that TraceSyncs runs under strace which
// directory to write into; it is empty in a normal run.
const TraceDirEnv = "VBX_TRACE_DIR"

var (
	syncCall   = regexp.MustCompile(`^(?:\d+ +)?(fsync|fdatasync)\(\d+<([^>]*)>\) = 0$`)
	renameCall = regexp.MustCompile(`^(?:\d+ +)?(?:rename|renameat|renameat2)\((?:[^,]*, )?"([^"]*)", (?:[^,]*, )?"([^"]*)"(?:, [^)]*)?\) = 0$`)
	tempSuffix = regexp.MustCompile(`\.tmp-\d+`)
)

// TraceSyncs runs the test named test of this test binary under strace,
// with TraceDirEnv set to a fresh directory, and returns the file syncs
// and renames it made in that directory, one per line with the directory
// written DIR and temp-file numbers *:
//
//	fsync DIR/.ports.json.tmp-*
//	rename DIR/.ports.json.tmp-* DIR/ports.json
//	fsync DIR
//
// The traced test writes its files below os.Getenv(TraceDirEnv) and does
// nothing when it is empty. It skips when strace is not installed (Debian
// package: strace).
func TraceSyncs(t *testing.T, test string) string {
	t.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("skipped: strace not found (apt-get install strace)")
	}
	dir := t.TempDir()
	out := filepath.Join(t.TempDir(), "trace")
	cmd := exec.Command(strace, "-f", "-qq", "-y", "-o", out,
		"-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
		os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), TraceDirEnv+"="+dir)
	if b, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(b), "--- PASS: "+test) {
		t.Fatalf("running %s under strace: %v\n%s", test, err, b)
	}
	trace, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(trace), "\n") {
		var got string
		if m := syncCall.FindStringSubmatch(l); m != nil {
			got = "fsync " + m[2]
		} else if m := renameCall.FindStringSubmatch(l); m != nil {
			got = "rename " + m[1] + " " + m[2]
		}
		if strings.Contains(got, dir) {
			got = strings.ReplaceAll(got, dir, "DIR")
			lines = append(lines, tempSuffix.ReplaceAllString(got, ".tmp-*"))
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
