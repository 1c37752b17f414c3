using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Clado;
using BitBudget.Runtime;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Clado;

/// <summary>When CLADO's sessions do not fit the budget, the "what would fit" figure comes from the measured cost of the sessions loaded.</summary>
public class SessionBudgetTests
{
    const long MiB = 1L << 20;

    [Fact]
    public void WouldFit_UsesTheConesMeasuredCostNotTheFirstSessions()
    {
        // 500 MiB before loading, the full-precision session adds 100 MiB, then 4 cones add 2 MiB each; 25 sessions in all.
        long before = 500 * MiB, afterFirst = 600 * MiB, resident = 608 * MiB;
        long perCone = SegmentEvaluator.PerSessionCost(before, afterFirst, resident, loaded: 5);
        Assert.Equal(2 * MiB, perCone);
        Assert.Equal(608 * MiB + 20 * 2 * MiB, SegmentEvaluator.WouldFit(resident, perCone, loaded: 5, total: 25));
        // The old estimate, resident / loaded × total, assumed every session cost the same: 3,040 MiB here instead of 648.
        Assert.True(SegmentEvaluator.WouldFit(resident, perCone, 5, 25) < resident / 5 * 25);
        // Only the first loaded: its own cost stands in for the rest.
        Assert.Equal(100 * MiB, SegmentEvaluator.PerSessionCost(before, afterFirst, afterFirst, loaded: 1));
    }

    [Fact]
    public void TinyModelWithTinyBudget_StopsWhileLoadingWithOneLineSayingWhatWouldFit()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(TinyModels.Classifier());
        var config = BitConfig.Uniform(8).Resolve(summary.Layers).Select(c => c with { Searchable = true }).ToArray();
        Dataset data = Dataset.FromArrays(OrtHelpers.Deterministic(8 * 192, seed: 3), [0, 1, 2, 0, 1, 2, 0, 1], [3, 8, 8], ["a", "b", "c"]);
        var input = new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), null, data);
        var options = new SensitivityOptions { BatchSize = 4, CandidateBits = [2, 8], Runtime = RuntimeOptions.Default with { MaxMemory = MiB } };

        var e = Assert.Throws<BitBudgetException>(() => CladoSensitivity.Measure(input, options));

        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.StartsWith("--max-memory 1 MiB is too small for the CLADO measurement: after 1 of its 7 sessions ", e.Message);
        Assert.Contains("per cone session beyond the weights they share", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // The estimate is at least what is in use already (one session loaded: its own cost stands in for the 6 cones).
        string[] words = e.Message.Split(' ');
        int at = Array.LastIndexOf(words, "about");
        double wouldFit = double.Parse(words[at + 1], System.Globalization.CultureInfo.InvariantCulture) * (words[at + 2] == "GiB" ? 1024 : 1);
        Assert.True(wouldFit * MiB >= 0.9 * ProcessMemory.CurrentRss, e.Message);
    }
}
