using System.Text.Json;
using BitBudget.Graph;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Pipeline;

/// <summary>Issue 17 items 1, 4 and 6 through the command line: exit codes and files, never a crash or a silent number.</summary>
public class SilentWrongCliTests
{
    [Fact]
    public void SensitivityJson_AllLossesFromTheStore_IsValidJson()
    {
        using var dir = new Assets.TempDir();
        string idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        string[] sensitivity = ["sensitivity", Assets.Mnist8, "--calib", idx, "--calib-images", "64", "--sens-images", "32", "--first-bits", "search",
            "--last-bits", "search", "--store", dir.File("s.db")];
        Assert.Equal(0, Cli.Program.Run([.. sensitivity, "-o", dir.File("first.json")]));
        Assert.Equal(0, Cli.Program.Run([.. sensitivity, "-o", dir.File("again.json")]));   // every loss from the store: nothing executed
        using JsonDocument first = JsonDocument.Parse(File.ReadAllText(dir.File("first.json")));
        using JsonDocument again = JsonDocument.Parse(File.ReadAllText(dir.File("again.json")));
        Assert.Equal(JsonValueKind.Number, first.RootElement.GetProperty("flop_ratio").ValueKind);
        Assert.Equal(JsonValueKind.Null, again.RootElement.GetProperty("flop_ratio").ValueKind);
        Assert.Equal(0, again.RootElement.GetProperty("evaluations").GetInt64());
        Assert.Equal(first.RootElement.GetProperty("omega").EnumerateArray().Select(v => v.GetDouble()),
            again.RootElement.GetProperty("omega").EnumerateArray().Select(v => v.GetDouble()));
    }

    [Fact]
    public void SimulationExportGapAboveHalfAPoint_FailsAndDeletesTheModel()
    {
        using var dir = new Assets.TempDir();
        string model = dir.File("m.onnx");
        File.WriteAllText(model, "x");
        BitBudget.Workflow.RunWorkflow.CheckSimulationGap("clado @ 3bits", 98.4, 98.9, model);   // 0.5 apart: fine
        Assert.True(File.Exists(model));
        var e = Assert.Throws<BitBudgetException>(() => BitBudget.Workflow.RunWorkflow.CheckSimulationGap("clado @ 3bits", 5.1, 98.9, model));
        Assert.Equal(ErrorKind.Runtime, e.Kind);
        Assert.Equal("clado @ 3bits: the exported model scores 5.10 % top-1 but its simulation 98.90 % (more than 0.5 points apart); the exported model was deleted.", e.Message);
        Assert.False(File.Exists(model));
    }

    [Fact]
    public void StrictJson_WritesNonFiniteAsNull()
    {
        // Every --json record goes through Ui.ToJson: NaN and infinities become null (JSON has none), finite numbers stay.
        string text = Cli.Ui.ToJson(new Cli.EvalJson("m.onnx", "d", "h", 1, double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1.5, "out", "logits", 0));
        using JsonDocument doc = JsonDocument.Parse(text);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("top1").ValueKind);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("top5").ValueKind);
        Assert.Equal(JsonValueKind.Null, doc.RootElement.GetProperty("cross_entropy").ValueKind);
        Assert.Equal(1.5, doc.RootElement.GetProperty("images_per_second").GetDouble());
        string spectrum = Cli.Ui.ToJson(new Cli.SpectrumJson(double.NaN, 2.5, 0));
        using JsonDocument s = JsonDocument.Parse(spectrum);
        Assert.Equal(JsonValueKind.Null, s.RootElement.GetProperty("min").ValueKind);
        Assert.Equal(2.5, s.RootElement.GetProperty("max").GetDouble());
    }

    [Fact]
    public void NaNWeightModel_EvalAndQuantizeExitWithInvalidInput_NoOutput()
    {
        using var dir = new Assets.TempDir();
        string idx = Assets.Require("mnist/t10k-images-idx3-ubyte");
        OnnxModel model = OnnxModel.Load(Assets.Mnist8);
        var weight = model.FindInitializer("Parameter87")!;
        float[] values = TensorData.ReadFloats(weight);
        values[3] = float.NaN;
        TensorData.SetFloats(weight, values);
        model.Save(dir.File("nan.onnx"));

        // Before: top-1 100 %, exit 0 (every comparison with NaN is false, so the label ranked first).
        Assert.Equal(2, Cli.Program.Run(["eval", dir.File("nan.onnx"), "--data", idx, "--limit", "100", "--json", "--no-cache"]));
        Assert.Equal(2, Cli.Program.Run(["quantize", dir.File("nan.onnx"), "--bits", "4", "--rounding", "rtn", "-o", dir.File("q.onnx")]));
        Assert.False(File.Exists(dir.File("q.onnx")));
    }
}
