# run-tests.sh: /tests/run.sh in the test VM (hack/vm/test-vm.sh). Runs
# every package's test binary from its own directory (where its testdata
# is), reports "@@TEMPER-VM-<nonce> PKG <name> rc=<status> s=<seconds>" per
# package and exits non-zero when any failed.
export TEMPER_VM=1 TEMPER_VM_SCHEDULERS=/scx
args=$(cat /tests/test-args)
rc=0
for name in $(cat /tests/packages); do
	echo "=== package $name"
	t0=$(cut -d' ' -f1 /proc/uptime)
	# shellcheck disable=SC2086 # args are separate flags
	(cd "/tests/$name" && ./pkg.test -test.v -test.count=1 -test.timeout=300s $args)
	prc=$?
	t1=$(cut -d' ' -f1 /proc/uptime)
	printf "\n"; echo "@@TEMPER-VM-$TEMPER_VM_NONCE PKG $name rc=$prc s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')"
	[ $prc = 0 ] || rc=1
	# A package must leave no scheduler attached for the next one.
	st=$(cat /sys/kernel/sched_ext/state)
	if [ "$st" != disabled ]; then
		echo "run-tests: $name left sched_ext $st (ops $(cat /sys/kernel/sched_ext/root/ops 2>/dev/null))"
		rc=1
	fi
done
dmesg | grep -i -e sched_ext -e 'BUG\|Oops\|WARNING' | sed 's/^/dmesg: /'
exit $rc
