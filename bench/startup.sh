#!/usr/bin/env bash
# What an omnimeta process costs to start: `--help`, a 2-iteration `run` and an `evaluate` of it, best of 3.
#
#   bench/startup.sh NAME=TREE[:EXTRA_PYTHONPATH] ...
#
# Each TREE is a source tree of omnimeta (this checkout, or `git worktree add /tmp/old REV`), run as
# `python -m l2l_omniglot` from inside it with this checkout's .venv; EXTRA_PYTHONPATH goes first on
# the path (session 10 measured session 9's code with a copy of learn2learn whose __init__ imports
# gym, text and vision at once, as session 9's wheel did). Needs $OMNIMETA_DATA. Session 10:
#   bench/startup.sh old=/tmp/old6f:/tmp/l2leager new=.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/.venv/bin/python
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tiny=(--solver fomaml --iterations 2 --val-every 2 --val-tasks 4 --eval-tasks 4 --meta-batch 2 --device cpu --json)
seconds() {  # TREE PYTHONPATH ARGS...: wall seconds of one command
  local tree=$1 path=$2; shift 2
  (cd "$tree" && PYTHONPATH=$path /usr/bin/time -f "%e" "$python" -m l2l_omniglot "$@" 2>&1 >/dev/null | tail -1)
}
best() { printf '%s\n' "$@" | sort -n | head -1; }
echo "| tree | omnimeta --help | 2-iteration run | evaluate of it |"
echo "|---|---|---|---|"
for spec in "$@"; do
  name=${spec%%=*}; rest=${spec#*=}; tree=${rest%%:*}; path=""
  [[ $rest == *:* ]] && path=${rest#*:}
  (cd "$tree" && PYTHONPATH=$path "$python" -m l2l_omniglot run "${tiny[@]}" --out "$scratch/$name-base" >/dev/null 2>&1)
  help=() run=() evaluate=()
  for i in 1 2 3; do
    help+=("$(seconds "$tree" "$path" --help)")
    run+=("$(seconds "$tree" "$path" run "${tiny[@]}" --out "$scratch/$name-$i")")
    evaluate+=("$(seconds "$tree" "$path" evaluate "$scratch/$name-base" --json)")
  done
  echo "| $name | $(best "${help[@]}") s | $(best "${run[@]}") s | $(best "${evaluate[@]}") s |"
done
