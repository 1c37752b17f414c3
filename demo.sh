#!/usr/bin/env bash
# Fresh machine → working demo: restores and builds BitBudget, fetches the demo data (Debian package
# dataset-fashion-mnist, checksums verified), then runs the whole pipeline on the shipped demo CNN.
set -euo pipefail
cd "$(dirname "$0")"
command -v dotnet >/dev/null || { echo "error: install the .NET 10 SDK first (apt-get install dotnet-sdk-10.0 or https://dot.net)." >&2; exit 1; }
dotnet build src/BitBudget.Cli -c Release -v quiet -nologo
./demo/fetch-data.sh
./bitbudget demo "$@"
