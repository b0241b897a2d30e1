#!/usr/bin/env bash
# `snarm run` end to end on the built-in demo data, under mpirun:
#  - a 3-rank sweep runs every unit exactly once and writes the same bytes as
#    a 1-rank run (unit folders, tables, config);
#  - a rerun skips what is done; a corrupt or unfinished unit is redone;
#  - a failing unit is recorded and does not stop the sweep;
#  - job-array shards plus --collect-only give the same run folder;
#  - data-parallel groups (sweep.group_size) run and must divide the ranks.
# Arguments: DEMO_DIR MPIRUN. The unit stage is $STAGE: the stand-in
# (--stage-mock) by default; SNARM_TEST_STAGE="" runs the real pipeline, with
# SNARM_TEST_YAML_EXTRA (more YAML sections, e.g. a small backbone and short
# training) appended to the experiment.
set -euo pipefail
demo=$1
mpirun="$2 --allow-run-as-root --oversubscribe"
ds=$(basename "$demo") # the dataset's name: the first part of unit ids
bin=$SNARM_BIN
STAGE=${SNARM_TEST_STAGE---stage-mock}
work=$(mktemp -d "${TMPDIR:-/tmp}/snarm-dist-run-XXXXXX")
trap 'rm -rf "$work"' EXIT
fails=0
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fails=$((fails + 1)); fi
}

run=$work/run
cat >"$work/exp.yaml" <<EOF
run:
  name: dist-test
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
n_units=48 # (2 single + 1 multi + 2 cross + 1 fewshot) x 2 methods x 2 seeds x 2

# Every file of a run folder but the index (which holds timings), with hashes.
tree() { (cd "$1" && find . -type f ! -name index.tsv | LC_ALL=C sort | xargs sha1sum); }
snarm_run() { # snarm_run NRANKS LOG ARGS...
    local n=$1 log=$2
    shift 2
    $mpirun -n "$n" "$bin" run "$work/exp.yaml" $STAGE --progress 0 "$@" \
        >"$work/$log.out" 2>"$work/$log.err"
}
starts() { grep -o "unit [^ ]*: start" "$work/$1.err" | sort; }
status() { # status COMMAND...: run it, leave its exit status in $st
    if "$@"; then st=0; else st=$?; fi
}

# The plan before anything ran.
"$bin" run "$work/exp.yaml" --dry-run >"$work/dry.out" 2>&1
check "dry run lists $n_units pending units" \
    [ "$(grep -c '^pending ' "$work/dry.out")" = $n_units ]
check "dry run prints the resolved configuration" grep -q "knn_k: 3" "$work/dry.out"
check "dry run writes nothing" [ ! -e "$run" ]

# One rank: the reference.
check "1-rank sweep succeeds" snarm_run 1 one
check "1-rank sweep runs every unit once" \
    [ "$(starts one | uniq | wc -l)" = $n_units -a "$(starts one | wc -l)" = $n_units ]
check "index: all done" [ "$(grep -c $'\tdone\t' "$run/index.tsv")" = $n_units ]
check "four tables (one per setting)" [ "$(ls "$run"/tables/*.tsv | wc -l)" = 4 ]
check "tables complete" bash -c "! grep -q missing '$run'/tables/*.tsv"
check "multi table: 2 classes + mean per block" \
    [ "$(grep -c $'^snarm\tg1\t0\t' "$run/tables/${ds}_multi.tsv")" = 3 ]
check "few-shot units record k shots per class" \
    [ "$(grep -c '^bank' "$run/units/$ds/fewshot/all/snarm/seed1/g0/images.tsv")" = 6 ]
tree "$run" >"$work/ref.sum"
mv "$run" "$work/ref"

# Three ranks, dynamic hand-out: the same bytes.
export SNARM_MOCK_SLEEP_MS=20 # units overlap, so every group gets some
status snarm_run 3 three
unset SNARM_MOCK_SLEEP_MS
check "3-rank sweep succeeds" [ $st = 0 ]
check "3-rank sweep runs every unit exactly once" \
    [ "$(starts three | uniq | wc -l)" = $n_units -a "$(starts three | wc -l)" = $n_units ]
check "3-rank sweep used every group" \
    [ "$(awk -F'\t' 'NR > 2 { print $9 }' "$run/index.tsv" | sort -u | wc -l)" = 3 ]
