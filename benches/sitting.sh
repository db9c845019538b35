#!/usr/bin/env bash
# One sitting of the README's speed table: `qoqmed bench` and llama.cpp (Vulkan on the same
# adapter, and its CPU backend) on the same random-weight shapes, back to back, JSON lines into
# OUT (default target/sitting.jsonl), then the markdown table on stdout.
#
# usage: benches/sitting.sh [OUT] [--quick]
#   --quick: 1 layer, 16-token prompt, 4 new tokens (checks the plumbing, not for the README)
# Needs the peer build (../shared/bench/peer_llamacpp.sh builds it once, ~8 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/sitting.jsonl}"
quick="${2:-}"
layers=2; prompt=128; gen=16
if [ "$quick" = "--quick" ]; then layers=1; prompt=16; gen=4; fi
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
peer="${QOQMED_PEER_SCRIPT:-/work/shared/bench/peer_llamacpp.sh}"
cargo build --release -q
: > "$out"
echo "# sitting $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
ours() {  # preset format head-format vocab
    ./target/release/qoqmed bench --config "$1" --layers "$layers" --vocab "$4" --format "$2" \
        --head-format "$3" --prompt-tokens "$prompt" --new-tokens "$gen" --json | tail -1 >> "$out"
}
# 3B shapes, vocab 16384: every tensor in the same format, as llama-quantize --pure does.
for f in q4 q8 f16; do ours 3b "$f" "$f" 16384; done
# The default head (q8 embedding and lm_head) for q4.
ours 3b q4 q8 16384
# A crashing peer backend (llama.cpp's CPU Q8_0/Q4_0 died with SIGILL/SIGSEGV on one machine)
# must not end the sitting: each backend runs on its own.
bash "$peer" --preset 3b --layers "$layers" --vocab 16384 --prompt "$prompt" --gen "$gen" \
    --backends vulkan >> "$out" || echo "# peer vulkan failed: rc $?" >&2
bash "$peer" --preset 3b --layers "$layers" --vocab 16384 --prompt "$prompt" --gen "$gen" \
    --backends cpu >> "$out" || echo "# peer cpu failed: rc $?" >&2
# 7B shapes, q4.
ours 7b q4 q4 16384
bash "$peer" --preset 7b --layers "$layers" --vocab 16384 --prompt "$prompt" --gen "$gen" \
    --formats q4_0 --backends vulkan >> "$out" || echo "# peer 7b failed: rc $?" >&2
# The 32B shapes run natively (issue 9).
./target/release/qoqmed bench --config 32b --layers "$layers" --vocab 16384 --format q4 \
    --prompt-tokens "$prompt" --new-tokens 8 --json | tail -1 >> "$out"
echo "# done $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("| engine | shapes | weights | prefill tok/s | decode tok/s | decode GB/s | vs best copy |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    if "backend" in r:
        name = r["backend"].replace("llama.cpp-vulkan", "llama.cpp Vulkan").replace("llama.cpp-cpu", "llama.cpp CPU")
        shapes = f'{r["preset"]}, {r["layers"]}L, vocab {r["vocab"]}'
        print(f'| {name} | {shapes} | {r["format"].upper()} | {r["prefill_tokens_per_s"]:.2f} | {r["decode_tokens_per_s"]:.2f} | | |')
    else:
        shapes = f'{r["config"]}, {r["layers"]}L, vocab {r["vocab"]}'
        print(f'| qoqmed | {shapes} | {r["format"]} | {r["prefill_tokens_per_s"]:.2f} | {r["decode_tokens_per_s"]:.2f} '
              f'| {r["read_gb_per_s"]:.3f} | {100 * r["bandwidth_ratio"]:.0f} % of {r["copy_gb_per_s"]:.2f} GB/s |')
PY
