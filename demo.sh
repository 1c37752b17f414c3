#!/usr/bin/env bash
# Fresh machine → working demo: restores and builds BitBudget, then runs it on a shipped model.
set -euo pipefail
cd "$(dirname "$0")"
command -v dotnet >/dev/null || { echo "Install the .NET 10 SDK first (apt-get install dotnet-sdk-10.0 or https://dot.net)."; exit 1; }
dotnet build src/BitBudget.Cli -c Release -v quiet -nologo
./bitbudget inspect ../shared/assets/cifar10/resnet20.onnx
