using BitBudget.Tests.Support;

namespace BitBudget.Tests.CommandLine;

/// <summary>
/// The CLI tells the garbage collector its --max-memory (GCHeapHardLimit): without it the GC sized collections from the
/// machine's 24 GB and let GPTQ's short-lived buffers pile up to 14 GB under a 3 GiB budget (ResNet-18 sensitivity).
/// </summary>
public sealed class ManagedHeapLimitTests
{
    [Fact]
    public void Budget_BecomesTheGarbageCollectorsHeapLimit()
    {
        string model = Assets.Require("mnist/mnist-8.onnx");
        string data = Assets.Require("mnist/t10k-images-idx3-ubyte");
        CliRunner.Result r = CliRunner.Run("eval", model, "--data", data, "--max-memory", "700MiB", "--verbose");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("memory: budget 700 MiB, managed heap limit 700 MiB", r.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void TinyBudget_IsReportedByThePassWithWhatWouldFit_NotAsOutOfMemory()
    {
        // The limit never goes below 256 MiB, so a budget below what the runtime needs gets the pass's own message.
        string model = Assets.Require("mnist/mnist-8.onnx");
        string data = Assets.Require("mnist/t10k-images-idx3-ubyte");
        CliRunner.Result r = CliRunner.Run("eval", model, "--data", data, "--max-memory", "1MiB", "--verbose");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("managed heap limit 256 MiB", r.Stderr, StringComparison.Ordinal);
        Assert.Matches("^error: --max-memory 1 MiB is too small for the evaluation: .* would fit\\.$", r.ErrorLine);
    }
}
