#!/usr/bin/env bash
# Make `docker compose` available for validating docker-compose.yml (no engine needed).
# These machines have the docker CLI but not the compose plugin, and Docker's own download
# site is unreachable: build the plugin from the Go module proxy (about 2 min the first time).
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin"
VERSION="${COMPOSE_VERSION:-v2.40.3}"
if docker compose version >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then PLUGINS=/usr/local/lib/docker/cli-plugins; else PLUGINS="$HOME/.docker/cli-plugins"; fi
if [ -x "$PLUGINS/docker-compose" ] && "$PLUGINS/docker-compose" version >/dev/null 2>&1; then exit 0; fi
command -v go >/dev/null || { echo "install-compose: Go is needed to build docker compose (apt-get install golang)" >&2; exit 1; }
echo "building docker compose $VERSION from the Go module proxy …"
src=$(go mod download -json "github.com/docker/compose/v2@$VERSION" | python3 -c "import sys,json;print(json.load(sys.stdin)['Dir'])")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src" "$work/compose" && chmod -R u+w "$work/compose"
mkdir -p "$PLUGINS"
(cd "$work/compose" && go build -trimpath -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$VERSION" -o "$PLUGINS/docker-compose" ./cmd)
[ "$(id -u)" = 0 ] && ln -sf "$PLUGINS/docker-compose" /usr/local/bin/docker-compose
"$PLUGINS/docker-compose" version
