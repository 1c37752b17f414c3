using System.Reflection;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Rounding;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Pipeline;

/// <summary>
/// Issue 20: the pipeline is staged. <see cref="MpqPipeline.Calibrate"/> returns a <see cref="CalibratedPipeline"/>, and only that
/// type offers the steps that need calibration, so measuring, simulating or exporting an uncalibrated pipeline does not compile.
/// </summary>
public class StagedPipelineTests
{
    const BindingFlags Public = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static;

    static readonly string[] s_calibratedSteps = ["MeasureSensitivity", "Simulate", "Export"];

    [Fact]
    public void OpenedPipeline_HasNoCalibratedStep_SoTheOldMisuseCannotCompile()
    {
        // `MpqPipeline.Open(m).MeasureSensitivity(d)` compiled before (and threw at run time); now the member does not exist.
        foreach (string step in s_calibratedSteps)
        {
            Assert.Empty(typeof(MpqPipeline).GetMember(step, Public));
            Assert.NotEmpty(typeof(CalibratedPipeline).GetMember(step, Public));
        }
        Assert.Equal(typeof(CalibratedPipeline), typeof(MpqPipeline).GetMethod(nameof(MpqPipeline.Calibrate))!.ReturnType);
        Assert.Equal(typeof(MpqPipeline), typeof(MpqPipeline).GetMethod(nameof(MpqPipeline.Open), [typeof(string), typeof(PipelineOptions)])!.ReturnType);
        Assert.True(typeof(CalibratedPipeline).IsSubclassOf(typeof(MpqPipeline)));   // every opened step stays available after calibrating
    }

    [Fact]
    public void CalibratedPipeline_CanOnlyComeFromCalibrate()
    {
        // No constructor a user can call or inherit: not public, not protected (the base's is private protected).
        static bool Reachable(ConstructorInfo c) => c.IsPublic || c.IsFamily || c.IsFamilyOrAssembly;
        Assert.DoesNotContain(typeof(CalibratedPipeline).GetConstructors(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance), Reachable);
        Assert.DoesNotContain(typeof(MpqPipeline).GetConstructors(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance), Reachable);
        Assert.True(typeof(CalibratedPipeline).IsSealed);
    }

    [Fact]
    public void Calibrate_ReturnsANewStage_AndLeavesTheOpenedPipelineAsItWas()
    {
        MpqPipeline opened = MpqPipeline.Open(Assets.Mnist8);
        Dataset first = SharedData.MnistTest.Subset([.. Enumerable.Range(0, 64)], "first 64");
        Dataset second = SharedData.MnistTest.Subset([.. Enumerable.Range(64, 64)], "next 64");
        CalibratedPipeline a = opened.Calibrate(first, TestContext.Current.CancellationToken);
        CalibratedPipeline b = opened.Calibrate(second, TestContext.Current.CancellationToken);
        Assert.IsNotType<CalibratedPipeline>(opened);
        Assert.Equal(first.Hash, a.CalibrationHash);
        Assert.Equal(second.Hash, b.CalibrationHash);   // calibrating again does not change the first stage
        Assert.NotEqual(a.CalibrationHash, b.CalibrationHash);
        Assert.NotNull(a.Activations);
        Assert.NotSame(a.Activations, b.Activations);
        Assert.Same(opened.Summary, a.Summary);         // the stages share the prepared model and inventory
        Assert.Same(opened.Prepared, b.Prepared);
        Assert.Equal(opened.Policy, a.Policy);
    }

    [Fact]
    public void WeightsOnlyRoundToNearest_CalibrateNeedsNoStatistics_AndExportsWhatItSimulates()
    {
        // With --activations none and round-to-nearest nothing is calibrated: the images only check every export.
        var options = PipelineOptions.Default with { ActivationBits = 0, Rounding = WeightRounding.RoundToNearest };
        CalibratedPipeline p = MpqPipeline.Open(Assets.Mnist8, options).Calibrate(SharedData.MnistTest.Subset([.. Enumerable.Range(0, 16)]), TestContext.Current.CancellationToken);
        Assert.Null(p.Activations);
        var config = p.Uniform(4);
        using var dir = new Assets.TempDir();
        Dataset eval = SharedData.MnistTest.Subset([.. Enumerable.Range(1000, 500)]);
        EvaluationResult exported = p.Evaluate(p.Export(config, dir.File("w4.onnx")).Model, eval);
        EvaluationResult simulated = p.Evaluate(p.Simulate(config), eval);
        Assert.InRange(exported.Top1, 90, 100);   // mnist-8 scores ~98.9 % in float; W4 weights only stays close
        Assert.InRange(Math.Abs(exported.Top1 - simulated.Top1), 0, 0.2);
    }

    [Fact]
    public void OmpqHeldOutBeta_OnTheOpenedPipeline_AsksForTheCalibratedOne()
    {
        // OMPQ's held-out β simulates its candidates; the option is a value, so this one order error is caught at run time.
        MpqPipeline opened = MpqPipeline.Open(Assets.Mnist8);
        Dataset images = SharedData.MnistTest.Subset([.. Enumerable.Range(0, 32)]);
        var e = Assert.Throws<InvalidOperationException>(() => opened.SearchOmpq(images, Budget.Parse("5bits"), TestContext.Current.CancellationToken, heldOut: images));
        Assert.Contains("CalibratedPipeline", e.Message, StringComparison.Ordinal);
    }
}
