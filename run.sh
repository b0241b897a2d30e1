#!/usr/bin/env bash
# snarm's two entry points on a fresh Debian 12 machine (as root, or with sudo):
#
#   ./run.sh main   install what is missing, build, and run the main job on the
#                   built-in generated data (results in results/DEMO.md)
#   ./run.sh test   install what is missing, build, and run the whole test suite
#   ./run.sh real [SHARED]
#                   the real-data sweeps (MVTec AD bottle and the magnetic
#                   tiles, SNARM and the PatchCore baseline, ViT-Ti/16 and
#                   ResNet-18) from SHARED (default ../shared); results in
#                   results/REAL.md. SNARM_REAL=vit_tiny or resnet18 runs one.
#
# Environment: SNARM_BUILD (build folder, default build), SNARM_JOBS (parallel
# compile jobs, default nproc), SNARM_NO_INSTALL=1 (skip the package step).
set -euo pipefail
cd "$(dirname "$0")"
root=$PWD
build=${SNARM_BUILD:-$root/build}
jobs=${SNARM_JOBS:-$(nproc)}
# OpenMP threads that spin while idle fight the BLAS threads for the cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# Debian packages: build tools and libraries, then what the tests use
# (PyTorch and scikit-learn references, a local Slurm cluster).
build_pkgs="build-essential cmake pkg-config libopenblas-dev libhdf5-openmpi-dev
 hdf5-tools libopenmpi-dev openmpi-bin libyaml-dev libpng-dev libjpeg-dev
 libjansson-dev libssl-dev"
test_pkgs="python3 python3-torch python3-sklearn python3-h5py python3-numpy
 python3-pil python3-scipy slurm-wlm munge libpmix-dev"

install() {
    [ "${SNARM_NO_INSTALL:-0}" = 1 ] && return 0
    local missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    echo "run.sh: installing$missing"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends \
        $missing
}

compile() {
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release
    cmake --build "$build" -j "$jobs"
}

# The main job: generate the built-in data, run the sweep of
# experiments/demo.yaml (resuming whatever an earlier run finished), then the
# report and heat-map pictures of its SNARM units.
main_job() {
    local data=demo/snarm_demo run=runs/demo
    "$build/snarm" demo-data "$data"
    "$build/snarm" run experiments/demo.yaml --resume
    "$build/snarm" report "$run" --out results/DEMO.md \
        --title "The main job on the built-in generated data" \
        --command "./run.sh main" \
        --notes "$(cat results/DEMO-NOTES.txt)"
    for cls in disc weave; do
        "$build/snarm" render "$run/units/snarm_demo/single/$cls/snarm/seed0/g0/maps.h5" \
            "$run/render/$cls" --worst 6
    done
    echo "run.sh: results in results/DEMO.md, pictures in runs/demo/render/*/index.html"
}

# The real-data sweeps: link the classes and weights, run each backbone's
# sweep (resuming), then one page for all of them.
real_job() {
    local shared=${1:-$root/../shared} runs=() b
    experiments/real_data.sh "$shared"
    for b in ${SNARM_REAL:-vit_tiny resnet18}; do
        [ -f "experiments/real_$b.yaml" ] || { echo "run.sh: no experiments/real_$b.yaml" >&2; exit 2; }
        "$build/snarm" run "experiments/real_$b.yaml" --resume
        runs+=("runs/real_$b")
    done
    "$build/snarm" report "${runs[@]}" --out results/REAL.md \
        --title "SNARM and the PatchCore baseline on real images" \
        --command "./run.sh real" \
        --notes "$(cat results/REAL-NOTES.txt)"
    echo "run.sh: results in results/REAL.md"
}

test_suite() {
    cd "$build"
    OMP_WAIT_POLICY=PASSIVE ctest --output-on-failure --timeout 1200 -j 1
}

case "${1:-}" in
main)
    install $build_pkgs
    compile
    main_job
    ;;
test)
    install $build_pkgs $test_pkgs
    compile
    test_suite
    ;;
real)
    install $build_pkgs
    compile
    real_job "${2:-}"
    ;;
*)
    echo "usage: ./run.sh main | test | real [SHARED]" >&2
    exit 2
    ;;
esac
