#!/usr/bin/env bash
# Copies the working tree (tracked and untracked files, not the ignored ones such as .venv)
# to every worker, replacing the code directory there.
#
#   tpu/sync.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { help_text; exit 0; }
load_settings

archive="${TMPDIR:-/tmp}/rnnlab-src-$TPU_NAME.tar.gz"
remote_archive="rnnlab-src.tar.gz"
# Deleted but still tracked files are skipped by --ignore-failed-read.
run_shell "git -C $(shquote "$REPO_DIR") ls-files -z --cached --others --exclude-standard |\
 $(shquote "$TAR") -C $(shquote "$REPO_DIR") --null -T - --ignore-failed-read -czf\
 $(shquote "$archive")"
copy_to_workers "$archive" "$remote_archive"
# Unpack next to the old tree and swap, so an interrupted sync leaves a complete tree.
on_workers "set -e; rm -rf $REMOTE_DIR.new; mkdir -p $REMOTE_DIR.new;\
 tar -xzf $remote_archive -C $REMOTE_DIR.new; rm -rf $REMOTE_DIR;\
 mv $REMOTE_DIR.new $REMOTE_DIR; rm -f $remote_archive"