tree "$run" >"$work/three.sum"
check "3-rank outputs are identical to the 1-rank run" cmp "$work/ref.sum" "$work/three.sum"

# Reruns: nothing to do; refused without --resume.
check "rerun with --resume does nothing" snarm_run 3 again --resume
check "rerun reports $n_units already done" \
    grep -q "$n_units already done, 0 done now" "$work/again.out"
check "outputs untouched by the rerun" cmp "$work/ref.sum" <(tree "$run")
status snarm_run 1 refused
check "rerun without --resume is refused" [ $st = 1 ]
check "the refusal says what to do" grep -q "pass --resume" "$work/refused.err"
check "index keeps the times of units done before" \
    [ "$(awk -F'\t' 'NR > 2 && $10 == "-"' "$run/index.tsv" | wc -l)" = 0 ]
check "other threads and log level still resume" \
    snarm_run 1 threads --resume --set run.threads=1 --set run.log=warn
status snarm_run 1 changed --resume --set train.lr=0.5
check "a changed experiment is refused" [ $st = 1 ]
check "the refusal names the key and both values" \
    grep -q "train.lr was '0.001' and is now '0.5'" "$work/changed.err"
status "$bin" run "$work/exp.yaml" --dry-run --set train.lr=0.5 >"$work/drychanged.out" 2>&1
check "a dry run of another experiment in the folder is refused" [ $st = 1 ]
tables_before=$(cd "$run/tables" && ls -l --time-style=+%s.%N | sha1sum)
"$bin" run "$work/exp.yaml" --collect-only --dry-run >/dev/null 2>&1
check "collect-only with dry-run writes no tables" \
    [ "$(cd "$run/tables" && ls -l --time-style=+%s.%N | sha1sum)" = "$tables_before" ]

# A flipped byte and a missing DONE marker: exactly those two are redone.
u1=$run/units/$ds/single/disc/snarm/seed0/g1
u2=$run/units/$ds/cross/weave/patchcore/seed1/g0
printf 'X' | dd of="$u1/maps.h5" bs=1 seek=600 conv=notrunc status=none
rm "$u2/DONE"
check "rerun after damage succeeds" snarm_run 3 repair --resume
check "only the two damaged units are redone" \
    grep -q "46 already done, 2 done now" "$work/repair.out"
check "repaired outputs are identical" cmp "$work/ref.sum" <(tree "$run")

# A failing unit is recorded, the others finish, the exit status says so.
u3=$ds/multi/all/snarm/seed1/g1
rm -r "$run/units/$u3"
export SNARM_MOCK_FAIL=$u3
status snarm_run 3 fail --resume
unset SNARM_MOCK_FAIL
check "a failed unit gives exit status 1" [ $st = 1 ]
check "the failure is recorded" grep -q "failing on request" "$run/units/$u3/FAILED"
check "the index shows it failed" grep -q "^$u3"$'\t.*\tfailed\t' "$run/index.tsv"
check "a later rerun completes it" snarm_run 1 refail --resume
check "completed outputs are identical" cmp "$work/ref.sum" <(tree "$run")

# Shards of a job array into one folder, then the tables on their own.
rm -rf "$run"
check "shard 0/2" snarm_run 1 shard0 --shard 0/2
check "shard 1/2" snarm_run 2 shard1 --shard 1/2
check "shards leave the tables to --collect-only" [ ! -e "$run/tables" ]
status "$bin" run "$work/exp.yaml" --collect-only >"$work/collect.out" 2>&1
check "collect-only" [ $st = 0 ]
check "sharded run is identical" cmp "$work/ref.sum" <(tree "$run")

# Data-parallel groups of two ranks.
rm -rf "$run"
status snarm_run 3 bad_group --set sweep.group_size=2
check "a group size that does not divide the ranks is refused" [ $st = 1 ]
check "the refusal names the group size" grep -q "group_size = 2 does not divide" \
    "$work/bad_group.err"
rm -rf "$run"
check "groups of two ranks run the sweep" snarm_run 4 groups --set sweep.group_size=2
check "both groups ran units" \
    [ "$(awk -F'\t' 'NR > 2 { print $9 }' "$run/index.tsv" | sort -u | tr '\n' ' ')" = "0 1 " ]
check "every unit done by the groups" grep -q "0 already done, $n_units done now" \
    "$work/groups.out"

echo "test_dist_run: $fails failed"
[ $fails = 0 ]
