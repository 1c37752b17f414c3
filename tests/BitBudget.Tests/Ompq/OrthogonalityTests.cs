using BitBudget.Cli.Commands;
using BitBudget.Graph;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Clado;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Ompq;

/// <summary>The proxy and the whole search on the shipped models.</summary>
public class OrthogonalityTests(ITestOutputHelper output)
{
    static readonly Lazy<(float[] Images, int[] Labels)> s_cifar = new(() => Assets.EranCifar(32));

    [Fact]
    public void ResNet20_SearchAt4Bits_UnitsOrmThetaAndBits()
    {
        (float[] images, _) = s_cifar.Value;
        OmpqSearchResult r = OmpqSearch.Run(Assets.ResNet20, images, [32, 3, 32, 32], Budget.Parse("4bits"), cancellationToken: TestContext.Current.CancellationToken);
        output.WriteLine(r.Units.Format());

        Assert.Equal(18, r.Units.Units.Count);
        Assert.Equal([0, 21], r.Units.FixedLayers);
        Assert.Equal([8, 9], r.Units.Units[7].Layers);     // downsample conv #9 grouped with the conv closing its block
        Assert.Equal([15, 16], r.Units.Units[13].Layers);
        Assert.Equal(FeatureRule.Activation, r.Units.Units[0].Rule);
        Assert.Equal(FeatureRule.BlockOutput, r.Units.Units[1].Rule);

        double[][] orm = r.Proxy.Orm;
        for (int i = 0; i < 18; i++)
        {
            Assert.Equal(1.0, orm[i][i]);
            for (int j = 0; j < 18; j++)
            {
                Assert.Equal(orm[i][j], orm[j][i]);
                Assert.InRange(orm[i][j], 0, 1 + 1e-12);
            }
        }
        // Consecutive units see almost the same representation; the ORM is far from the identity.
        Assert.InRange(orm[0][1], 0.5, 1);
        Assert.InRange(r.Proxy.Gamma.Min(), 5, 17);
        // With β = 10 the unnormalized θ underflows far below 1e-40 and the normalized θ is one-hot: reported, not hidden.
        Assert.True(r.Proxy.Log10RawTheta.Max() < -40);
        Assert.Equal(ThetaEffect.OneHot, r.Proxy.Effect);
        Assert.Contains(r.Proxy.Notes, n => n.Contains("one-hot", StringComparison.Ordinal));
        Assert.Equal(1.0, r.Proxy.Theta.Max());

        Assert.Equal(22, r.LayerBits.Count);
        Assert.Equal(8, r.LayerBits[0]);
        Assert.Equal(8, r.LayerBits[21]);
        Assert.Equal(r.LayerBits[8], r.LayerBits[9]);
        Assert.All(r.LayerBits, b => Assert.Contains(b, new[] { 2, 4, 8 }));
        long bits = r.Summary.Layers.Sum(l => l.WeightCount * r.LayerBits[l.Index]);
        Assert.Equal(r.Allocation.UsedBits, bits);
        Assert.True(bits <= 4 * 270_896);
        Assert.InRange(r.Allocation.AverageBits, 3.9, 4.0);
        Assert.Equal("OPTIMAL", r.Allocation.IlpStatus);
    }

    [Fact]
    public void ResNet20_OrmEntry_MatchesNaiveReferenceFromPlainOrt()
    {
        (float[] images, _) = s_cifar.Value;
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        OmpqUnitMap units = OmpqUnits.Build(prepared, summary);
        OrthogonalityResult r = Orthogonality.Measure(prepared, units, images, [32, 3, 32, 32],
            new OrthogonalityOptions { Beta = 0.5, MaxFeatureBytes = 4 << 20 }, cancellationToken: TestContext.Current.CancellationToken);   // small cap: several passes
        Assert.True(r.Passes > 1);
        Assert.Equal(ThetaEffect.Informative, r.Effect);

        byte[] model = prepared.WithOutputs([units.Units[2].FeatureTensor, units.Units[12].FeatureTensor]).ToBytes();
        float[] x = OrtHelpers.Run(model, prepared.InputName, images, [32, 3, 32, 32], units.Units[2].FeatureTensor);
        float[] y = OrtHelpers.Run(model, prepared.InputName, images, [32, 3, 32, 32], units.Units[12].FeatureTensor);
        Assert.Equal(32 * 16384, x.Length);
        Assert.Equal(NaiveCenteredCka(x, y, 32), r.Orm[2][12], 1e-5);
    }

