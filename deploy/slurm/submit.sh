#!/usr/bin/env bash
# Submits the CLADO measurement as a Slurm array of SHARDS tasks plus a dependent merge + search job; prints both job ids.
#   BITBUDGET=/opt/bitbudget/bitbudget MODEL=/data/resnet50.onnx CALIB=/data/imagenet-train STORE_DIR=/shared/r50 \
#   SHARDS=16 BUDGETS="4bits 5bits" BITBUDGET_ARGS="--preset default --sens-images 256" deploy/slurm/submit.sh [extra sbatch options]
# A dead shard K is rerun alone, then the merge again:
#   sbatch --array=K --export=ALL deploy/slurm/clado-shard.sbatch   # resumes from $STORE_DIR/shard-K.db
#   sbatch --dependency=afterok:JOB --export=ALL deploy/slurm/clado-merge.sbatch
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
: "${BITBUDGET:?}" "${MODEL:?}" "${CALIB:?}" "${STORE_DIR:?}" "${SHARDS:?}" "${BUDGETS:?}"
export BITBUDGET MODEL CALIB STORE_DIR SHARDS BUDGETS BITBUDGET_ARGS="${BITBUDGET_ARGS:-}" SEARCH_ARGS="${SEARCH_ARGS:-}"
mkdir -p "$STORE_DIR"
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" --export=ALL --chdir="$STORE_DIR" "$@" "$here/clado-shard.sbatch")
array=${array%%;*}
merge=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes --export=ALL --chdir="$STORE_DIR" "$@" "$here/clado-merge.sbatch")
echo "array $array merge ${merge%%;*}"
