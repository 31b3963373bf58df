package firewall

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Fake is an in-memory firewall for tests of callers: the filter tables of
// both families as text, changed by the same planning code as the real
// Firewall. It is not safe for concurrent use.
type Fake struct {
	// Fail, when set, is asked before each change (an iptables command such
	// as "-A VIRTBRIDGE-FWD ..."); an error fails that change.
	Fail func(f Family, cmd string) error

	tables [2]*ruleset
}

// NewFake returns a Fake with empty tables: INPUT, FORWARD and OUTPUT
// accepting, in both families.
func NewFake() *Fake {
	return &Fake{tables: [2]*ruleset{newRuleset(), newRuleset()}}
}

// Ensure is Firewall.Ensure on the in-memory tables; it is idempotent. A
// backend of "none" changes nothing.
func (f *Fake) Ensure(ctx context.Context, fw desired.Firewall, rv *revert.Reverter) ([]change.Change, error) {
	if fw.Backend == BackendNone {
		return nil, nil
	}
	if _, err := variantOf(fw.Backend); err != nil {
		return nil, err
	}
	bridges, err := wantBridges(fw.AcceptBridges)
	if err != nil {
		return nil, err
	}
	cs, changed, err := ensureTables(ctx, f.all(), bridges, rv)
	if err == nil {
		err = verifyTables(ctx, changed, bridges)
	}
	return cs, err
}

// Check is Firewall.Check on the in-memory tables.
func (f *Fake) Check(ctx context.Context, fw desired.Firewall) ([]string, error) {
	if fw.Backend == BackendNone {
		return []string{}, nil
	}
	bridges, err := wantBridges(fw.AcceptBridges)
	if err != nil {
		return nil, err
	}
	return checkTables(ctx, f.all(), bridges)
}

// Remove is Firewall.Remove on the in-memory tables; it is idempotent.
func (f *Fake) Remove(ctx context.Context) ([]change.Change, error) {
	var rv revert.Reverter
	defer rv.Success()
	cs, _, err := ensureTables(ctx, f.all(), nil, &rv)
	return cs, err
}

// Run applies one iptables command to the family's table, as another tool
// would: -N, -X, -A, -I (with or without a position), -D with a rule spec,
// or -P. Tests use it to put foreign rules in place.
func (f *Fake) Run(fam Family, cmd string) error {
	a := strings.SplitN(cmd, " ", 3)
	if len(a) < 2 {
		return fmt.Errorf("fake iptables %q: want an option and a chain", cmd)
	}
	o := op{chain: a[1]}
	rest := ""
	if len(a) == 3 {
		rest = a[2]
	}
	switch a[0] {
	case "-N":
		o.kind = opNewChain
	case "-X":
		o.kind = opDelChain
	case "-A":
		o.kind, o.spec = opAppend, rest
	case "-D":
		o.kind, o.spec = opDelete, rest
	case "-P":
		o.kind, o.spec = opPolicy, rest
	case "-I":
		o.kind, o.pos, o.spec = opInsert, 1, rest
		if n, s, ok := strings.Cut(rest, " "); ok {
			if p, err := strconv.Atoi(n); err == nil {
				o.pos, o.spec = p, s
			}
		}
	default:
		return fmt.Errorf("fake iptables %q: unsupported option %s", cmd, a[0])
	}
	return f.tables[fam].apply(&o)
}

// String renders both tables like `iptables -S` and `ip6tables -S`, each
// after a "# ipv4" or "# ipv6" line.
func (f *Fake) String() string {
	return "# ipv4\n" + f.tables[IPv4].String() + "# ipv6\n" + f.tables[IPv6].String()
}

func (f *Fake) all() []table {
	return []table{fakeTable{f, IPv4}, fakeTable{f, IPv6}}
}

type fakeTable struct {
	f   *Fake
	fam Family
}

func (t fakeTable) name() string { return t.fam.command() + "-fake" }

// read and do, like iptables run through package command, do nothing
// once ctx has ended.
func (t fakeTable) read(ctx context.Context) (*ruleset, error) {
	if err := deadline.Ended(ctx, "reading %s filter table", t.name()); err != nil {
		return nil, err
	}
	return t.f.tables[t.fam].clone(), nil
}

func (t fakeTable) do(ctx context.Context, o op) (bool, error) {
	if err := deadline.Ended(ctx, "changing %s filter table: %s", t.name(), o); err != nil {
		return false, err
	}
	if t.f.Fail != nil {
		if err := t.f.Fail(t.fam, o.String()); err != nil {
			return false, err
		}
	}
	err := t.f.tables[t.fam].apply(&o)
	if errors.Is(err, errGone) && (o.kind == opDelete || o.kind == opDelChain) || errors.Is(err, errExists) {
		return false, nil
	}
	return err == nil, err
}
