package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

// where a shown command runs.
type where int

const (
	onHost where = iota
	inHV         // the lab's hypervisor namespaces (network and mount)
	inUp         // the lab's upstream network namespace
)

var whereName = map[where]string{onHost: "host", inHV: "hypervisor", inUp: "upstream"}

// show runs a command, prints it (program paths shortened to their base
// name) with the namespace it runs in, then its output (stdout and stderr),
// indented. The error carries the output.
func (d *demo) show(ctx context.Context, w where, argv ...string) (string, error) {
	display := append([]string{filepath.Base(argv[0])}, argv[1:]...)
	fmt.Fprintf(d.w, "  [%s]$ %s\n", whereName[w], strings.Join(display, " "))
	switch w {
	case inHV:
		// nsenter execs the program in the lab's network and mount namespaces.
		argv = append([]string{"nsenter", "-t", strconv.Itoa(d.l.HolderPID()), "-m", "-n", "--"}, argv...)
	case inUp:
		argv = append([]string{"ip", "netns", "exec", d.l.UpNetns()}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	d.indent(string(out))
	if err != nil {
		return string(out), fmt.Errorf("running %q in the %s namespace: %w: %s", display, whereName[w], err, out)
	}
	return string(out), nil
}

func (d *demo) indent(s string) {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return
	}
	fmt.Fprintf(d.w, "      %s\n", strings.ReplaceAll(s, "\n", "\n      "))
}

// showJournal shows virtbridge's records matching FIELD=value matches,
// once one of them contains want (the hook and journald write them
// asynchronously): with journalctl, or from the lab's JSON-lines file
// where there is no journald.
func (d *demo) showJournal(ctx context.Context, want string, matches ...string) error {
	args := append([]string{"-o", "short", "--no-pager", "-q", "SYSLOG_IDENTIFIER=" + journal.Identifier}, matches...)
	read := func() (string, error) {
		cmd := exec.CommandContext(ctx, "journalctl", args...)
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		out, err := cmd.Output()
		return string(out), err
	}
	if d.jd == nil {
		read = func() (string, error) { return d.fileRecords(matches) }
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := read()
		if err == nil && strings.Contains(out, want) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no virtbridge record %q with %s after 10 s (%v): %s", want, strings.Join(matches, " "), err, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if d.jd != nil {
		_, err := d.show(ctx, onHost, append([]string{"journalctl"}, args...)...)
		return err
	}
	fmt.Fprintf(d.w, "  [hypervisor] records in /var/log/virtbridge/journal.jsonl (there is no journald) with %s:\n", strings.Join(matches, " "))
	out, err := d.fileRecords(matches)
	d.indent(out)
	return err
}

// fileRecords renders, like journalctl -o short, each record of the lab's
// JSON-lines journal that has every FIELD=value of matches.
func (d *demo) fileRecords(matches []string) (string, error) {
	p, err := d.l.HostPath("/var/log/virtbridge/journal.jsonl")
	if err != nil {
		return "", err
	}
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("reading the journal file: %w", err)
	}
	defer f.Close()
	var b strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec map[string]string
		if json.Unmarshal(sc.Bytes(), &rec) != nil || !matchesAll(rec, matches) {
			continue
		}
		us, _ := strconv.ParseInt(rec[journal.FieldRealtime], 10, 64)
		fmt.Fprintf(&b, "%s virtbridge: %s\n", time.UnixMicro(us).Format(time.Stamp), rec[journal.FieldMessage])
	}
	return b.String(), sc.Err()
}

func matchesAll(rec map[string]string, matches []string) bool {
	for _, m := range matches {
		k, v, _ := strings.Cut(m, "=")
		if rec[k] != v {
			return false
		}
	}
	return true
}
