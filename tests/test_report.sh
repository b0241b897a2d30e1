#!/usr/bin/env bash
# snarm report over two hand-made run folders: every unit's metrics appear,
# SNARM is paired with the PatchCore unit of the same run, setting, class and
# seed (and with no other), the differences are SNARM minus PatchCore, the
# one-class mean rows are left out and the stage times add up.
set -u
bin=${SNARM_BIN:?}
pass=0 fail=0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
has() { # has TEXT DESCRIPTION
    if grep -qF -- "$1" "$d/out.md"; then pass=$((pass+1)); else
        fail=$((fail+1)); echo "FAIL: $2: page lacks '$1'"; fi
}
lacks() { # lacks TEXT DESCRIPTION
    if grep -qF -- "$1" "$d/out.md"; then fail=$((fail+1)); echo "FAIL: $2: page has '$1'"
    else pass=$((pass+1)); fi
}
unit() { # unit RUN ID CSV-ROWS... : a finished unit with metrics and timing
    local dir=$d/$1/units/$2; shift 2
    mkdir -p "$dir"
    { echo "class,p_ap,pro,p_auroc,i_auroc"; printf '%s\n' "$@"; } >"$dir/metrics.csv"
    printf 'stage\tseconds\nextract\t60\nbank\t30\ntrain\t600\npredict\t9\nmetrics\t1\n' \
        >"$dir/timing.tsv"
    printf '# train_samples\t100\n# test_images\t20\n# predict_images_per_second\t2.5\n' \
        >>"$dir/timing.tsv"
}
unit a real/single/bottle/snarm/seed0/g0 "bottle,0.5,0.8,0.9,1" "mean,0.5,0.8,0.9,1"
unit a real/single/bottle/patchcore/seed0/g0 "bottle,0.25,0.9,0.95,1" "mean,0.25,0.9,0.95,1"
unit a real/multi/all/snarm/seed0/g0 "bottle,0.4,0.7,0.8,0.9" "tile,0.3,0.6,0.7,0.8" \
    "mean,0.35,0.65,0.75,0.85"
unit a real/multi/all/patchcore/seed0/g0 "bottle,0.2,0.8,0.9,1" "tile,0.1,0.5,0.6,0.7" \
    "mean,0.15,0.65,0.75,0.85"
unit a real/single/tile/snarm/seed1/g0 "tile,0.6,0.6,0.6,0.6"   # no baseline of seed 1
unit b real/single/bottle/snarm/seed0/g0 "bottle,0.125,0.5,0.5,0.5"
unit b real/single/bottle/patchcore/seed0/g0 "bottle,0.5,0.5,0.5,0.5"

"$bin" report "$d/a" "$d/b" --out "$d/out.md" --title "Two runs" --command "make it" \
    >/dev/null 2>&1 || { echo "FAIL: report exited $?"; exit 1; }
has "# Two runs" "title"
has "make it" "command"
has "| real/single/bottle/snarm/seed0/g0 | bottle | 50.0 / 25.0 (+25.0) | 80.0 / 90.0 (-10.0) |" \
    "single-class pair"
has "| real/multi/all/snarm/seed0/g0 | tile | 30.0 / 10.0 (+20.0) | 60.0 / 50.0 (+10.0) |" \
    "multi-class pair, second class"
has "| real/multi/all/snarm/seed0/g0 | mean | 35.0 / 15.0 (+20.0) |" "multi-class mean"
has "| real/single/bottle/snarm/seed0/g0 | bottle | 12.5 / 50.0 (-37.5) |" "second run's pair"
lacks "| real/single/tile/snarm/seed1/g0 | tile | 60.0 /" "unpaired unit in the comparison"
has "| real/single/tile/snarm/seed1/g0 | tile | 60.0 | 60.0 | 60.0 | 60.0 |" "unpaired unit listed"
lacks "| real/single/bottle/snarm/seed0/g0 | mean" "one-class mean row"
has "## Run \`$d/a\`" "first run's section"
has "- 5 finished unit(s); their stage times add up to 58.3 minutes" "total time"
has "| real/single/bottle/patchcore/seed0/g0 | 60.0 | 30.0 | 600.0 | 9.0 | 1.00 | 100 | 20 | 2.50 |" \
    "stage times"
n=$(grep -c "(+\|(-" "$d/out.md")
[ "$n" = 5 ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: $n paired rows, want 5"; }

"$bin" report "$d/a" "$d/missing" --out "$d/out2.md" >"$d/err" 2>&1
[ $? = 1 ] && grep -qF "$d/missing has no units folder" "$d/err" && [ ! -e "$d/out2.md" ] &&
    pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: missing run folder"; cat "$d/err"; }

"$bin" report "$d/a" "$d/a" --out "$d/twice.md" >"$d/err" 2>&1
[ $? = 2 ] && grep -qF "is given twice" "$d/err" && [ ! -e "$d/twice.md" ] &&
    pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: the same run twice"; cat "$d/err"; }

mkdir -p "$d/empty/units"
cp "$d/out.md" "$d/keep.md"
"$bin" report "$d/a" "$d/empty" --out "$d/keep.md" >"$d/err" 2>&1
[ $? = 1 ] && grep -qF "$d/empty holds no finished unit" "$d/err" && cmp -s "$d/out.md" "$d/keep.md" &&
    pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: run folder without units"; cat "$d/err"; }

echo "report: $pass passed, $fail failed"
[ "$fail" = 0 ]
