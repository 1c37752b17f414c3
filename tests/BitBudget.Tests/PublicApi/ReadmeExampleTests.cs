using BitBudget.Data;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.PublicApi;

/// <summary>The README's "From C#" example, compiled and run on ResNet-20 (smaller samples so it runs in a test).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void FromCSharp_Example_CompilesAndExportsAWorkingModel()
    {
        string model = Assets.ResNet20;
        string cifar = Path.GetDirectoryName(model)!;
        using var dir = new Assets.TempDir();
        string output = dir.File("resnet20-3.5bits.onnx");

        // ---- README "From C#" (paths point at the shared assets; samples 512/256 → 64/8, test limited to 500 images) ----
        var pipeline = MpqPipeline.Open(model);                         // PipelineOptions.Default or .CladoPaper
        Dataset train = DatasetLoader.Load(new DataOptions { Path = Path.Combine(cifar, "train-5k"), Preprocessing = Preprocessing.Cifar10 });
        Dataset test = DatasetLoader.Load(new DataOptions { Path = Path.Combine(cifar, "test"), Preprocessing = Preprocessing.Cifar10, Limit = 500 });
        var calibrated = pipeline.Calibrate(train.Sample(64, seed: 0));          // only a CalibratedPipeline measures, simulates, exports
        var sensitivity = calibrated.MeasureSensitivity(train.Sample(8, seed: 1));
        var result = calibrated.Search(SearchMethod.Clado, [Budget.Parse("3.5bits")], sensitivity);
        var exported = calibrated.Export(calibrated.Configuration(result.Bits), output);
        double top1 = calibrated.Evaluate(exported.Model, test).Top1;
        // ---- end of the example ----

        Assert.True(File.Exists(output));
        Assert.InRange(result.AverageBits, 2.0, 3.5 + 1e-9);
        // ResNet-20 scores 91–92 % in float (assets README); a 3.5-bit CLADO model that ran at all stays far above chance (10 %).
        Assert.InRange(top1, 50, 100);
    }
}
