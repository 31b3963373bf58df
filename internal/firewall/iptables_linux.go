package firewall

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/virtbridge/virtbridge/internal/command"
)

// binaries finds the iptables commands of each variant and family.
type binaries struct {
	// dir, when set, is the only directory searched.
	dir string
}

// find returns the path of the variant's command for family f, with suffix
// "" or "-save". It takes iptables-nft/iptables-legacy by name, else a plain
// iptables whose link target says which variant it is (xtables-nft-multi);
// a plain iptables that is not nf_tables is legacy.
func (b binaries) find(v Variant, f Family, suffix string) (string, error) {
	name := f.command() + "-" + string(v) + suffix
	if p, err := b.look(name); err == nil {
		return p, nil
	}
	if p, err := b.look(f.command() + suffix); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && strings.Contains(filepath.Base(real), "nft") == (v == NFT) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found: install the iptables package or change firewall.backend", name)
}

func (b binaries) look(name string) (string, error) { return LookPath(b.dir, name) }

// LookPath finds the command name (iptables-nft, ip6tables-legacy-save,
// ...): only in dir when dir is set, else only in the system directories
// (command.LookPath), whatever $PATH says: libvirtd may hand the hook a
// PATH without the sbin directories, or one that is not to be trusted.
func LookPath(dir, name string) (string, error) {
	if dir != "" {
		return exec.LookPath(filepath.Join(dir, name))
	}
	return command.LookPath(name)
}

// run runs an iptables command (package command: clean environment with
// LC_ALL=C, a timeout within ctx) and returns its stdout; its error
// carries the argv and the output. stdin may be nil.
func run(ctx context.Context, stdin io.Reader, path string, args ...string) (string, error) {
	out, err := command.Cmd{Path: path, Args: args, Stdin: stdin}.Output(ctx)
	return string(out), err
}

// iptTable is one family's filter table of one variant, read with a
// single `iptables -S` and changed with one iptables run per change, or one
// iptables-restore for a batch.
type iptTable struct {
	fam  Family
	v    Variant
	path string
	wait int
}

func (t *iptTable) name() string { return t.fam.command() + "-" + string(t.v) }

func (t *iptTable) read(ctx context.Context) (*ruleset, error) {
	f, err := ReadFilter(ctx, t.path, t.wait)
	if err != nil {
		return nil, fmt.Errorf("reading %s filter table: %w", t.name(), err)
	}
	return rulesetOf(f), nil
}

// ReadFilter reads the filter table with the iptables command at path
// (`path -t filter -S`), waiting at most wait seconds for the xtables lock.
// It changes nothing; legacy iptables creates the table when it is missing.
// The command ends with ctx.
func ReadFilter(ctx context.Context, path string, wait int) (Filter, error) {
	out, err := run(ctx, nil, path, "-t", filterTable, "-S", "--wait", strconv.Itoa(wait))
	if err != nil {
		return Filter{}, err
	}
	return ParseFilter(out)
}

// do makes one change with `iptables -t filter ARGS --wait N`. iptables
// says "already exists" or "does not exist" only in text and exit status
// 1, which also means other failures, so a failed change is classified by
// reading the table back: a chain that exists after -N, or a chain or rule
// that is gone after -X or -D, is a change already made (false, nil).
func (t *iptTable) do(ctx context.Context, o op) (bool, error) {
	spec, err := SplitRule(o.spec)
	if err != nil {
		return false, err
	}
	args := []string{"-t", filterTable}
	switch o.kind {
	case opNewChain:
		args = append(args, "-N", o.chain)
	case opDelChain:
		args = append(args, "-X", o.chain)
	case opAppend:
		args = append(append(args, "-A", o.chain), spec...)
	case opInsert:
		args = append(append(args, "-I", o.chain, strconv.Itoa(o.pos)), spec...)
	case opDelete:
		args = append(append(args, "-D", o.chain), spec...)
	default:
		return false, fmt.Errorf("%s: not a change virtbridge makes", o)
	}
	_, err = run(ctx, nil, t.path, append(args, "--wait", strconv.Itoa(t.wait))...)
	if err == nil {
		return true, nil
	}
	if o.kind == opNewChain || o.kind == opDelChain || o.kind == opDelete {
		if cur, rerr := t.read(ctx); rerr == nil && alreadyDone(cur, o) {
			return false, nil
		}
	}
	return false, err
}

// alreadyDone reports whether cur already shows the effect of o: its chain
// made, or its chain or rule gone.
func alreadyDone(cur *ruleset, o op) bool {
	switch o.kind {
	case opNewChain:
		return cur.has(o.chain)
	case opDelChain:
		return !cur.has(o.chain)
	case opDelete:
		return !slices.Contains(cur.rules[o.chain], o.spec)
	}
	return false
}

// batch makes ops in one `iptables-restore --noflush`: one process instead
// of one per change, and all or nothing.
func (t *iptTable) batch(ctx context.Context, ops []op) error {
	restore := t.path + "-restore"
	if _, err := os.Stat(restore); err != nil {
		return err
	}
	var in strings.Builder
	in.WriteString("*" + filterTable + "\n")
	for _, o := range ops {
		in.WriteString(o.String() + "\n")
	}
	in.WriteString("COMMIT\n")
	_, err := run(ctx, strings.NewReader(in.String()), restore, "--noflush", "--wait", strconv.Itoa(t.wait))
	return err
}
