#!/usr/bin/env bash
# Slurm end-to-end test: a single-node cluster on localhost (munged + slurmctld + slurmd, 2 CPUs, loopback only, every
# file in a temporary folder), a 4-task CLADO array on ResNet-20 (64 sensitivity images) and a dependent merge + search
# job, checked against one worker: Ω (the merged store's sensitivity report) and the searched configurations must be
# bit-identical. Stops every daemon it started. Installs slurm-wlm + munge when missing and run as root.
# Needs ../shared/assets beside the repository and a Release build (./test.sh or dotnet build builds it).
# Exit 0 = passed; last line "slurm test: passed|FAILED ...". KEEP=1 keeps the temporary folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
assets="$(cd "$repo/.." && pwd)/shared/assets"
[ -f "$assets/cifar10/resnet20.onnx" ] || { echo "slurm test: FAILED (no ../shared/assets/cifar10/resnet20.onnx)"; exit 1; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" -eq 0 ] || { echo "slurm test: FAILED (slurm-wlm/munge missing; apt-get install -y slurm-wlm munge)"; exit 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
fi
cli="$repo/src/BitBudget.Cli/bin/Release/net10.0/bitbudget.dll"
[ -f "$cli" ] || dotnet build "$repo/src/BitBudget.Cli" -c Release -v q >/dev/null
BITBUDGET="dotnet $cli"

work="$(mktemp -d /tmp/bitbudget-slurm-XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
    local status=$?
    if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ]; then scancel --quiet --user="$(id -un)" 2>/dev/null || true; fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ] || [ $status -ne 0 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "slurm test: FAILED ($*)"; exit 1; }

# munge with its own key, socket and files, run in the foreground as a child of this script.
dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge.key"
mkdir -m 700 "$work/munge"
munged --foreground --force --key-file="$work/munge.key" --socket="$work/munge/socket" --pid-file="$work/munge/pid" \
    --log-file="$work/munge/log" --seed-file="$work/munge/seed" >"$work/munged.out" 2>&1 &
pids+=($!)

# Ports above the defaults, so a system Slurm (if any) is untouched; every address is 127.0.0.1.
port=$((20000 + RANDOM % 20000))
user="$(id -un)"
mkdir -p "$work/state" "$work/spool" "$work/stores"
cat > "$work/slurm.conf" <<CONF
ClusterName=bitbudget-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/socket
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
for _ in $(seq 50); do [ -S "$work/munge/socket" ] && break; sleep 0.2; done
[ -S "$work/munge/socket" ] || fail "munged did not start: $(tail -n 3 "$work/munge/log" 2>/dev/null)"
slurmctld -D -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N localhost >"$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 120); do
    sinfo -h -N -o '%T' 2>/dev/null | grep -qx idle && break
    sleep 0.5
done
sinfo -h -N -o '%T' 2>/dev/null | grep -qx idle || fail "node not idle: $(sinfo -h -N 2>&1 | head -n 1); $(tail -n 3 "$work/slurmctld.log" "$work/slurmd.log" 2>&1)"

export BITBUDGET MODEL="$assets/cifar10/resnet20.onnx" CALIB="$assets/cifar10/train-5k" SHARDS=4 BUDGETS="3bits 3.5bits 4bits"
export BITBUDGET_ARGS="--sens-images 64 --sens-batch 64 --calib-images 128" SEARCH_ARGS="--method clado" BITBUDGET_CACHE="$work/cache"
export STORE_DIR="$work/stores"
start=$SECONDS

# One worker, the reference (the same options, one thread like every array task). --pairs all: what the shards measure
# (--shard without --pairs), so Ω and context must match; the default (significant) would measure fewer pairs.
single="$work/single"
mkdir -p "$single"
# shellcheck disable=SC2086
$BITBUDGET sensitivity "$MODEL" --calib "$CALIB" $BITBUDGET_ARGS --threads 1 --pairs all --store "$single/store.db" -o "$single/sensitivity.json" --quiet \
    >"$single/sensitivity.out" 2>&1 || fail "one worker: $(tail -n 3 "$single/sensitivity.out")"
for budget in $BUDGETS; do
    # shellcheck disable=SC2086
    $BITBUDGET search "$MODEL" --calib "$CALIB" $BITBUDGET_ARGS $SEARCH_ARGS --threads 1 --store "$single/store.db" --budget "$budget" \
        -o "$single/bits-$budget.json" --quiet >"$single/search-$budget.out" 2>&1 || fail "one worker: $(tail -n 3 "$single/search-$budget.out")"
done
echo "one worker: $((SECONDS - start)) s"

# The array and the dependent merge + search job, exactly as a user submits them.
start=$SECONDS
read -r _ array _ merge < <("$repo/deploy/slurm/submit.sh")
echo "submitted array job $array (4 tasks) and merge job $merge (afterok)"
state=""
for _ in $(seq 1800); do
    state=$(scontrol show job "$merge" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2)
    case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
    sleep 1
done
echo "array + merge on Slurm: $((SECONDS - start)) s, merge job $state"
for k in 0 1 2 3; do
    task=$(scontrol show job "${array}_$k" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | head -n 1 | cut -d= -f2)
    [ "$task" = COMPLETED ] || fail "array task $k: ${task:-unknown}; $(tail -n 3 "$STORE_DIR/bitbudget-clado-${array}_$k.out" 2>/dev/null)"
done
[ "$state" = COMPLETED ] || fail "merge job: ${state:-unknown}; $(tail -n 5 "$STORE_DIR/bitbudget-merge-$merge.out" 2>/dev/null)"

# Ω and context bit-identical, nothing measured after the merge, every shard did a share, configurations identical.
python3 - "$single/sensitivity.json" "$STORE_DIR/sensitivity.json" "$STORE_DIR" <<'PY' || fail "Ω differs"
import json, sqlite3, sys
one, merged = (json.load(open(p)) for p in sys.argv[1:3])
assert one["omega"] == merged["omega"] and len(one["omega"]) == 60 * 60, "omega"
assert one["context"] == merged["context"], "context"
assert merged["evaluations"] == 0, f"the merge job measured {merged['evaluations']} evaluations itself"
counts = [sqlite3.connect(f"{sys.argv[3]}/shard-{k}.db").execute("SELECT COUNT(*) FROM units WHERE u >= 0").fetchone()[0] for k in range(4)]
assert sum(counts) == 60 and min(counts) > 0, f"units per shard {counts}"
print(f"Ω {int(len(one['omega']) ** 0.5)}² bit-identical; units per shard {counts}")
PY
for budget in $BUDGETS; do
    cmp -s "$single/bits-$budget.json" "$STORE_DIR/bits-$budget.json" || fail "configuration at $budget differs"
done
echo "configurations at $BUDGETS bit-identical"
echo "slurm test: passed"
