#!/bin/sh
# Reference shell hook for the benchmarks (bench/cmd/vbbench): the job
# virtbridge's hook does at VM prepare, done the way the classic how-tos and
# blog posts do it, one command per step: `ip link show || ip link add`,
# `ip link set master`, move the addresses with `ip addr flush/add`,
# `sysctl -w`, `iptables -C || iptables -I`. It is a baseline to measure
# against, not something to install: it has no locking, no rollback, no
# journal, and it trusts its input.
#
# Installed as /etc/libvirt/hooks/qemu it is called as
#   qemu <domain> <op> <subop> <extra>   (domain XML on stdin)
#
# Managed bridges, as bridge:uplink words (empty uplink: isolated bridge).
# libvirtd scrubs the environment, so a real hook hard-codes this line;
# SHELL_HOOK_BRIDGES overrides it for the benchmarks.
BRIDGES=${SHELL_HOOK_BRIDGES:-"br-a:uplink0 br-b:"}

[ "$2" = prepare ] || exit 0

xml=$(cat)
for br in $(printf '%s\n' "$xml" | sed -n "s/.*<source bridge='\([^']*\)'.*/\1/p" | sort -u); do
	uplink=""
	managed=no
	for m in $BRIDGES; do
		if [ "${m%%:*}" = "$br" ]; then
			managed=yes
			uplink=${m#*:}
		fi
	done
	[ "$managed" = yes ] || continue

	if ! ip link show "$br" >/dev/null 2>&1; then
		ip link add "$br" type bridge stp_state 0 forward_delay 0 || exit 1
	fi
	ip link set "$br" up || exit 1

	[ -n "$uplink" ] || continue
	if ! ip link show "$uplink" | grep -q " master $br "; then
		# Remember the uplink's addresses and default routes, enslave it,
		# and put them on the bridge.
		addrs=$(ip -o addr show dev "$uplink" scope global | awk '{print $3, $4}')
		routes4=$(ip -4 route show default dev "$uplink")
		routes6=$(ip -6 route show default dev "$uplink")
		ip link set "$uplink" master "$br" || exit 1
		ip addr flush dev "$uplink" scope global
		printf '%s\n' "$addrs" | while read -r fam addr; do
			[ -n "$addr" ] || continue
			if [ "$fam" = inet6 ]; then
				ip -6 addr add "$addr" dev "$br" nodad
			else
				ip addr add "$addr" dev "$br"
			fi
		done
		printf '%s\n' "$routes4" | while read -r route; do
			[ -n "$route" ] || continue
			ip -4 route del $route dev "$uplink" 2>/dev/null
			ip -4 route replace $route dev "$br"
		done
		printf '%s\n' "$routes6" | while read -r route; do
			[ -n "$route" ] || continue
			ip -6 route del $route dev "$uplink" 2>/dev/null
			ip -6 route replace $route dev "$br"
		done
	fi
done

sysctl -qw net.ipv4.ip_forward=1 || exit 1
iptables -C FORWARD -m physdev --physdev-is-bridged -j ACCEPT 2>/dev/null ||
	iptables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT || exit 1
ip6tables -C FORWARD -m physdev --physdev-is-bridged -j ACCEPT 2>/dev/null ||
	ip6tables -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT || exit 1
exit 0
