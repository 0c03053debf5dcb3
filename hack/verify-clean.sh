#!/usr/bin/env bash
# Fails when the given paths differ from what is committed, or hold files git
# does not track (a generated file nobody committed). Run after regenerating.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
status=0
if ! git diff --exit-code --stat -- "$@"; then
	echo "ERROR: generated files differ from the commit; run 'make generate manifests' and commit the result" >&2
	git diff -- "$@" | head -100 >&2
	status=1
fi
untracked="$(git ls-files --others --exclude-standard -- "$@")"
if [[ -n "$untracked" ]]; then
	echo "ERROR: untracked generated files; commit them:" >&2
	echo "$untracked" >&2
	status=1
fi
exit $status
