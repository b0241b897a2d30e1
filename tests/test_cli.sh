#!/usr/bin/env bash
# The command-line contract: every subcommand answers --help with status 0;
# usage errors exit 2, user errors (bad configuration) exit 1 with one message
# naming the file, line and key.
set -u
bin=${SNARM_BIN:?}
pass=0 fail=0
expect() { # expect STATUS DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    "$@" >/tmp/snarm-cli.$$ 2>&1; local got=$?
    if [ "$got" = "$want" ]; then pass=$((pass+1)); else
        fail=$((fail+1)); echo "FAIL: $what: status $got, want $want"; cat /tmp/snarm-cli.$$; fi
}
expect_text() { # expect_text TEXT DESCRIPTION -- command...
    local want=$1 what=$2; shift 3
    "$@" >/tmp/snarm-cli.$$ 2>&1
    if grep -qF -- "$want" /tmp/snarm-cli.$$; then pass=$((pass+1)); else
        fail=$((fail+1)); echo "FAIL: $what: output lacks '$want'"; cat /tmp/snarm-cli.$$; fi
}

expect 0 "top-level help" -- "$bin" --help
expect 2 "no arguments" -- "$bin"
expect 2 "unknown command" -- "$bin" frobnicate
expect 0 "version" -- "$bin" version
expect_text "snarm " "version text" -- "$bin" version

cmds=$("$bin" --help | awk '/^commands:/{on=1; next} on && /^  [a-z]/ {print $1}')
[ -n "$cmds" ] || { echo "FAIL: no commands listed"; fail=$((fail+1)); }
for c in $cmds; do
    expect 0 "$c --help" -- "$bin" "$c" --help
    expect_text "usage: snarm $c" "$c --help text" -- "$bin" "$c" --help
done

d=$(mktemp -d)
printf 'train:\n  steps: 10\n  lrr: 1\n' >"$d/bad.yaml"
expect 1 "unknown key" -- "$bin" config "$d/bad.yaml"
expect_text "$d/bad.yaml:3: unknown key 'train.lrr'" "unknown key message" -- \
    "$bin" config "$d/bad.yaml"
expect 1 "a folder as the configuration" -- "$bin" config "$d"
printf 'data:\n  resize: 100\n  crop: 200\n' >"$d/cross.yaml"
expect_text "cross.yaml:3: data.crop (200) is larger than data.resize (100)" \
    "a check across keys names the line" -- "$bin" config "$d/cross.yaml"
expect_text "--set data.crop: data.crop (300)" "a check across keys names the override" -- \
    "$bin" config "$d/cross.yaml" --set data.crop=300
expect 0 "an override repairs the file's value" -- "$bin" config "$d/cross.yaml" \
    --set data.crop=50
expect_text "$d is a folder, not a file" "folder message" -- "$bin" config "$d"
expect_text "$d is a folder, not a maps file" "folder as maps file" -- "$bin" metrics "$d"
printf 'train:\n  steps: ten\n' >"$d/bad2.yaml"
expect_text "bad2.yaml:2: train.steps expects an integer" "wrong type message" -- \
    "$bin" config "$d/bad2.yaml"
expect 1 "missing file" -- "$bin" config "$d/none.yaml"
expect 2 "bad option" -- "$bin" config --frob
expect_text "snarm config: unknown option '--frob'" "bad option named" -- "$bin" config --frob
"$bin" run x.yaml --progress 2>"$d/opt.err"
if [ "$(grep -c . "$d/opt.err")" = 2 ] && grep -q "option '--progress' needs a value" "$d/opt.err"
then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: one message for a missing value"; cat "$d/opt.err"; fi
expect 0 "config set" -- "$bin" config --set train.steps=5
expect_text "  steps: 5" "config set applied" -- "$bin" config --set train.steps=5
expect 1 "config set bad key" -- "$bin" config --set train.nope=5
expect_text "--set run.name: '~' is null" "config set null" -- "$bin" config --set run.name=~
expect 2 "datasets: an unknown layout" -- "$bin" datasets "$d" --format foo
expect 2 "a benchmark without options refuses one" -- "$bin" bench sgemm --frob
expect_text "usage: snarm bench metrics" "help of a benchmark without options" -- \
    "$bin" bench metrics --help
expect 2 "negative progress interval" -- "$bin" run "$d/cross.yaml" --progress -5
expect 2 "render: --worst and --images together" -- "$bin" render "$d/none.h5" "$d/out" \
    --worst 3 --images 0
# A backbone that cannot be opened stops a run before any unit starts.
"$bin" demo-data "$d/data" >/dev/null 2>&1
printf 'run:\n  out_dir: %s/run\ndata:\n  roots: [%s/data]\nbackbone:\n  weights_missing: random\n' \
    "$d" "$d" >"$d/run.yaml"
expect_text "the backbone: backbone.layers asks for block 40" "layers the backbone lacks" -- \
    "$bin" run "$d/run.yaml" --set "backbone.layers=[1, 2, 3, 40]"
printf '{"a": 1}' >"$d/w.safetensors"
expect_text "is not a safetensors file" "weights that are not safetensors" -- \
    "$bin" run "$d/run.yaml" --set backbone.weights="$d/w.safetensors"
expect 1 "the refused run's status" -- \
    "$bin" run "$d/run.yaml" --set backbone.weights="$d/w.safetensors"
[ ! -e "$d/run" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: a refused run wrote $d/run"; }
rm -rf "$d" /tmp/snarm-cli.$$
echo "test_cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
