#!/usr/bin/env bash
# The project's one check command (the README's and CI's): formatting, clippy with warnings as
# errors, native tests on whatever wgpu adapter is present (Mesa lavapipe without a GPU: GPU tests
# never skip, they fail if no adapter exists), then the wasm32 builds of the crates the browser
# app uses.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
# lavapipe warns about a missing XDG_RUNTIME_DIR on headless machines.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

cargo fmt --all --check
cargo clippy --release --workspace --all-targets --features qoqmed/train -- -D warnings
cargo test --release --workspace --features qoqmed/train

# The readers and the engine must keep compiling for the browser (no native-only crates).
# --no-default-features drops the native edges (mmap, C codecs) exactly as the web build will.
# The same invocation as web/build.sh (crate/web included), so the app's wasm is compiled once.
cargo build --profile wasm --target wasm32-unknown-unknown --no-default-features \
    -p qoqmed-engine -p qoqmed-pipeline -p qoqmed-imaging -p qoqmed-ecg -p qoqmed-output -p qoqmed-rl \
    -p qoqmed-web
echo "wasm32 builds: ok"

# The engine in headless Chromium through WebGPU (SwiftShader without a GPU): same code path.
# The runner's default budget for the whole file is 20 s; SwiftShader compiles every kernel
# variant on a busy 2-core machine (the file took 18-28 s there).
export PATH="$HOME/.cargo/bin:$PATH"
# The runner's default timeout (20 s for the whole file) is too short for SwiftShader on 2 busy
# cores once the vision tower runs too.
WASM_BINDGEN_TEST_TIMEOUT=300 \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner CHROMEDRIVER="$(command -v chromedriver)" \
    cargo test --profile wasm --target wasm32-unknown-unknown --no-default-features -p qoqmed-engine --test web

# The web app in headless Chromium (playwright-core): web/dist, then the browser tests against
# `qoqmed serve` (the release binary cargo test built) and the tiny fixture model.
bash web/build.sh
(cd web && node --test --test-concurrency=1 tests/)
