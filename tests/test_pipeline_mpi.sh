#!/usr/bin/env bash
# The real pipeline under mpirun, on the built-in data at toy sizes, with
# every setting and both methods:
#  - 1 rank and 3 ranks (units handed out dynamically) write the same bytes;
#  - a rank killed with SIGKILL in the middle of a sweep: the rerun with
#    --resume runs only the missing units, and every unit finished before the
#    kill is byte-identical afterwards.
# Compared: every file of every unit folder and the tables, except
# timing.tsv (wall-clock seconds) and DONE (which lists timing.tsv's hash).
# Arguments: DEMO_DIR MPIEXEC.
set -uo pipefail
demo=$1
mpirun="$2 --allow-run-as-root --oversubscribe"
bin=${SNARM_BIN:?}
work=$(mktemp -d "${TMPDIR:-/tmp}/snarm-pipe-mpi-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
check() {
    local what=$1
    shift
    if "$@"; then pass=$((pass + 1)); echo "ok    $what"; else
        fail=$((fail + 1)); echo "FAIL  $what"; fi
}

exp() { # exp OUT_DIR: the experiment file
    cat <<EOF
run: {name: pipe-mpi, out_dir: $1, seed: 0}
data: {roots: [$demo], resize: 128, crop: 112}
backbone: {arch: vit_tiny_patch16, weights_missing: random, layers: [1, 2, 3, 4], groups: 2}
features: {grid: 14, pool_dim: 128, dim: 64, batch: 4}
bank: {coreset: 1500, proj_dim: 32}
decoder: {embed: 8, dilations: [1, 2]}
train: {steps: 6, batch: 4, cycle: 2, checkpoint_every: 3, log_every: 3, synth_per_image: 1}
predict: {smooth_sigma: 2, score_pool: 8, score_stride: 2}
sweep: {settings: [single, multi, cross, fewshot], methods: [snarm, patchcore], fewshot_k: 2}
EOF
}
n_units=12 # (2 single + 1 multi + 2 cross + 1 fewshot) x 2 methods

tree() { # the compared files of a run folder, with their hashes
    (cd "$1" && find units tables -type f ! -name timing.tsv ! -name DONE |
        LC_ALL=C sort | xargs sha1sum)
}
done_units() { find "$1/units" -name DONE | wc -l; }

# Every run uses the same folder (its path is part of the stored
# configuration); finished runs are moved aside for comparison.
run=$work/run
exp "$run" >"$work/exp.yaml"

# One rank: the reference.
check "1-rank sweep succeeds" $mpirun -n 1 "$bin" run "$work/exp.yaml" --progress 0 \
    >"$work/one.log" 2>&1
mv "$run" "$work/one"
check "1-rank: every unit done" [ "$(done_units "$work/one")" = $n_units ]
check "1-rank: every unit has maps and metrics" \
    [ "$(find "$work/one/units" -name metrics.csv | wc -l)" = $n_units ]

# Three ranks: the same bytes.
check "3-rank sweep succeeds" $mpirun -n 3 "$bin" run "$work/exp.yaml" --progress 0 \
    >"$work/three.log" 2>&1
mv "$run" "$work/three"
check "3-rank: every unit ran once" \
    [ "$(grep -o 'unit [^ ]*: start' "$work/three.log" | sort -u | wc -l)" = $n_units ]
check "3-rank outputs equal the 1-rank outputs" \
    diff <(tree "$work/one") <(tree "$work/three")

# Kill one rank with SIGKILL once a few units are done, then resume.
$mpirun -n 3 "$bin" run "$work/exp.yaml" --progress 0 >"$work/kill.log" 2>&1 &
runner=$!
for _ in $(seq 600); do
    [ -d "$run/units" ] && [ "$(done_units "$run")" -ge 4 ] && break
    sleep 0.2
done
victim=$(pgrep -f "snarm run $work/exp.yaml" | tail -n 1)
[ -n "$victim" ] && kill -9 "$victim"
wait "$runner" 2>/dev/null
pkill -9 -f "snarm run $work/exp.yaml" 2>/dev/null
before=$(done_units "$run")
check "the kill left the sweep unfinished" [ "$before" -lt $n_units ]
(cd "$run" && find units -name DONE | LC_ALL=C sort | while read -r f; do
    d=$(dirname "$f")
    find "$d" -type f ! -name timing.tsv ! -name DONE | LC_ALL=C sort | xargs sha1sum
done) >"$work/finished-before.sum"
check "resume succeeds" $mpirun -n 3 "$bin" run "$work/exp.yaml" --resume --progress 0 \
    >"$work/resume.log" 2>&1
check "resume ran only the missing units" \
    [ "$(grep -o 'unit [^ ]*: start' "$work/resume.log" | sort -u | wc -l)" = \
        $((n_units - before)) ]
check "units finished before the kill are unchanged" \
    bash -c "cd '$run' && sha1sum --quiet -c '$work/finished-before.sum'"
check "the resumed sweep equals the uninterrupted one" \
    diff <(tree "$work/one") <(tree "$run")

if [ $fail -gt 0 ]; then tail -n 30 "$work"/*.log; fi
echo "test_pipeline_mpi: $pass passed, $fail failed"
[ $fail = 0 ]
