package firewall

// The plan applied to tables: one read, plan, change and verify loop over
// the table interface, shared by the real firewall (iptables) and the Fake,
// so that both decide alike and their messages cannot drift apart.

import (
	"context"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// table is one family's filter table: the kernel's, reached through
// iptables, or the Fake's in memory.
type table interface {
	// name says which, e.g. "ip6tables-nft"; it prefixes changes and errors.
	name() string
	// read returns the whole table (one `iptables -S`).
	read(ctx context.Context) (*ruleset, error)
	// do makes one change. It reports false, not an error, when the change
	// was already made: a chain that already exists, a rule already gone.
	do(ctx context.Context, o op) (bool, error)
}

// batcher is a table that can make several changes in one atomic step.
type batcher interface {
	batch(ctx context.Context, ops []op) error
}

// ensureTables makes each table hold virtbridge's rules for bridges: one
// read per table, then only the changes plan asks for. Every change made
// pushes its undo on rv. It returns the changes and the tables changed.
// The undo steps run with ctx's deadline but not its cancellation: a run
// stopped midway still takes its changes back.
func ensureTables(ctx context.Context, ts []table, bridges []string, rv *revert.Reverter) ([]change.Change, []table, error) {
	var cs []change.Change
	var changed []table
	for _, t := range ts {
		cur, err := t.read(ctx)
		if err != nil {
			return cs, changed, err
		}
		ops, err := plan(cur, bridges)
		if err != nil {
			return cs, changed, fmt.Errorf("%s: %w", t.name(), err)
		}
		if len(ops) > 0 {
			changed = append(changed, t)
		}
		// One atomic iptables-restore for the whole change set when the
		// table can; the op-by-op path below handles what it refuses
		// (a chain made meanwhile, a rule already gone).
		if b, ok := t.(batcher); ok && len(ops) > 1 && b.batch(ctx, ops) == nil {
			undo := make([]op, len(ops))
			for i, o := range ops {
				undo[len(ops)-1-i] = o.undo()
				cs = append(cs, changeOf(t.name(), o))
			}
			t, b := t, b
			rv.Add(func() error {
				uctx, cancel := deadline.Uncancelled(ctx)
				defer cancel()
				if err := b.batch(uctx, undo); err != nil {
					return fmt.Errorf("undoing in %s filter table: %w", t.name(), err)
				}
				return nil
			})
			continue
		}
		for _, o := range ops {
			done, err := t.do(ctx, o)
			if err != nil {
				return cs, changed, fmt.Errorf("changing %s filter table: %s: %w", t.name(), o, err)
			}
			if !done {
				continue
			}
			t, u := t, o.undo()
			rv.Add(func() error {
				uctx, cancel := deadline.Uncancelled(ctx)
				defer cancel()
				if _, err := t.do(uctx, u); err != nil {
					return fmt.Errorf("undoing in %s filter table: %s: %w", t.name(), u, err)
				}
				return nil
			})
			cs = append(cs, changeOf(t.name(), o))
		}
	}
	return cs, changed, nil
}

// verifyTables reads each table back and fails if it still differs.
func verifyTables(ctx context.Context, ts []table, bridges []string) error {
	for _, t := range ts {
		cur, err := t.read(ctx)
		if err != nil {
			return err
		}
		ops, err := plan(cur, bridges)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name(), err)
		}
		if len(ops) > 0 {
			return fmt.Errorf("%s filter table still differs after the changes (changed concurrently?): would %s", t.name(), describe(ops))
		}
	}
	return nil
}

// checkTables lists what differs, changing nothing.
func checkTables(ctx context.Context, ts []table, bridges []string) ([]string, error) {
	out := []string{}
	for _, t := range ts {
		cur, err := t.read(ctx)
		if err != nil {
			return out, err
		}
		ops, err := plan(cur, bridges)
		if err != nil {
			return out, fmt.Errorf("%s: %w", t.name(), err)
		}
		out = append(out, problems(t.name(), ops)...)
	}
	return out, nil
}

func changeOf(name string, o op) change.Change {
	obj := name + " filter " + o.chain
	switch o.kind {
	case opNewChain:
		return change.Change{Kind: change.ChainCreated, Object: obj}
	case opDelChain:
		return change.Change{Kind: change.ChainRemoved, Object: obj}
	case opDelete:
		return change.Change{Kind: change.RuleRemoved, Object: obj, Before: fmt.Sprintf("-A %s %s (was rule %d)", o.chain, o.spec, o.pos)}
	}
	return change.Change{Kind: change.RuleAdded, Object: obj, After: o.String()}
}
