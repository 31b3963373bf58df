package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

// BenchmarkWhoMACCollector is `virtbridge who MAC --directory DIR` (the
// built command, journalctl included) over a collector directory written by
// systemd-journal-remote from $VBM_WHO_RECORDS records (100,000 by default)
// of 100 hosts: attached and detached records of 10,000 NICs, alternately,
// as journald would store them (export format on journal-remote's stdin).
func BenchmarkWhoMACCollector(b *testing.B) {
	n := 100_000
	if v := os.Getenv("VBM_WHO_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := os.Stat(journalRemote); err != nil {
		b.Fatalf("%s: %v (scripts/deps.sh installs systemd-journal-remote)", journalRemote, err)
	}
	cli := virtbridgeCLI(b)
	dir := b.TempDir()
	begin := time.Now()
	writeCollector(b, filepath.Join(dir, "remote-fleet.journal"), n)
	st, _ := os.Stat(filepath.Join(dir, "remote-fleet.journal"))
	b.Logf("%d records written by systemd-journal-remote in %v (%d MB)", n, time.Since(begin).Round(time.Millisecond), st.Size()>>20)
	mac := nicMAC(4242)
	for b.Loop() {
		out, err := exec.Command(cli, "who", mac, "--directory", dir).Output()
		if err != nil || len(out) == 0 {
			b.Fatalf("who %s: %v\n%s", mac, err, out)
		}
	}
}

func nicMAC(i int) string {
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

// writeCollector has systemd-journal-remote write n records to file.
func writeCollector(b *testing.B, file string, n int) {
	b.Helper()
	cmd := exec.Command(journalRemote, "--output="+file, "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if out, err := os.CreateTemp(b.TempDir(), "journal-remote"); err == nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(in, 1<<20)
	const nics, hosts = 10_000, 100
	start := time.Now().Add(-time.Duration(n) * time.Second).UnixMicro()
	for i := range n {
		nic := i % nics
		host := nic % hosts
		id, word := journal.IDAttached, "attached"
		if (i/nics)%2 == 1 {
			id, word = journal.IDDetached, "detached"
		}
		fmt.Fprintf(w, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%032x\n_MACHINE_ID=%032x\n_HOSTNAME=hv%03d\n"+
			"SYSLOG_IDENTIFIER=%s\nMESSAGE_ID=%s\nMESSAGE=%s vm%d tap vnet%d\nPRIORITY=6\n"+
			"VIRTBRIDGE_VM=vm%d\nVIRTBRIDGE_UUID=%08x-0000-4000-8000-000000000000\nVIRTBRIDGE_TAP=vnet%d\nVIRTBRIDGE_MAC=%s\n"+
			"VIRTBRIDGE_BRIDGE=br0\nVIRTBRIDGE_OP=start\nVIRTBRIDGE_SOURCE=hook\n\n",
			start+int64(i)*1e6, int64(i)*1e6+1, host+1, host+1, host, journal.Identifier, id, word, nic, nic/hosts,
			nic, nic, nic/hosts, nicMAC(nic))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("systemd-journal-remote: %v", err)
	}
}
