package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes this test binary as a writer child; this
// variable tells the child what to do and where.
const (
	writerEnv = "VIRTBRIDGE_STORE_TEST_WRITER" // "loop" or "converge"
	pathEnv   = "VIRTBRIDGE_STORE_TEST_PATH"
)

func TestMain(m *testing.M) {
	switch os.Getenv(writerEnv) {
	case "loop":
		writerLoop(os.Getenv(pathEnv))
	case "converge":
		if err := converge(os.Getenv(pathEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const crashEntries = 300 // about 60 KB per save: kills land mid-write

func crashEntry(i int, salt uint64) Entry {
	return Entry{
		UUID:   fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		VM:     fmt.Sprintf("vm-%d-%d", i, salt),
		MAC:    fmt.Sprintf("52:54:00:%02x:%02x:01", i/256, i%256),
		Tap:    fmt.Sprintf("vnet%d", i),
		Bridge: fmt.Sprintf("br%d", salt%4),
		Since:  time.Unix(int64(salt%(1<<32)), 0),
	}
}

// writerLoop loads, changes and saves the store forever, writing one byte
// to stdout after each save, until it is killed.
func writerLoop(path string) {
	out := bufio.NewWriter(os.Stdout)
	for n := uint64(1); ; n++ {
		s, err := Load(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "writer: load:", err)
			os.Exit(2)
		}
		if s.Recovered() != nil {
			fmt.Fprintln(os.Stderr, "writer: store was corrupt:", s.Recovered().Cause)
			os.Exit(3)
		}
		i := rand.IntN(crashEntries)
		e := crashEntry(i, n+uint64(os.Getpid())<<20)
		s.Detach(e.UUID, e.MAC)
		if _, _, err := s.Attach(e); err != nil {
			fmt.Fprintln(os.Stderr, "writer: attach:", err)
			os.Exit(2)
		}
		if err := s.Save(); err != nil {
			fmt.Fprintln(os.Stderr, "writer: save:", err)
			os.Exit(2)
		}
		out.WriteByte('.')
		out.Flush()
	}
}

// converge replaces the store's content with convergedState.
func converge(path string) error {
	s, err := Load(path)
	if err != nil {
		return err
	}
	if s.Recovered() != nil {
		return fmt.Errorf("store was corrupt: %v", s.Recovered().Cause)
	}
	s.Prune(func(Entry) bool { return false })
	for _, e := range convergedState() {
		if _, _, err := s.Attach(e); err != nil {
			return err
		}
	}
	return s.Save()
}

func convergedState() []Entry {
	return []Entry{crashEntry(1, 7), crashEntry(2, 7), crashEntry(3, 7)}
}

// killWriter starts a looping writer, waits for its first save, lets it
// run a random while (so the kill lands anywhere in the load-change-save
// cycle), kills it with SIGKILL and returns how many saves it finished.
func killWriter(t *testing.T, path string, k int) int {
	t.Helper()
	cmd, stdout, stderr := startWriter(t, "loop", path)
	one := make([]byte, 1)
	if _, err := io.ReadFull(stdout, one); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("writer child %d never saved: %v\n%s", k, err, stderr)
	}
	time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing writer: %v", err)
	}
	n, _ := io.Copy(io.Discard, stdout)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("writer child %d did not die by SIGKILL: %v\n%s", k, err, stderr)
	}
	return 1 + int(n)
}

func startWriter(t *testing.T, mode, path string) (*exec.Cmd, io.Reader, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnv+"="+mode, pathEnv+"="+path)
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting writer child: %v", err)
	}
	return cmd, stdout, stderr
}

// TestKill9AtAnyMoment kills a writer child with SIGKILL at random points,
// many times; after each kill the store must still parse (never moved
// aside as corrupt), and a final writer must converge to a known state.
func TestKill9AtAnyMoment(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: re-executes the test binary 200 times")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	s := New(path)
	for i := range crashEntries {
		if _, _, err := s.Attach(crashEntry(i, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}

	const kills = 200
	deadline := time.Now().Add(60 * time.Second)
	saves := 0
	for k := 0; k < kills; k++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d kills done in 60s", k, kills)
		}
		saves += killWriter(t, path, k)
		got, err := Read(path)
		if err != nil {
			t.Fatalf("after kill %d (%d saves so far) the store does not load: %v", k+1, saves, err)
		}
		if n := len(got.All()); n != crashEntries {
			t.Fatalf("after kill %d the store has %d entries, want %d", k+1, n, crashEntries)
		}
		if temps, _ := filepath.Glob(filepath.Join(dir, ".ports.json.tmp-*")); len(temps) > 1 {
			t.Fatalf("after kill %d, %d temp files pile up: %v", k+1, len(temps), temps)
		}
	}
	t.Logf("%d kills over %d saves", kills, saves)

	cmd, stdout, stderr := startWriter(t, "converge", path)
	io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("converging writer: %v\n%s", err, stderr)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	want := New(path)
	for _, e := range convergedState() {
		want.Attach(e)
	}
	if render(got) != render(want) {
		t.Fatalf("converged store:\n%s\nwant:\n%s", render(got), render(want))
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("store directory after convergence holds %v, want only ports.json (no temp or corrupt files)", names)
	}
}
