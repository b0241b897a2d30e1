#!/usr/bin/env bash
# submit.sh EXPERIMENT.yaml SHARDS [snarm run options]
#
# Submit a sweep as a job array of SHARDS tasks (array.sbatch) and a metrics
# job (metrics.sbatch) that starts when every array task has succeeded
# (--dependency=afterok). Prints the two job ids, one per line.
# Extra sbatch options for both jobs: SNARM_SBATCH_ARGS (e.g. "-p gpu
# --overcommit"); SNARM_WAIT=1 makes the metrics submission wait for its end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exp=${1:?usage: submit.sh EXPERIMENT.yaml SHARDS [snarm run options]}
shards=${2:?usage: submit.sh EXPERIMENT.yaml SHARDS [snarm run options]}
shift 2
read -r -a extra <<<"${SNARM_SBATCH_ARGS:-}"
wait_flag=()
[ "${SNARM_WAIT:-0}" = 1 ] && wait_flag=(--wait)

array=$(sbatch --parsable --array="0-$((shards - 1))" "${extra[@]}" \
    "$here/array.sbatch" "$exp" "$@")
array=${array%%;*}
echo "$array" # the array's id, before a waiting submission blocks
metrics=$(sbatch --parsable "${wait_flag[@]}" --dependency="afterok:$array" \
    "${extra[@]}" "$here/metrics.sbatch" "$exp" "$@")
echo "${metrics%%;*}"
