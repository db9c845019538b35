#!/usr/bin/env bash
# Builds the web app into web/dist/ on a fresh machine: crate/web for wasm32 (profile `wasm`, the same
# cargo invocation tools/test.sh uses, so CI compiles it once), wasm-bindgen 0.2.130 (--target web),
# wasm-opt -Os from npm binaryen@132 (Debian's binaryen breaks the module), then the static files
# with the Content-Security-Policy filled in.
#
#   bash web/build.sh [--allow-host https://models.example.org]... [--no-opt]
#
# --allow-host adds a host the page may fetch models and cases from (the CSP's connect-src);
# everything else stays blocked, for the page and for its worker alike.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

hosts=()
opt=1
while [ $# -gt 0 ]; do
    case "$1" in
        --allow-host)
            h="${2:?--allow-host needs a URL like https://models.example.org}"
            [[ "$h" =~ ^https?://[A-Za-z0-9.-]+(:[0-9]+)?/?$ ]] || { echo "build.sh: --allow-host $h: give scheme://host[:port]" >&2; exit 2; }
            hosts+=("${h%/}"); shift 2 ;;
        --no-opt) opt=0; shift ;;
        *) echo "build.sh: unknown option $1 (use --allow-host URL, --no-opt)" >&2; exit 2 ;;
    esac
done

# What it needs: the wasm32 target, wasm-bindgen at the crate's exact version, npm packages.
WBG=0.2.130
export PATH="$HOME/.cargo/bin:$PATH"
rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WBG"; then
    # Not --locked: its lockfile pins a crate version the registry no longer has.
    cargo install wasm-bindgen-cli --version "$WBG"
fi
if [ ! -x web/node_modules/.bin/wasm-opt ] || [ ! -d web/node_modules/playwright-core ]; then
    command -v npm >/dev/null || { echo "build.sh: needs node + npm (Debian: apt-get install nodejs npm)" >&2; exit 1; }
    (cd web && npm ci --no-audit --no-fund)
fi

# Same packages and flags as tools/test.sh's wasm32 build: one compile serves both.
cargo build --profile wasm --target wasm32-unknown-unknown --no-default-features \
    -p qoqmed-engine -p qoqmed-pipeline -p qoqmed-imaging -p qoqmed-ecg -p qoqmed-output -p qoqmed-rl \
    -p qoqmed-web

dist=web/dist
rm -rf "$dist"
mkdir -p "$dist/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$dist/pkg" \
    target/wasm32-unknown-unknown/wasm/qoqmed_web.wasm
if [ $opt = 1 ]; then
    web/node_modules/.bin/wasm-opt -Os --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
        "$dist/pkg/qoqmed_web_bg.wasm" -o "$dist/pkg/qoqmed_web_bg.wasm"
fi

# A C symbol left undefined by some dependency becomes an `env` import, and then the module does
# not instantiate in any browser: fail here, naming it, rather than in the page.
node -e '
const m = new WebAssembly.Module(require("fs").readFileSync(process.argv[1]));
const bad = WebAssembly.Module.imports(m).filter((i) => i.module === "env").map((i) => i.name);
if (bad.length) { console.error("build.sh: the wasm imports C functions nobody defines: " + bad.join(", ") + " (define them in crate/web/src/libc_shim.rs)"); process.exit(1); }
' "$dist/pkg/qoqmed_web_bg.wasm"

connect="'self'"
for h in "${hosts[@]}"; do connect="$connect $h"; done
csp="default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; connect-src $connect; img-src 'self' blob: data:; style-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'"

files=(index.html style.css app.js presets.js render.js worker.js download.js app.webmanifest)
for f in "${files[@]}"; do cp "web/$f" "$dist/$f"; done
sed -i "s|__CSP__|$csp|" "$dist/index.html"

# The service worker's list of app files and a version that changes with their content.
shell='["./"'
for f in "${files[@]}" pkg/qoqmed_web.js pkg/qoqmed_web_bg.wasm; do shell="$shell, \"$f\""; done
shell="$shell]"
version=$(cd "$dist" && cat "${files[@]}" pkg/qoqmed_web.js pkg/qoqmed_web_bg.wasm | sha256sum | cut -c1-16)
sed -e "s|__VERSION__|$version|" -e "s|__SHELL__|$shell|" web/sw.js > "$dist/sw.js"

wasm_bytes=$(stat -c %s "$dist/pkg/qoqmed_web_bg.wasm")
js_bytes=$(cat "$dist"/*.js "$dist"/pkg/*.js | wc -c)
echo "web/dist: wasm $wasm_bytes bytes, JS $js_bytes bytes, total $((wasm_bytes + js_bytes)) bytes (goal < 5 MB)"
echo "serve it: cargo run --release -- serve --model tests/fixtures/models/tiny-qwen-vocab"
