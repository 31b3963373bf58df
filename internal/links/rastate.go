package links

// RAState is what a link does with IPv6 router advertisements, for
// doctor: its settings and what it learnt from them.
type RAState struct {
	// AcceptRA and Forwarding are net.ipv6.conf.LINK.accept_ra and
	// .forwarding; IPv6 is false when the link has no IPv6 (then both
	// are 0).
	AcceptRA, Forwarding int
	IPv6                 bool
	// Learnt lists the addresses and routes the link learnt from
	// advertisements ("address 2001:db8::5/64", "route default via
	// fe80::1 proto ra metric 1024 expires 1790s").
	Learnt []string
}

// Accepts reports whether the kernel acts on advertisements received on
// the link: accept_ra 2, or 1 without forwarding.
func (s RAState) Accepts() bool {
	return s.AcceptRA == 2 || s.AcceptRA == 1 && s.Forwarding == 0
}
