using System.CommandLine;
using BitBudget.Cli;
using BitBudget.Cli.Commands;
using BitBudget.Pipeline;
using BitBudget.Quantization;

namespace BitBudget.Tests.CommandLine;

/// <summary>Issue 21: one activation-range rule everywhere — quantize used to default to percentile while run used min-max.</summary>
public class ActivationCalibrationDefaultTests
{
    [Fact]
    public void QuantizeAndRunShareTheActivationCalibrationDefault()
    {
        Command quantize = QuantizeCommand.Create();
        ParseResult q = quantize.Parse(["model.onnx", "-o", "out.onnx"]);
        var option = (Option<ActivationCalibration>)quantize.Options.Single(o => o.Name == "--act-calibration");
        Assert.Equal(PipelineOptions.Default.ActivationCalibration, q.GetValue(option));

        var args = new PipelineArguments();
        var run = new Command("probe");
        args.AddTo(run);
        ParseResult r = run.Parse(["--calib", "data"]);
        Assert.Empty(r.Errors);
        Assert.Equal(PipelineOptions.Default.ActivationCalibration, args.Options(r).ActivationCalibration);
        Assert.Equal(ActivationCalibration.Percentile, args.Options(run.Parse(["--calib", "data", "--act-calibration", "percentile"])).ActivationCalibration);
        // The paper preset keeps its own MSE calibration.
        Assert.Equal(ActivationCalibration.Mse, PipelineOptions.CladoPaper.ActivationCalibration);
    }
}
