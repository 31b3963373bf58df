package firewall

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ReadForward reads, over netlink in network namespace netnsPath ("" is
// the process's own), every base chain on the forward hook of the ip, ip6
// and inet families that is not iptables-nft's (those are read through
// iptables), with its rules and the regular chains they jump or go to. No
// nft process runs. The chains come in hook priority order.
func ReadForward(netnsPath string) ([]NativeChain, error) {
	conn, done, err := nftConn(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("reading nftables forward chains: %w", err)
	}
	defer done()
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("reading nftables forward chains: %w", err)
	}
	var out []NativeChain
	for _, ch := range chains {
		fam := familyName(ch.Table.Family)
		if fam == "" || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Priority == nil {
			continue
		}
		owner := OwnerOf(fam, ch.Table.Name)
		if owner == OwnerIptables {
			continue
		}
		nc := NativeChain{Family: fam, Table: ch.Table.Name, Chain: ch.Name, Priority: int32(*ch.Priority),
			Policy: "accept", Owner: owner, Chains: map[string][]NativeRule{}}
		if ch.Policy != nil && *ch.Policy == nftables.ChainPolicyDrop {
			nc.Policy = "drop"
		}
		if nc.Rules, err = readRules(conn, ch.Table, ch.Name); err != nil {
			return nil, err
		}
		if err := readTargets(conn, ch.Table, &nc, nc.Rules); err != nil {
			return nil, err
		}
		out = append(out, nc)
	}
	slices.SortStableFunc(out, func(a, b NativeChain) int { return int(a.Priority) - int(b.Priority) })
	return out, nil
}

// readTargets reads the chains rules jump or go to, once each.
func readTargets(conn *nftables.Conn, t *nftables.Table, nc *NativeChain, rules []NativeRule) error {
	for _, r := range rules {
		if r.Target == "" {
			continue
		}
		if _, ok := nc.Chains[r.Target]; ok {
			continue
		}
		sub, err := readRules(conn, t, r.Target)
		if err != nil {
			return err
		}
		nc.Chains[r.Target] = sub
		if err := readTargets(conn, t, nc, sub); err != nil {
			return err
		}
	}
	return nil
}

func readRules(conn *nftables.Conn, t *nftables.Table, chain string) ([]NativeRule, error) {
	rs, err := conn.GetRules(t, &nftables.Chain{Name: chain, Table: t})
	if err != nil {
		return nil, fmt.Errorf("reading nftables chain %s %s %s: %w", familyName(t.Family), t.Name, chain, err)
	}
	out := make([]NativeRule, 0, len(rs))
	for _, r := range rs {
		out = append(out, ruleOf(r))
	}
	return out, nil
}

// familyName names the families whose forward hook bridged frames cross
// (with br_netfilter); "" for the others.
func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return ""
}

// nftConn opens a netlink connection to nf_tables in network namespace
// netnsPath ("" is the process's own); done closes what it opened.
func nftConn(netnsPath string) (conn *nftables.Conn, done func(), err error) {
	var opts []nftables.ConnOption
	done = func() {}
	if netnsPath != "" {
		f, err := os.Open(netnsPath)
		if err != nil {
			return nil, nil, fmt.Errorf("opening network namespace: %w", err)
		}
		done = func() { f.Close() }
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	if conn, err = nftables.New(opts...); err != nil {
		done()
		return nil, nil, err
	}
	return conn, done, nil
}

// applyNative makes ops in one nf_tables transaction: all or nothing.
func applyNative(netnsPath string, ops []nativeOp) error {
	conn, done, err := nftConn(netnsPath)
	if err != nil {
		return fmt.Errorf("changing nftables forward chains: %w", err)
	}
	defer done()
	for _, o := range ops {
		t := &nftables.Table{Name: o.Chain.Table, Family: familyOf(o.Chain.Family)}
		ch := &nftables.Chain{Name: o.Chain.Chain, Table: t}
		if o.Delete {
			if err := conn.DelRule(&nftables.Rule{Table: t, Chain: ch, Handle: o.Handle}); err != nil {
				return fmt.Errorf("changing nftables forward chains: %s: %w", o, err)
			}
			continue
		}
		conn.InsertRule(&nftables.Rule{Table: t, Chain: ch, Exprs: acceptExprs(o.Bridge),
			UserData: userdata.AppendString(nil, userdata.TypeComment, nativeComment(o.Bridge))})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("changing nftables forward chains (%s): %w", describeNative(ops), err)
	}
	return nil
}

// acceptExprs is `iifname BR oifname BR accept`, as nft encodes it.
func acceptExprs(br string) []expr.Any {
	name := make([]byte, unix.IFNAMSIZ)
	copy(name, br)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
}

func familyOf(name string) nftables.TableFamily {
	switch name {
	case "ip":
		return nftables.TableFamilyIPv4
	case "ip6":
		return nftables.TableFamilyIPv6
	}
	return nftables.TableFamilyINet
}

func describeNative(ops []nativeOp) string {
	s := make([]string, 0, len(ops))
	for _, o := range ops {
		s = append(s, o.String())
	}
	return strings.Join(s, "; ")
}
