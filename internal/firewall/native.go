package firewall

// The forward path in native nf_tables tables: what a bridged frame of a
// managed bridge meets in every base chain on the forward hook of the ip,
// ip6 and inet families. With br_netfilter and bridge-nf-call-iptables=1
// every bridged frame passes every such chain, and an accept ends only its
// own base chain while a drop anywhere is final, so each chain must accept
// the frame (or let it fall through to an accept policy).
//
// This file is pure: the model, the owners and the verdict.
// nftexpr_linux.go translates github.com/google/nftables rules into the
// model; native_linux.go reads the kernel's tables.

import (
	"fmt"
	"strings"
)

// Owner names who keeps a native table.
type Owner string

// The owners virtbridge knows by their tables.
const (
	OwnerFirewalld Owner = "firewalld"
	OwnerDocker    Owner = "docker"
	OwnerLibvirt   Owner = "libvirt"
	OwnerIncus     Owner = "incus"
	OwnerIptables  Owner = "iptables-nft" // read through iptables, not natively
	OwnerAdmin     Owner = "administrator"
)

// OwnerOf returns who keeps table name of family fam ("ip", "ip6",
// "inet"): firewalld (inet firewalld), Docker (ip/ip6 docker-bridges),
// libvirt (libvirt_network), Incus (inet incus), iptables-nft (its ip/ip6
// tables filter, nat, mangle, raw, security), else the administrator.
func OwnerOf(fam, name string) Owner {
	switch {
	case fam == "inet" && name == "firewalld":
		return OwnerFirewalld
	case (fam == "ip" || fam == "ip6") && name == "docker-bridges":
		return OwnerDocker
	case name == "libvirt_network":
		return OwnerLibvirt
	case fam == "inet" && name == "incus":
		return OwnerIncus
	case (fam == "ip" || fam == "ip6") && strings.Contains(" filter nat mangle raw security ", " "+name+" "):
		return OwnerIptables
	}
	return OwnerAdmin
}

// NativeChain is one base chain on the forward hook of a native table,
// with the regular chains its rules jump or go to.
type NativeChain struct {
	Family   string // ip, ip6 or inet
	Table    string
	Chain    string
	Priority int32
	Policy   string // accept or drop
	Owner    Owner
	Rules    []NativeRule
	// Chains holds the rules of the regular chains of the same table that
	// rules here jump or go to (transitively), by name.
	Chains map[string][]NativeRule
}

// Name renders the chain as nft names it, e.g. "inet filter forward".
func (c NativeChain) Name() string { return c.Family + " " + c.Table + " " + c.Chain }

// NativeRule is one rule, reduced to what decides a bridged frame's fate:
// its conditions on the in- and out-interface names, whether it has other
// conditions, and its verdict.
type NativeRule struct {
	Handle  uint64
	Conds   []IfCond
	Other   bool   // a condition or statement this model cannot judge
	Verdict string // accept, drop, reject, jump, goto, return, "" (none), or "unknown"
	Target  string // jump or goto target
	Comment string // the rule's comment (userdata), "" when none
}

// IfCond is a condition on iifname or oifname: equal (or not) to Name, or
// to any name starting with Name when Prefix (nft's "br*").
type IfCond struct {
	Out    bool // oifname; false: iifname
	Neq    bool
	Prefix bool
	Name   string
}

// String renders r roughly as nft does, e.g.
// `iifname "br0" oifname "br0" accept`.
func (r NativeRule) String() string {
	var p []string
	for _, c := range r.Conds {
		s := "iifname"
		if c.Out {
			s = "oifname"
		}
		if c.Neq {
			s += " !="
		}
		n := c.Name
		if c.Prefix {
			n += "*"
		}
		p = append(p, s+" "+fmt.Sprintf("%q", n))
	}
	if r.Other {
		p = append(p, "…")
	}
	v := r.Verdict
	if v == "" {
		v = "(no verdict)"
	}
	if r.Target != "" {
		v += " " + r.Target
	}
	p = append(p, v)
	if r.Comment != "" {
		p = append(p, fmt.Sprintf("comment %q", r.Comment))
	}
	return strings.Join(p, " ")
}

// match says whether r's conditions hold for a frame bridged on br (in-
// and out-interface br): 1 always, 0 never, -1 maybe.
func (r NativeRule) match(br string) int {
	m := 1
	for _, c := range r.Conds {
		eq := c.Name == br || c.Prefix && strings.HasPrefix(br, c.Name)
		if eq == c.Neq {
			return 0
		}
	}
	if r.Other {
		m = -1
	}
	return m
}

// outcome is what a chain does to a frame.
type outcome int

const (
	passes  outcome = iota // falls off the end or returns
	accepts                // an accept that surely applies
	drops                  // may be dropped or rejected
)

// Verdict is what a native base chain does to the frames of one bridge.
type Verdict struct {
	Chain NativeChain
	// Drops is true when the chain may drop or reject the frame before
	// accepting it. Conservative: a rule this model cannot judge counts.
	Drops bool
	// At names the rule or the policy that may drop it, e.g.
	// `rule 7 (handle 7): ct state invalid drop` or "policy drop".
	At string
}

// Judge says whether base chain c may drop a frame bridged on br before
// accepting it. It is pure.
func Judge(c NativeChain, br string) Verdict {
	o, at := walk(c, c.Chain, c.Rules, br, 0)
	v := Verdict{Chain: c, Drops: o == drops, At: at}
	if o == passes && c.Policy != "accept" {
		v.Drops, v.At = true, "policy "+c.Policy
	}
	return v
}

// maxDepth bounds jumps: the kernel refuses loops, but a model of a
// deeper ruleset is not worth judging.
const maxDepth = 16

// walk evaluates rules of chain name for br. Rules that may or may not
// match count both ways: a drop that may apply is a drop; an accept that
// may apply lets evaluation go on (the worse of the two ways is what
// follows).
func walk(c NativeChain, name string, rules []NativeRule, br string, depth int) (outcome, string) {
	if depth > maxDepth {
		return drops, "jumps nested deeper than " + fmt.Sprint(maxDepth) + " in " + name
	}
	mayPass := false // a return that may apply was passed
	done := func(o outcome, at string) (outcome, string) {
		if o == accepts && mayPass {
			return passes, at
		}
		return o, at
	}
	for _, r := range rules {
		m := r.match(br)
		if m == 0 {
			continue
		}
		at := fmt.Sprintf("chain %s rule handle %d: %s", name, r.Handle, r)
		switch r.Verdict {
		case "":
		case "accept":
			if m == 1 {
				return done(accepts, at)
			}
		case "return":
			if m == 1 {
				return passes, at
			}
			mayPass = true
		case "jump", "goto":
			sub, ok := c.Chains[r.Target]
			if !ok {
				return drops, at + " (target not read)"
			}
			o, subAt := walk(c, r.Target, sub, br, depth+1)
			switch {
			case o == drops:
				return drops, subAt
			case m == 1 && o == accepts:
				return done(accepts, subAt)
			case r.Verdict == "goto" && o == passes:
				if m == 1 {
					return passes, subAt
				}
				mayPass = true
			}
		default: // drop, reject, unknown
			return drops, at
		}
	}
	return passes, ""
}
