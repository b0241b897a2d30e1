#!/usr/bin/env bash
# Fault test: a rank is killed with SIGKILL in the middle of a 3-rank sweep
# (mpirun then stops the others). The rerun with --resume completes only the
# missing units; every unit finished before the kill is byte-identical
# afterwards, and the whole run equals an uninterrupted 1-rank run. Twice:
#  1. the stand-in's own hook kills the rank running a chosen unit half-way
#     through writing its maps file (only with --stage-mock);
#  2. the test kills a rank from outside once a third of the units are done
#     (any stage).
# Arguments: DEMO_DIR MPIRUN. The unit stage is $STAGE (see test_dist_run.sh).
set -euo pipefail
demo=$1
mpirun="$2 --allow-run-as-root --oversubscribe"
ds=$(basename "$demo")
bin=$SNARM_BIN
STAGE=${SNARM_TEST_STAGE---stage-mock}
work=$(mktemp -d "${TMPDIR:-/tmp}/snarm-dist-fault-XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0
check() {
    local what=$1
    shift
    if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fails=$((fails + 1)); fi
}

run=$work/run
cat >"$work/exp.yaml" <<EOF
run:
  name: dist-fault
  out_dir: $run
data:
  roots: [$demo]
sweep:
  settings: [single, multi, cross, fewshot]
  methods: [snarm, patchcore]
  seeds: [0, 1]
  fewshot_k: 3
  grid:
    bank.knn_k: [1, 3]
EOF
printf '%s\n' "${SNARM_TEST_YAML_EXTRA:-}" >>"$work/exp.yaml"
n_units=48
tree() { (cd "$1" && find . -type f ! -name index.tsv | LC_ALL=C sort | xargs sha1sum); }
done_units() {
    (cd "$run/units" && find . -name DONE -printf '%h\n' | sed 's#^\./##' | LC_ALL=C sort)
}
done_files() { # every file of the units listed in $1
    local u
    for u in $(cat "$1"); do (cd "$run/units/$u" && find . -type f | LC_ALL=C sort |
        xargs sha1sum | sed "s#^#$u #"); done
}
started() { grep -o 'unit [^ ]*: start' "$1" | sed 's/^unit //; s/: start$//'; }
sweep() { $mpirun -n 3 "$bin" run "$work/exp.yaml" $STAGE --progress 0 "$@"; }

# The uninterrupted reference.
"$bin" run "$work/exp.yaml" $STAGE --progress 0 >"$work/ref.out" 2>&1
tree "$run" >"$work/ref.sum"
rm -rf "$run"

# After a killed sweep (log $1): what was finished, then the rerun.
resume_and_check() {
    local tag=$1 n_before
    done_units >"$work/$tag.before"
    n_before=$(wc -l <"$work/$tag.before")
    echo "$tag: units finished before the kill: $n_before of $n_units"
    check "$tag: the kill came mid-sweep" [ "$n_before" -gt 0 -a "$n_before" -lt $n_units ]
    done_files "$work/$tag.before" >"$work/$tag.before.sum"

    local st=0
    sweep --resume >"$work/$tag.rerun.out" 2>"$work/$tag.rerun.err" || st=$?
    check "$tag: the rerun succeeds" [ $st = 0 ]
    check "$tag: the rerun runs only the missing units" \
        grep -q "$n_before already done, $((n_units - n_before)) done now" \
        "$work/$tag.rerun.out"
    started "$work/$tag.rerun.err" >"$work/$tag.rerun.list"
    check "$tag: no finished unit is started again" bash -c \
        "! grep -qxF -f '$work/$tag.before' '$work/$tag.rerun.list'"
    check "$tag: finished units are byte-identical after the rerun" \
        cmp "$work/$tag.before.sum" <(done_files "$work/$tag.before")
    check "$tag: the whole run equals the uninterrupted one" \
        cmp "$work/ref.sum" <(tree "$run")
}

# 1. The stand-in kills the rank running the victim, mid-write. Single-class
# SNARM units are handed out after the longer cross and multi ones and
# before PatchCore's, so this is mid-sweep.
if [ "$STAGE" = --stage-mock ]; then
    victim=$ds/single/weave/snarm/seed1/g0
    st=0
    SNARM_MOCK_SLEEP_MS=60 SNARM_MOCK_KILL=$victim timeout 120 \
        $mpirun -n 3 "$bin" run "$work/exp.yaml" $STAGE --progress 0 \
        >"$work/hook.out" 2>"$work/hook.err" || st=$?
    check "hook: the killed sweep fails" [ $st != 0 -a $st != 124 ]
    check "hook: the victim was killed" grep -q "killing this rank" "$work/hook.err"
    check "hook: the victim has no DONE marker" [ ! -e "$run/units/$victim/DONE" ]
    check "hook: the victim left a partial maps file" [ -s "$run/units/$victim/maps.h5" ]
    resume_and_check hook
    check "hook: the victim is redone" grep -q "unit $victim: to redo" \
        "$work/hook.rerun.err"
    rm -rf "$run"
fi

# 2. SIGKILL from outside to one rank (a child of mpirun) once a third of
# the units are done.
export SNARM_MOCK_SLEEP_MS=60
sweep >"$work/ext.out" 2>"$work/ext.err" &
mpi=$!
for _ in $(seq 1 600); do
    [ "$(find "$run/units" -name DONE 2>/dev/null | wc -l)" -ge $((n_units / 3)) ] && break
    kill -0 $mpi 2>/dev/null || break
    sleep 0.05
done
rank=$(pgrep -P $mpi | tail -n 1 || true)
[ -n "$rank" ] && kill -9 "$rank"
st=0
wait $mpi || st=$?
# mpirun can return while the surviving ranks are still being torn down and
# one of them may yet finish a unit: wait until none is left before counting.
for _ in $(seq 1 200); do
    pgrep -f "snarm run $work/exp.yaml" >/dev/null || break
    sleep 0.05
done
pkill -9 -f "snarm run $work/exp.yaml" 2>/dev/null || true
unset SNARM_MOCK_SLEEP_MS
check "external: a rank was killed and the sweep failed" [ -n "$rank" -a $st != 0 ]
resume_and_check external

echo "test_dist_fault: $fails failed"
[ $fails = 0 ]
