package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/who"
)

func init() {
	register("who", command{summary: "which VM owns a tap now, or owned it at a given time; a MAC's timeline across hosts", run: runWho})
}

// timeLayouts are the forms --at accepts, besides RFC 3339.
var timeLayouts = []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "15:04:05", "15:04"}

func lookup() who.Lookup {
	return who.Lookup{
		Store: filepath.Join(paths.StateDir(), "ports.json"),
		File:  filepath.Join(paths.LogDir(), "journal.jsonl"),
	}
}

func runWho(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("who", "who TAP|MAC [--at TIME] [--directory DIR | --file FILE...] [--host HOST] [--json]", stderr)
	at := fs.String("at", "", "answer for this past moment instead of now: RFC 3339, \"2006-01-02 15:04[:05[.000]]\", or \"15:04[:05[.000]]\" (today), local time")
	asJSON := fs.Bool("json", false, "print JSON")
	var j who.Journals
	fs.StringVar(&j.Directory, "directory", "", "read the journal files in `DIR` (as systemd-journal-remote writes them) instead of this host's journal")
	fs.Func("file", "read the journal `FILE` (a path or glob; repeat for more) instead of this host's journal", func(v string) error {
		j.Files = append(j.Files, v)
		return nil
	})
	host := fs.String("host", "", "only this `HOST` (its _HOSTNAME or _MACHINE_ID) of the journals read")
	fs.Usage = func() {
		fmt.Fprint(stderr, whoUsage)
		fs.PrintDefaults()
	}
	tap, rest := splitFirstArg(args)
	if code, ok := parseFlags(fs, rest); !ok {
		return code
	}
	if tap == "" && fs.NArg() == 1 {
		tap = fs.Arg(0)
	} else if tap == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if j.Directory != "" && len(j.Files) > 0 {
		fmt.Fprintln(stderr, "virtbridge who: --directory and --file exclude each other (as for journalctl): name the files of one or the other")
		return exitUsage
	}
	if mac, err := net.ParseMAC(tap); err == nil && len(mac) == 6 {
		return whoMAC(j, mac.String(), *host, *at, *asJSON, stdout, stderr)
	}
	if !j.IsZero() || *host != "" {
		return whoTapFleet(j, tap, *host, *at, *asJSON, stdout, stderr)
	}
	var (
		owner who.Owner
		err   error
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if *at == "" {
		owner, err = lookup().Now(ctx, tap)
	} else {
		t, perr := parseTime(*at, time.Now())
		if perr != nil {
			fmt.Fprintf(stderr, "virtbridge who: %v\n", perr)
			return exitUsage
		}
		owner, err = lookup().At(ctx, tap, t)
	}
	if since, stale, _ := store.StaleSince(filepath.Join(paths.RunDir(), store.StaleFile)); stale && *at == "" {
		fmt.Fprintf(stderr, "virtbridge who: note: the mapping store may lack the changes since %s (saving it failed); "+
			"the next VM start or stop, or virtbridged, catches it up from the journal; meanwhile --at with the time of day answers from the journal\n",
			since.Local().Format(time.DateTime))
	}
	var none *who.NoOwnerError
	if errors.As(err, &none) && *asJSON {
		printJSON(stdout, noOwnerJSON(none))
	}
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge who: %v\n", err)
		if errors.Is(err, who.ErrUnknown) {
			return exitFound
		}
		return exitUsage
	}
	if *asJSON {
		printJSON(stdout, map[string]any{
			"tap": owner.Tap, "vm": owner.VM, "uuid": owner.UUID, "mac": owner.MAC,
			"bridge": owner.Bridge, "since": owner.Since, "source": owner.From,
		})
		return exitOK
	}
	fmt.Fprintf(stdout, "%s: vm %q (uuid %s) mac %s on bridge %s, attached %s [%s]\n",
		owner.Tap, owner.VM, owner.UUID, owner.MAC, owner.Bridge, owner.Since.Local().Format(time.DateTime), owner.From)
	return exitOK
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// noOwnerJSON answers --json when no VM owns the tap: the owner's keys,
// empty, as when there is one; "last_owner" with the VM that had it last,
// from "since" until "until" (null when the journal has none), and
// "reason", the sentence the text output prints.
func noOwnerJSON(e *who.NoOwnerError) map[string]any {
	var last any
	if o := e.Last; o != nil {
		last = map[string]any{
			"vm": o.VM, "uuid": o.UUID, "mac": o.MAC, "bridge": o.Bridge,
			"since": timeOrNull(o.Since), "until": timeOrNull(o.Until), "source": o.From,
		}
	}
	return map[string]any{
		"tap": e.Tap, "vm": "", "uuid": "", "mac": "", "bridge": "", "since": nil, "source": "",
		"last_owner": last, "reason": e.Msg,
	}
}

func timeOrNull(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// splitFirstArg lets the tap come before the flags (`who vnet3 --at 14:02`),
// which the flag package alone would not allow.
func splitFirstArg(args []string) (string, []string) {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0], args[1:]
	}
	return "", args
}

// parseTime reads --at in local time; a time of day alone means today.
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range timeLayouts {
		t, err := time.ParseInLocation(layout, s, time.Local)
		if err != nil {
			continue
		}
		if !strings.Contains(layout, "2006") {
			y, m, d := now.Date()
			t = time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.Local)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--at %q: want RFC 3339 (2026-11-30T14:02:00Z), \"2026-11-30 14:02[:05]\" or \"14:02[:05]\"", s)
}
