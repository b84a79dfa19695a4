#!/bin/bash
# The router note's story in network namespaces, as in the README: run as
# root after `cargo xtask build`. Uses documentation addresses only, never
# touches the clock (--no-clock-adjust, chronyd -x), removes everything on exit.
set -u
A=$(realpath "${NTP_AGENT_BIN:-$(dirname "$0")/../target/release/ntp-agent}")
D=$(mktemp -d /tmp/nf-demo.XXXX)
cleanup() { kill $(cat $D/*.pid 2>/dev/null) 2>/dev/null; sleep 0.5; nsenter --net=/var/run/netns/nf-demo-r $A detach --pin-dir /sys/fs/bpf/nf-demo >/dev/null 2>&1; ip netns del nf-demo-r 2>/dev/null; ip netns del nf-demo-o 2>/dev/null; rm -rf $D; }
trap cleanup EXIT
ip netns add nf-demo-r; ip netns add nf-demo-o
ip link add wan0 netns nf-demo-r type veth peer name ext0 netns nf-demo-o
for n in r o; do ip -n nf-demo-$n link set lo up; done
ip -n nf-demo-r link set wan0 up; ip -n nf-demo-o link set ext0 up
ip -n nf-demo-r addr add 192.0.2.1/24 dev wan0
ip -n nf-demo-o addr add 192.0.2.10/24 dev ext0; ip -n nf-demo-o addr add 192.0.2.99/24 dev ext0
ip -n nf-demo-o route add 192.0.2.1/32 dev ext0 src 192.0.2.99
cat > $D/chrony.conf <<C
local stratum 4
allow all
bindaddress 192.0.2.10
cmdport 0
pidfile $D/chronyd.pid
driftfile $D/chrony.drift
C
nsenter --net=/var/run/netns/nf-demo-o chronyd -x -d -u root -f $D/chrony.conf > $D/chrony.log 2>&1 & echo $! > $D/c.pid
sleep 1
R() { echo "router# $*"; nsenter --net=/var/run/netns/nf-demo-r "$@"; }
O() { echo "outside# $*"; nsenter --net=/var/run/netns/nf-demo-o "$@"; }
nsenter --net=/var/run/netns/nf-demo-r $A run --iface wan0 --server 192.0.2.10 --mode client --no-clock-adjust --pin-dir /sys/fs/bpf/nf-demo --control-socket $D/agent.sock --drift-file $D/drift > $D/agent.log 2>&1 & echo $! > $D/a.pid
sleep 12
echo; R $A status --control-socket $D/agent.sock --pin-dir /sys/fs/bpf/nf-demo | sed -n '1,12p'
echo; O ntpdate -q 192.0.2.1
echo; echo "outside# (UDP probe of 192.0.2.1 port 123, watching for any answer, NTP or ICMP)"
nsenter --net=/var/run/netns/nf-demo-o timeout 3 tcpdump -n -i ext0 -c 1 src 192.0.2.1 and dst 192.0.2.99 and \( udp or icmp \) > $D/tcpdump.out 2>/dev/null &
sleep 0.5; nsenter --net=/var/run/netns/nf-demo-o python3 -c "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('192.0.2.99',0)); s.sendto(b'x',('192.0.2.1',123))"; sleep 3
echo "UDP or ICMP from the router: $(grep -c " IP" $D/tcpdump.out) packets"
echo; R $A mode server --control-socket $D/agent.sock
O ntpdate -q 192.0.2.1
echo; R $A mode client --control-socket $D/agent.sock
O ntpdate -q 192.0.2.1
echo; R $A status --control-socket $D/agent.sock --pin-dir /sys/fs/bpf/nf-demo | sed -n '1,6p'
