#!/usr/bin/env bash
# Build the real-data root used by experiments/real_*.yaml: data/real/ with
# one symlink per class, so that MVTec AD bottle and the magnetic tiles form
# ONE dataset (the multi-class setting needs every class under one root),
# and links in data/weights/ to the two pretrained backbones.
#
#   experiments/real_data.sh [SHARED]
#
# SHARED is the folder holding datasets/mvtec_ad and datasets/magnetic_tile
# (default: ../shared relative to the repository root). Nothing is copied:
# the links point at the files in place; data/real/ and data/weights/ are
# git-ignored.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared=${1:-$repo/../shared}

# Each class: link name, then its folder under SHARED.
classes=(
    "bottle datasets/mvtec_ad/bottle"
    "magnetic_tile datasets/magnetic_tile/magnetic_tile"
)

# Pretrained backbones under SHARED/weights.
weights=(
    vit_tiny_patch16_224.augreg_in21k_ft_in1k.safetensors
    resnet18_imagenet_bnfolded_to_layer3.safetensors
)

# Refuse before touching anything when a class folder is missing.
for entry in "${classes[@]}"; do
    src="$shared/${entry#* }"
    if [ ! -d "$src/train/good" ] || [ ! -d "$src/test" ]; then
        echo "real_data.sh: $src is absent or not in the MVTec layout" \
            "(CLASS/train/good, CLASS/test); pass the shared folder that holds" \
            "datasets/mvtec_ad and datasets/magnetic_tile as the first argument" >&2
        exit 1
    fi
done
for w in "${weights[@]}"; do
    if [ ! -f "$shared/weights/$w" ]; then
        echo "real_data.sh: $shared/weights/$w is absent; pass the shared folder" \
            "that holds weights/ as the first argument" >&2
        exit 1
    fi
done

# One symlink per class, replaced if it already exists.
shared=$(cd "$shared" && pwd)
mkdir -p "$repo/data/real"
for entry in "${classes[@]}"; do
    name=${entry%% *}
    ln -sfn "$shared/${entry#* }" "$repo/data/real/$name"
    echo "data/real/$name -> $shared/${entry#* }"
done
mkdir -p "$repo/data/weights"
for w in "${weights[@]}"; do
    ln -sfn "$shared/weights/$w" "$repo/data/weights/$w"
    echo "data/weights/$w -> $shared/weights/$w"
done
