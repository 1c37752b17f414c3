#!/usr/bin/env bash
# Issue 20: every BitBudgetException is made by the Errors factories (src/BitBudget/Errors.cs).
# Rewrites `new BitBudgetException(ErrorKind.X, ` into `Errors.X(` in the given folders (default: src), keeping the
# message, the optional inner exception and the line layout exactly; `throw`/`return`/`?? throw` around it stay as they
# are, so messages and exit codes do not change. Idempotent: a second run finds nothing to rewrite.
# Sites with a computed kind (`new BitBudgetException(kind, ...)`) are left alone (and listed).
# Usage: tools/convert-throws.sh [folder...]     (run from the repository root; then build and run the tests)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
folders=("$@")
[ ${#folders[@]} -eq 0 ] && folders=(src)
kinds='InvalidInput|Infeasible|Runtime|FileNotFound|NotOnnx|TruncatedModel|NoQuantizableLayers|ExternalData|OutputExists'
# The factories themselves and the exception type are where the constructor must stay.
mapfile -t files < <(grep -rlE --include='*.cs' "new BitBudgetException\(ErrorKind\.($kinds)," "${folders[@]}" \
    | grep -vE '(^|/)src/BitBudget/(Errors|BitBudgetException)\.cs$' || true)
for f in "${files[@]}"; do
    perl -0pi -e "s/\bnew BitBudgetException\(ErrorKind\.($kinds),[ ]?(\r?\n)?/'Errors.'.\$1.'('.(\$2 \/\/ '')/ge" "$f"
done
echo "convert-throws: rewrote ${#files[@]} file(s) under ${folders[*]}"
left=$(grep -rnE --include='*.cs' 'new BitBudgetException\(' "${folders[@]}" | grep -vE 'src/BitBudget/(Errors|BitBudgetException)\.cs:' || true)
if [ -n "$left" ]; then
    echo "convert-throws: left as they are (no fixed ErrorKind):"
    echo "$left"
fi
