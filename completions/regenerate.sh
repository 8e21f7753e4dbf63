#!/bin/sh
# Regenerate the committed completions and man page (after `cargo build`).
set -e
cd "$(dirname "$0")/.."
for pair in bash:vslack.bash zsh:_vslack fish:vslack.fish powershell:_vslack.ps1 elvish:vslack.elv; do
  ./target/debug/vslack completions "${pair%%:*}" > "completions/${pair#*:}"
done
mkdir -p man
rm -f man/*.1
./target/debug/vslack man --dir man
