#!/bin/sh
# A fence agent for tests, speaking the fence-agents stdin protocol.
# It appends what it received on stdin to the file named by option
# "record", keeps the plug's power state in the file named by "state", and
# misbehaves on request via option "mode":
#   failoff  off fails (exit 1) and prints the password on stderr
#   lie      off exits 0 but leaves the state on
#   hang     every action starts a child and waits forever
input=$(cat)
opt() { printf '%s\n' "$input" | sed -n "s/^$1=//p" | head -n 1; }
record=$(opt record)
state=$(opt state)
mode=$(opt mode)
action=$(opt action)
printf '%s\n--\n' "$input" >> "$record"

if [ "$mode" = hang ]; then
	sleep 1000 &
	echo $! > "$record.child"
	wait
fi

case "$action" in
off)
	if [ "$mode" = failoff ]; then
		echo "login failed with password $(opt passwd)" >&2
		exit 1
	fi
	[ "$mode" = lie ] || echo off > "$state"
	exit 0
	;;
on)
	echo on > "$state"
	exit 0
	;;
status)
	case "$(cat "$state" 2>/dev/null)" in
	on) exit 0 ;;
	off) exit 2 ;;
	esac
	exit 1
	;;
esac
echo "unknown action $action" >&2
exit 1
