#!/usr/bin/env bash
# CI: kpose as a user gets it from `pip install kpose`. Builds the wheel from the files git
# knows (a copy: nothing is written into the repository), checks what it holds, installs
# it with the export extras into a fresh virtual environment, and from a folder outside
# the repository exports a tiny model to TF.js and builds + checks the web demo with it
# (`kpose demo --check`: headless Chromium). Any failure fails CI.
# Needs: $PYTHON (default python3.11), node + npm (the wheel build bundles web_demo/),
# Chromium (apt-get install chromium, or $CHROMIUM). Uses pip's cache (~/.cache/pip).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY="${PYTHON:-python3.11}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/kpose-wheel-check.XXXXXX")"
# Removed in the background: a venv with TensorFlow takes ~15 s to delete.
trap '(rm -rf "$WORK" &)' EXIT
started=$SECONDS
step() { echo "wheel check [$((SECONDS - started)) s]: $*"; }

step "copy the sources (git ls-files) to $WORK/src"
mkdir "$WORK/src" "$WORK/run"
git ls-files -z --cached --others --exclude-standard \
  | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$WORK/src"

step "fresh venv, build the wheel"
"$PY" -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/python" -m pip install -q --upgrade pip
"$V/pip" wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/kpose-*.whl)"

step "wheel contents: $(basename "$WHEEL")"
"$V/python" - "$WHEEL" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
need = ["kpose/cli.py", "kpose/_recipes/efficientpose_rt.yaml", "kpose/deploy/web/index.html",
        "kpose/deploy/web/app.js", "kpose/deploy/web/style.css"]
problems = [f"missing {n}" for n in need if n not in names]
if not any(n.startswith("kpose/deploy/web/wasm/") and n.endswith(".wasm") for n in names):
    problems.append("no kpose/deploy/web/wasm/*.wasm")
top = {n.split("/")[0] for n in names}
problems += [f"unexpected top-level entry {t}" for t in sorted(top - {"kpose", *[t for t in top if t.endswith(".dist-info")]})]
problems += [f"should not ship {n}" for n in names
             if "node_modules/" in n or "/tests/" in n or "/runs/" in n or n.endswith(".map")]
if problems:
    sys.exit("wheel check: " + "; ".join(problems))
print(f"  {len(names)} files; page: {sorted(n for n in names if n.startswith('kpose/deploy/web/'))}")
EOF

step "install the wheel with [export] into the venv"
"$V/pip" install -q "$WHEEL[export]" -c "$REPO/constraints.txt"

step "export and demo from $WORK/run (outside the repository)"
cd "$WORK/run"
export KPOSE_CACHE="$WORK/cache" TF_CPP_MIN_LOG_LEVEL=2
SITE="$("$V/python" -c 'import kpose, pathlib; print(pathlib.Path(kpose.__file__).parent)')"
case "$SITE" in
  "$WORK/venv/"*) ;;
  *) echo "wheel check: kpose imported from $SITE, not the installed wheel" >&2; exit 1 ;;
esac
"$V/python" -c "from kpose.training import untrained_model; untrained_model('efficientpose_rt').save('tiny')"
step "a model saved; kpose export --format tfjs"
# node/npm that fail when called: an installed kpose must need neither to export or serve.
mkdir "$WORK/no-node"
for tool in node npm npx; do
  printf '#!/bin/sh\necho "wheel check: kpose ran %s at run time" >&2\nexit 1\n' "$tool" >"$WORK/no-node/$tool"
  chmod +x "$WORK/no-node/$tool"
done
export PATH="$WORK/no-node:$PATH"
package_state() { find "$SITE" -path '*/__pycache__' -prune -o -type f -print | sort | xargs md5sum; }
before="$(package_state)"
"$V/kpose" export tiny --format tfjs --out "$WORK/run/exported"
test -f "$WORK/run/exported/efficientpose_rt_tfjs/model.json"
step "exported; kpose demo --check"
"$V/kpose" demo tiny --out "$WORK/run/demo" --check
test -f "$WORK/run/demo/index.html" -a -f "$WORK/run/demo/models/efficientpose_rt/model.json"
if [ "$(package_state)" != "$before" ]; then
  echo "wheel check: kpose export/demo wrote into the installed package $SITE" >&2
  exit 1
fi
step "passed"
