#!/usr/bin/env bash
# The image's checks: build it, validate the compose file, and run the real image as users will.
#
#   deploy/check.sh                 # from anywhere; needs Docker, Compose v2 and the project's .venv
#
# Steps: the image builds; `docker compose config` accepts deploy/compose.yaml with each profile; then
# deploy/check_image.py runs containers of it against a fake Bot API and a fake inference server on this
# machine (host network): the console answers in Russian, a private message is answered and the health
# check passes, `docker stop` during a generation sends the reply and exits 0, and a container created
# again on the same volume keeps the chat's history. Not part of the test command or CI (they need no Docker).
#
# Settings: PYTHON (default .venv/bin/python), IMAGE (default rudialogpt-bot:check), and PYTHON_IMAGE /
# TORCH_INDEX_URL, passed to the build when set (the Dockerfile's defaults otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
IMAGE=${IMAGE:-rudialogpt-bot:check}

# Machines without a registry (this project's own) build from a local base image; users never need it.
if [ -z "${PYTHON_IMAGE:-}" ] && [ -x ../shared/tools/docker-local.sh ]; then
  eval "$(../shared/tools/docker-local.sh)"
fi
build_args=(--network host)
[ -n "${PYTHON_IMAGE:-}" ] && build_args+=(--build-arg "PYTHON_IMAGE=$PYTHON_IMAGE")
[ -n "${TORCH_INDEX_URL:-}" ] && build_args+=(--build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL")

echo "== build $IMAGE"
started=$SECONDS
docker build -q "${build_args[@]}" -f deploy/Dockerfile -t "$IMAGE" . >/dev/null
echo "ok: built in $((SECONDS - started)) s, $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"

echo "== docker compose config"
settings=$(mktemp)
trap 'rm -f "$settings"' EXIT
printf 'BOT_TOKEN=123456:CHECK\nINFERENCE_API_KEY=check-key\n' >"$settings"
for profile in cpu vllm webhook; do
  # Any output is a failure too: some Compose wrappers exit 0 whatever the outcome.
  if ! out=$(BOT_ENV_FILE="$settings" docker compose -f deploy/compose.yaml --env-file "$settings" \
      --profile "$profile" config -q 2>&1) || [ -n "$out" ]; then
    echo "FAILED: docker compose config --profile $profile: $out" >&2
    exit 1
  fi
  echo "ok: profile $profile"
done

echo "== the image at work"
"$PYTHON" deploy/check_image.py "$IMAGE"
echo "all checks passed"