    static double NaiveCenteredCka(float[] x, float[] y, int n)
    {
        double[,] kx = Gram(x, n), ky = Gram(y, n);
        double xy = 0, xx = 0, yy = 0;
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < n; b++) { xy += kx[a, b] * ky[a, b]; xx += kx[a, b] * kx[a, b]; yy += ky[a, b] * ky[a, b]; }
        }
        return xy / Math.Sqrt(xx * yy);

        static double[,] Gram(float[] f, int n)
        {
            int d = f.Length / n;
            var mean = new double[d];   // centering the features is the same as H K H
            for (int a = 0; a < n; a++) { for (int e = 0; e < d; e++) { mean[e] += f[a * d + e] / (double)n; } }
            var k = new double[n, n];
            for (int a = 0; a < n; a++)
            {
                for (int b = 0; b < n; b++)
                {
                    double s = 0;
                    for (int e = 0; e < d; e++) { s += (f[a * d + e] - mean[e]) * (f[b * d + e] - mean[e]); }
                    k[a, b] = s;
                }
            }
            return k;
        }
    }

    [Fact]
    public void SqueezeNet_FireModules_EveryConvIsItsOwnUnitWithItsRelu()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.SqueezeNet));
        OmpqUnitMap units = OmpqUnits.Build(prepared, summary);
        output.WriteLine(units.Format());
        Assert.Equal(24, units.Units.Count);
        Assert.Equal([0, 25], units.FixedLayers);
        Assert.All(units.Units, u => Assert.Equal(FeatureRule.Activation, u.Rule));
        Assert.All(units.Units, u => Assert.Single(u.Layers));
        Assert.Equal("relu1", units.Units[0].FeatureTensor);
        Assert.Equal(193_600, units.Units[1].FeatureSize);   // expand1x1 of fire2: 64×55×55, before the Concat
    }

    [Fact]
    public void SqueezeNet_4BitsOverAllLayers_IsInfeasibleWithTheMinimum()
    {
        var e = Assert.Throws<BitBudgetException>(() =>
            OmpqSearch.Run(Assets.SqueezeNet, new float[2 * 3 * 224 * 224], [2, 3, 224, 224], Budget.Parse("4bits"), cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(ErrorKind.Infeasible, e.Kind);
        Assert.Contains("needs 4.5028 avg bits (all layers)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SqueezeNet_SearchOnRealImages_AtFiveAndAHalfBits()
    {
        var data = SharedData.ImageNet("all", 8);
        float[] images = data.Images.ToArray();
        long[] shape = [data.Count, 3, 224, 224];
        OmpqSearchResult r = OmpqSearch.Run(Assets.SqueezeNet, images, shape, Budget.Parse("5.5bits"),
            new OmpqOptions { Proxy = new OrthogonalityOptions { Beta = 1 } }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(24, r.Proxy.Gamma.Length);
        Assert.All(r.Proxy.Gamma, g => Assert.InRange(g, 0.5, 23));
        Assert.True(r.Allocation.AverageBits <= 5.5);
        Assert.InRange(r.Allocation.AverageBits, 5.3, 5.5);
        Assert.Equal(8, r.LayerBits[25]);
    }

    [Fact]
    public void Mnist8_OneSearchedUnit_ThetaHasNoEffectAndSaysSo()
    {
        var images = new float[4 * 784];
        for (int i = 0; i < images.Length; i++) { images[i] = (i * 37 % 255); }
        OmpqSearchResult r = OmpqSearch.Run(Assets.Mnist8, images, [4, 1, 28, 28], Budget.Parse("3bits-searched"), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Single(r.Units.Units);
        Assert.Equal("ReLU114_Output_0", r.Units.Units[0].FeatureTensor);
        Assert.Equal(ThetaEffect.Uniform, r.Proxy.Effect);
        Assert.Contains(r.Proxy.Notes, n => n.StartsWith("Only one decision unit", StringComparison.Ordinal));
        Assert.Equal(2, r.Allocation.Bits[0]);   // 3 bits over 3,200 weights: 4 does not fit, 2 does
        Assert.Equal([8, 2, 8], r.LayerBits);
    }

    [Fact]
    public void Measure_BatchOfWrongShape_ThrowsInvalidInput()
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        OmpqUnitMap units = OmpqUnits.Build(prepared, summary);
        var e = Assert.Throws<BitBudgetException>(() => Orthogonality.Measure(prepared, units, new float[2 * 3 * 28 * 28], [2, 3, 28, 28], cancellationToken: TestContext.Current.CancellationToken));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal("The image batch has shape [2,3,28,28] but model '" + prepared.Source + "' expects [N,3,32,32].", e.Message);
    }
}
