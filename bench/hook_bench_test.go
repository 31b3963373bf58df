package bench_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/hook"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// The in-process parts of one hook call, for `go test -bench . -cpuprofile`:
// what the hook does before it touches the host. The whole-process numbers
// come from bench/cmd/vbbench.

const benchConfig = "bridges:\n  br-a: {uplink: uplink0}\n  br-b: {}\nsysctl: {ip_forward: 1}\n"

func fixture(b *testing.B, shape, call string) ([]string, []byte) {
	b.Helper()
	base := filepath.Join("..", "testdata", "hook", shape, call)
	args, err := os.ReadFile(base + ".args")
	if err != nil {
		b.Fatal(err)
	}
	xml, err := os.ReadFile(base + ".xml")
	if err != nil {
		b.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(args)), "\n"), xml
}

func BenchmarkParseHook(b *testing.B) {
	args, xml := fixture(b, "one-nic", "01-prepare-begin")
	for b.Loop() {
		if _, err := events.ParseHook(args, bytes.NewReader(xml)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConfigParse(b *testing.B) {
	for b.Loop() {
		if _, err := config.Parse("virtbridge.yaml", []byte(benchConfig)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	args, xml := fixture(b, "one-nic", "01-prepare-begin")
	ev, err := events.ParseHook(args, bytes.NewReader(xml))
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse("virtbridge.yaml", []byte(benchConfig))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		policy.Decide(cfg, ev)
	}
}

// BenchmarkHookRunNoop is a whole hook.Run of a VM without managed NIC:
// parse, config, policy, nothing to do.
func BenchmarkHookRunNoop(b *testing.B) {
	args, xml := fixture(b, "no-nic", "01-prepare-begin")
	cfg := filepath.Join(b.TempDir(), "virtbridge.yaml")
	if err := os.WriteFile(cfg, []byte(benchConfig), 0o644); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		code := hook.Run(hook.Env{Args: args, Stdin: bytes.NewReader(xml), Stderr: io.Discard, ConfigPath: cfg,
			Engine: func(context.Context, *config.Config) *engine.Engine { return &engine.Engine{} }})
		if code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}
