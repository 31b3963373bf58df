package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"
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
// ...): only in dir when dir is set, else in PATH and then in the sbin
// directories.
func LookPath(dir, name string) (string, error) {
	if dir != "" {
		return exec.LookPath(filepath.Join(dir, name))
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	// libvirtd may start the hook with a PATH without the sbin directories.
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p, err := exec.LookPath(filepath.Join(d, name)); err == nil {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// run runs an iptables command with LC_ALL=C and returns its stdout; its
// error carries the argv and the output.
func run(path string, args ...string) (string, error) {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("running %q: %w: %s", cmd.Args, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// iptTable is one family's filter table of one variant, read with a
// single `iptables -S` and changed through go-iptables.
type iptTable struct {
	fam  Family
	v    Variant
	path string
	wait int
	ipt  *iptables.IPTables // made on the first change: New runs `iptables --version`
}

func (t *iptTable) name() string { return t.fam.command() + "-" + string(t.v) }

func (t *iptTable) read() (*ruleset, error) {
	f, err := ReadFilter(t.path, t.wait)
	if err != nil {
		return nil, fmt.Errorf("reading %s filter table: %w", t.name(), err)
	}
	return rulesetOf(f), nil
}

// ReadFilter reads the filter table with the iptables command at path
// (`path -t filter -S`), waiting at most wait seconds for the xtables lock.
// It changes nothing; legacy iptables creates the table when it is missing.
func ReadFilter(path string, wait int) (Filter, error) {
	out, err := run(path, "-t", filterTable, "-S", "--wait", strconv.Itoa(wait))
	if err != nil {
		return Filter{}, err
	}
	return ParseFilter(out)
}

func (t *iptTable) do(o op) (bool, error) {
	if t.ipt == nil {
		proto := iptables.ProtocolIPv4
		if t.fam == IPv6 {
			proto = iptables.ProtocolIPv6
		}
		ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(t.path), iptables.Timeout(t.wait))
		if err != nil {
			return false, fmt.Errorf("starting %s: %w", t.name(), err)
		}
		t.ipt = ipt
	}
	spec, err := SplitRule(o.spec)
	if err != nil {
		return false, err
	}
	switch o.kind {
	case opNewChain:
		err = t.ipt.NewChain(filterTable, o.chain)
		if err != nil {
			if ok, cerr := t.ipt.ChainExists(filterTable, o.chain); cerr == nil && ok {
				return false, nil // created meanwhile: already exists is success
			}
		}
	case opDelChain:
		err = t.ipt.DeleteChain(filterTable, o.chain)
	case opAppend:
		err = t.ipt.Append(filterTable, o.chain, spec...)
	case opInsert:
		err = t.ipt.Insert(filterTable, o.chain, o.pos, spec...)
	case opDelete:
		err = t.ipt.Delete(filterTable, o.chain, spec...)
	default:
		return false, fmt.Errorf("%s: not a change virtbridge makes", o)
	}
	var ierr *iptables.Error
	if (o.kind == opDelete || o.kind == opDelChain) && errors.As(err, &ierr) && ierr.IsNotExist() {
		return false, nil // already gone is success
	}
	return err == nil, err
}

// batch makes ops in one `iptables-restore --noflush`: one process instead
// of one per change (and go-iptables' `--version` probe), and all or
// nothing.
func (t *iptTable) batch(ops []op) error {
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
	cmd := exec.Command(restore, "--noflush", "--wait", strconv.Itoa(t.wait))
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("running %q: %w: %s", cmd.Args, err, strings.TrimSpace(string(out)))
	}
	return nil
}
