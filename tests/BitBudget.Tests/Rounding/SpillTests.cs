using BitBudget.Data;
using BitBudget.Quantization;
using BitBudget.Runtime;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Rounding;

/// <summary>
/// Issue 16: what the CLADO measurement does not read (GPTQ's H, the calibration images) waits in a temporary file meanwhile,
/// and comes back bit for bit when a later stage reads it.
/// </summary>
public class SpillTests
{
    [Fact]
    public void ASpilledArrayLeavesNoFileBehindAndComesBackBitForBit()
    {
        using var dir = new Assets.TempDir();
        double[] values = [.. Enumerable.Range(0, 100_003).Select(i => Math.Sin(i) * 1e-300 + (i % 7 == 0 ? double.Epsilon : 0))];
        double[] copy = [.. values];
        var spillable = new SpillableArray<double>(values);
        Assert.Equal(100_003L * sizeof(double), spillable.Bytes);

        Assert.Equal(spillable.Bytes, spillable.Spill(dir.Path));
        Assert.True(spillable.IsSpilled);
        Assert.Equal(0, spillable.Spill(dir.Path));   // already in its file
        // The file is unlinked while open: a process killed now leaves nothing in the folder.
        Assert.Empty(Directory.GetFiles(dir.Path));

        double[] back = spillable.Value;
        Assert.False(spillable.IsSpilled);
        Assert.NotSame(values, back);
        Assert.Equal(copy, back);
        Assert.Same(back, spillable.Value);   // read back once, then held
    }

    [Fact]
    public void AnArrayThatCannotBeWrittenStaysInMemory()
    {
        float[] values = [1, 2, 3];
        var spillable = new SpillableArray<float>(values);
        Assert.Equal(0, spillable.Spill(Path.Combine(Path.GetTempPath(), "bitbudget-no-such-folder-" + Guid.NewGuid().ToString("N"))));
        Assert.False(spillable.IsSpilled);
        Assert.Same(values, spillable.Value);
    }

    [Fact]
    public void AnArrayIsNotSpilledIntoMemory()
    {
        // tmpfs holds its files in memory: spilling there would only hide the bytes from the process's resident set.
        const string shm = "/dev/shm";
        Assert.SkipUnless(Directory.Exists(shm) && new DriveInfo(shm).DriveType == DriveType.Ram, $"{shm} is not a tmpfs here");
        var spillable = new SpillableArray<float>(new float[1024]);
        Assert.Equal(0, spillable.Spill(shm));
        Assert.False(spillable.IsSpilled);
    }

    [Fact]
    public void ASpilledDatasetGivesTheSameBatchesAndSubsets()
    {
        Dataset data = Dataset.FromArrays(OrtHelpers.Deterministic(10 * 3 * 4 * 4, 9), [.. Enumerable.Range(0, 10)], [3, 4, 4]);
        float[] batch = data.Batch(3, 4).ToArray();
        Dataset shifted = data.WithLabelOffset(1);   // shares the images
        Assert.Equal(10L * 48 * sizeof(float), data.Spill());
        Assert.True(data.IsSpilled);
        Assert.True(shifted.IsSpilled);
        Assert.Equal(batch, data.Batch(3, 4).ToArray());
        Assert.False(shifted.IsSpilled);
        Assert.Equal(batch, data.Subset([3, 4, 5, 6]).Images.ToArray());
    }

    [Fact]
    public void TensorsRoundedAfterTheRoundingStateWasReleasedAreBitForBitTheSame()
    {
        var (weights, layers) = RoundingCancellationTests.Weights();
        LayerBits Spec(int layer, int bits) => new(layer, layers[layer].Name, bits, 0, true, WeightRange.Mse, true);
        weights.Get(Spec(0, 4));
        long hBytes = Enumerable.Range(0, layers.Count).Sum(i => weights.InputStatistics(i)!.Hessian.LongLength * sizeof(double));

        Assert.Equal(hBytes, weights.ReleaseRoundingState());
        Assert.All(Enumerable.Range(0, layers.Count), i => Assert.True(weights.InputStatistics(i)!.IsSpilled));
        Assert.Equal(0, weights.Factors!.Held);

        var fresh = RoundingCancellationTests.Weights().Weights;
        foreach (var (layer, bits) in new[] { (0, 2), (1, 3), (0, 4) })
        {
            QuantizedTensor after = weights.Get(Spec(layer, bits)), expected = fresh.Get(Spec(layer, bits));
            Assert.Equal(expected.Values.ToArray(), after.Values.ToArray());
            Assert.Equal(expected.Scales.ToArray(), after.Scales.ToArray());
            Assert.Equal(expected.Dequantized.ToArray(), after.Dequantized.ToArray());
            Assert.Equal(expected.Bias, after.Bias);
        }
        Assert.False(weights.InputStatistics(0)!.IsSpilled);   // read back by the rounding that needed it
    }
}
