#!/usr/bin/env bash
# Installs what building and testing qoqmed needs on a fresh Debian/Ubuntu machine:
# a Vulkan loader + Mesa's software Vulkan driver (lavapipe, so the GPU tests run without a GPU),
# the wasm32 Rust target, and for the browser tests Chromium + ChromeDriver (software WebGPU) and
# wasm-bindgen's test runner at the exact version of the wasm-bindgen crate in Cargo.lock.
# `--native` skips the browser part (enough to run the CLI).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

browser=1
[ "${1:-}" = "--native" ] && browser=0

need_apt=()
[ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1' || need_apt+=(libvulkan1)
if [ $browser = 1 ]; then
    command -v chromium >/dev/null || need_apt+=(chromium)
    command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
    else
        echo "setup: install a Vulkan loader and driver (${need_apt[*]} on Debian) by hand" >&2
        exit 1
    fi
fi

if command -v rustup >/dev/null; then
    rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
    for c in clippy rustfmt; do
        rustup component list --installed | grep -q "^$c" || rustup component add "$c"
    done
fi
WBG=0.2.130
if [ $browser = 1 ] && ! wasm-bindgen-test-runner --version 2>/dev/null | grep -q "$WBG"; then
    # Not --locked: its lockfile pins a crate version the registry no longer has.
    cargo install wasm-bindgen-cli --version "$WBG"
fi
if [ $browser = 1 ]; then
    # The web app's build tools and browser tests: playwright-core needs Node.js >= 20.
    if ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' 2>/dev/null; then
        echo "setup: the browser tests need Node.js >= 20 and npm (Debian 12's nodejs is 18: use NodeSource's)" >&2
        exit 1
    fi
    [ -d web/node_modules/playwright-core ] && [ -x web/node_modules/.bin/wasm-opt ] || (cd web && npm ci --no-audit --no-fund)
fi
echo "setup: ok"
