package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// sectionTitles are the headings of the human output.
var sectionTitles = map[Section]string{
	SectionInstall:    "Install",
	SectionConfig:     "Config",
	SectionBridges:    "Bridges",
	SectionForwarding: "Forwarding",
	SectionVMs:        "VMs",
	SectionTaps:       "Taps",
}

// ANSI colours of the status labels.
const (
	colorReset  = "\x1b[0m"
	colorGreen  = "\x1b[32m"
	colorYellow = "\x1b[33m"
	colorRed    = "\x1b[1;31m"
)

// WriteText writes the report for people, grouped by section: one line
// per finding, and for problems a "why" and a "fix" line. fix, when not
// nil, is what --fix changed before the report was made. color adds ANSI
// colours (for a terminal).
func WriteText(w io.Writer, r *Report, fix *FixResult, color bool) error {
	var b strings.Builder
	if fix != nil {
		writeFix(&b, fix)
	}
	for _, sec := range Sections {
		first := true
		for _, f := range r.Findings {
			if f.Section != sec {
				continue
			}
			if first {
				fmt.Fprintf(&b, "%s\n", sectionTitles[sec])
				first = false
			}
			fmt.Fprintf(&b, "  %s %s: %s\n", label(f.Status, color), f.Object, f.Message)
			writePath(&b, f.Path)
			if f.Why != "" {
				fmt.Fprintf(&b, "        why: %s\n", f.Why)
			}
			if f.Fix != "" {
				fmt.Fprintf(&b, "        fix: %s\n", f.Fix)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s: %d failure(s), %d warning(s), %d ok\n", summary(r.Status()), r.Count(Fail), r.Count(Warn), r.Count(OK))
	_, err := io.WriteString(w, b.String())
	return err
}

// writePath lists a forward path, one chain a line, in priority order.
func writePath(b *strings.Builder, path []Hop) {
	for i, h := range path {
		fmt.Fprintf(b, "        %d. %-4s %s (%s, %s, priority %d): %s\n", i+1, h.Verdict, h.Chain, h.Owner, h.Family, h.Priority, h.At)
	}
}

// writeFix says what --fix changed, what it could not fix and why, and
// what the engine warned about.
func writeFix(b *strings.Builder, fix *FixResult) {
	switch {
	case len(fix.Changes) > 0:
		fmt.Fprintf(b, "Fixed (%d change(s)):\n", len(fix.Changes))
	case len(fix.NotFixed) > 0:
		b.WriteString("Fixed nothing.\n")
	default:
		b.WriteString("No change needed: what virtbridge fixes was already right.\n")
	}
	for _, c := range fix.Changes {
		fmt.Fprintf(b, "  %s\n", c)
	}
	if len(fix.NotFixed) > 0 {
		fmt.Fprintf(b, "Not fixed (%d):\n", len(fix.NotFixed))
	}
	for _, nf := range fix.NotFixed {
		fmt.Fprintf(b, "  %s: %s\n", nf.Object, nf.Reason)
		if nf.Fix != "" {
			fmt.Fprintf(b, "        fix: %s\n", nf.Fix)
		}
	}
	for _, w := range fix.Warnings {
		fmt.Fprintf(b, "  warning: %s\n", w)
	}
	b.WriteString("\n")
}

func summary(s Status) string {
	switch s {
	case Fail:
		return "bridged VMs are broken here"
	case Warn:
		return "bridged VMs work, with warnings"
	}
	return "all ok"
}

func label(s Status, color bool) string {
	text, c := "ok  ", colorGreen
	switch s {
	case Warn:
		text, c = "warn", colorYellow
	case Fail:
		text, c = "FAIL", colorRed
	}
	if !color {
		return text
	}
	return c + text + colorReset
}

// JSON is the document --json prints.
type JSON struct {
	Status   Status         `json:"status"`
	Counts   map[Status]int `json:"counts"`
	Findings []Finding      `json:"findings"`
	// Fix is what --fix changed before the checks ran again.
	Fix *FixResult `json:"fix,omitempty"`
}

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, r *Report, fix *FixResult) error {
	doc := JSON{Status: r.Status(), Findings: r.Findings,
		Counts: map[Status]int{OK: r.Count(OK), Warn: r.Count(Warn), Fail: r.Count(Fail)}, Fix: fix}
	if doc.Findings == nil {
		doc.Findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}
