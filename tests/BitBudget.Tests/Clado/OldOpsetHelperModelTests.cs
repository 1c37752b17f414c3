using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>
/// Issue 17 item 9: an opset-8 model with every layer searched and A8 inputs. The CLADO base then quantizes nothing, so nothing
/// raised its opset, and the cones' float fake quantization (Round, opset 11) failed to load: "No Op registered for Round with
/// domain_version of 8".
/// </summary>
public class OldOpsetHelperModelTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Opset8_EverySearchedLayerWithA8_ConesAndNaiveLoopRun(bool naive)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(TinyModels.Classifier(opset: 8));
        Assert.Equal(8, prepared.Opset);
        var config = BitConfig.Uniform(8, activationBits: 8).Resolve(summary.Layers).Select(c => c with { Searchable = true }).ToArray();
        var activations = new Dictionary<string, ActivationParams>
        {
            ["conv"] = ActivationObserver.FromRange(-1f, 1f, 8),
            ["fc1"] = ActivationObserver.FromRange(0f, 2f, 8),
            ["fc2"] = ActivationObserver.FromRange(0f, 2f, 8),
        };
        Dataset data = Dataset.FromArrays(OrtHelpers.Deterministic(8 * 192, seed: 3), [0, 1, 2, 0, 1, 2, 0, 1], [3, 8, 8], ["a", "b", "c"]);
        var input = new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), activations, data);

        SensitivityResult result = CladoSensitivity.Measure(input, new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 4, CandidateBits = [2, 8], Naive = naive });

        Assert.True(result.Complete);
        Assert.All(result.Omega.ToRowMajorArray(), v => Assert.True(double.IsFinite(v)));
        Assert.Contains(result.Omega.ToRowMajorArray(), v => v != 0);
    }

    [Fact]
    public void Opset8_SimulationWithA8_IsRaisedAndRuns()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(TinyModels.Classifier(opset: 8));
        var config = BitConfig.Uniform(2, activationBits: 8).Resolve(summary.Layers).Select(c => c with { WeightBits = 2 }).ToArray();
        var activations = summary.Layers.ToDictionary(l => l.Name, _ => ActivationObserver.FromRange(-1f, 2f, 8));
        OnnxModel simulated = QuantSimulator.Build(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), activations);
        Assert.True(simulated.Opset >= 11);
        float[] x = OrtHelpers.Deterministic(2 * 192, seed: 4);
        Assert.Equal(6, OrtHelpers.Run(simulated.ToBytes(), "x", x, [2, 3, 8, 8]).Length);
    }
}
