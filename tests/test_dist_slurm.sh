#!/usr/bin/env bash
# Slurm end to end on a local one-node cluster (tests/slurm_local.sh): a tiny
# sweep of the demo data as one 2-task job (slurm/sweep.sbatch, srun PMIx),
# then as a 2-task job array with a dependent metrics job (slurm/submit.sh);
# both must finish every unit and write the same results tables. Skips (77)
# where Slurm or munge is not installed.
# Arguments: DEMO_DIR. The unit stage is $STAGE (see test_dist_run.sh).
set -euo pipefail
demo=$1
bin=$SNARM_BIN
src=$SNARM_SOURCE
STAGE=${SNARM_TEST_STAGE---stage-mock}
for tool in sbatch slurmctld slurmd munged; do
    if ! command -v $tool >/dev/null 2>&1; then
        echo "test_dist_slurm: $tool not found (Debian: slurm-wlm munge libpmix-dev);" \
            "skipping"
        exit 77
    fi
done
work=$(mktemp -d "${TMPDIR:-/tmp}/snarm-dist-slurm-XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

cat >"$work/exp.yaml" <<YAML
run:
  name: dist-slurm
  out_dir: $work/run
data:
  roots: [$demo]
sweep:
  settings: [single, multi, cross]
  methods: [snarm, patchcore]
  seeds: [0]
YAML
printf '%s\n' "${SNARM_TEST_YAML_EXTRA:-}" >>"$work/exp.yaml"
n_units=10 # (2 single + 1 multi + 2 cross) x 2 methods

# What runs inside the cluster: both submissions, each waited for.
cat >"$work/jobs.sh" <<JOBS
set -euo pipefail
cd "$work"
export SNARM=$bin OMP_NUM_THREADS=1
timeout 180 sbatch --wait --parsable -n 2 --overcommit -o "$work/sweep.log" \\
    "$src/slurm/sweep.sbatch" "$work/exp.yaml" $STAGE --progress 0 \\
    --set run.out_dir=$work/one_job
SNARM_WAIT=1 SNARM_SBATCH_ARGS="--overcommit -o $work/%x-%A_%a.log" timeout 180 \\
    "$src/slurm/submit.sh" "$work/exp.yaml" 2 $STAGE --progress 0 \\
    --set run.out_dir=$work/array >"$work/ids"
JOBS
status=0
bash "$src/tests/slurm_local.sh" bash "$work/jobs.sh" || status=$?
[ $status = 77 ] && exit 77

fails=0
check() {
    local what=$1
    shift
    if "$@"; then echo "ok    $what"; else echo "FAIL  $what"; fails=$((fails + 1)); fi
}
check "both submissions finished" [ $status = 0 ]
# srun can exit 0 without starting a task: the program's own lines decide.
check "the 2-task job ran the sweep" \
    grep -q "snarm run: $n_units units, $n_units in this shard: 0 already done" \
    "$work/sweep.log"
check "the 2-task job used both ranks" \
    [ "$(awk -F'\t' 'NR > 2 { print $9 }' "$work/one_job/index.tsv" | sort -u | wc -l)" = 2 ]
check "every unit done by the job" \
    [ "$(grep -c $'\tdone\t' "$work/one_job/index.tsv")" = $n_units ]
check "array task logs" [ "$(ls "$work"/snarm-shard-*.log 2>/dev/null | wc -l)" = 2 ]
check "every unit done by the array" \
    [ "$(find "$work/array/units" -name DONE | wc -l)" = $n_units ]
check "the metrics job wrote the tables" grep -q "snarm run: tables in" \
    "$work"/snarm-metrics-*.log
for t in single multi cross; do
    f=$(basename "$demo")_$t.tsv
    check "$t table complete" bash -c "[ -s '$work/array/tables/$f' ] &&
        ! grep -q missing '$work/array/tables/$f'"
    check "$t table: job array = one job" cmp "$work/one_job/tables/$f" \
        "$work/array/tables/$f"
done
if [ $fails != 0 ]; then
    tail -n 20 "$work"/*.log || true
fi
echo "test_dist_slurm: $fails failed"
[ $fails = 0 ]
