using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Numerics;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Rounding;

public class GptqTests
{
    static readonly Lazy<(OnnxModel Prepared, ModelSummary Summary, IReadOnlyList<LayerStatistics> Stats)> s_resnet = new(() =>
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        (float[] images, _) = Assets.EranCifar(64);
        var batches = new[] { (images[..(32 * 3072)], new long[] { 32, 3, 32, 32 }), (images[(32 * 3072)..], new long[] { 32, 3, 32, 32 }) };
        return (prepared, summary, LayerInputStatistics.Collect(prepared, summary.Layers, batches));
    });

    /// <summary>
    /// The inverse factor is THE upper Cholesky factor of A⁻¹ (unique): upper triangular, positive diagonal, and UᵀU·A = I,
    /// checked on a well- and an ill-conditioned SPD matrix; an indefinite A gives null (which makes Factor dampen more).
    /// </summary>
    [Theory]
    [InlineData(40, 1.0)]
    [InlineData(97, 1e-7)]
    public void InverseUpperFactor_IsTheUpperCholeskyFactorOfTheInverse(int k, double ridge)
    {
        var random = new Random(k);
        var x = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(k, k / 2, (_, _) => random.NextDouble() - 0.5);
        var a = x * x.Transpose() + ridge * MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseIdentity(k);
        double[] u = Gptq.InverseUpperFactor(a.ToRowMajorArray(), k)!;
        Assert.NotNull(u);
        for (int i = 0; i < k; i++)
        {
            Assert.True(u[i * k + i] > 0);
            for (int j = 0; j < i; j++) { Assert.Equal(0, u[i * k + j]); }
        }
        var um = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseOfRowMajor(k, k, u);
        var identity = um.TransposeThisAndMultiply(um) * a;
        double condition = a.ConditionNumber();
        for (int i = 0; i < k; i++)
        {
            for (int j = 0; j < k; j++) { Assert.Equal(i == j ? 1 : 0, identity[i, j], 1e-13 * condition); }
        }
        var indefinite = a.ToRowMajorArray();
        indefinite[0] = -1;
        Assert.Null(Gptq.InverseUpperFactor(indefinite, k));
    }

    /// <summary>
    /// The factor is computed in one K × K array (memory: ResNet-18's 4,608-wide layers); it must be bit for bit what the
    /// three-array route (reversed A, then L, then L⁻¹, then U) gives, written out here as it was.
    /// </summary>
    [Theory]
    [InlineData(1, 1.0)]
    [InlineData(65, 1e-3)]
    [InlineData(130, 1e-7)]
    public void InverseUpperFactor_InOneArray_IsBitIdenticalToTheThreeArrayRoute(int k, double ridge)
    {
        var random = new Random(k + 7);
        var x = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(k, Math.Max(1, k / 2), (_, _) => random.NextDouble() - 0.5);
        double[] a = (x * x.Transpose() + ridge * MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.DenseIdentity(k)).ToRowMajorArray();
        double[] expected = ThreeArrayInverseUpperFactor(a, k)!;
        double[] inPlace = (double[])a.Clone();
        Assert.True(Gptq.InverseUpperFactorInPlace(inPlace, k));
        Assert.Equal(expected.Select(BitConverter.DoubleToInt64Bits), inPlace.Select(BitConverter.DoubleToInt64Bits));
        Assert.Equal(expected.Select(BitConverter.DoubleToInt64Bits), Gptq.InverseUpperFactor(a, k)!.Select(BitConverter.DoubleToInt64Bits));
    }

    static double[]? ThreeArrayInverseUpperFactor(double[] a, int k)
    {
        var l = new double[k * k];
        for (int i = 0; i < k; i++)
        {
            int ri = k - 1 - i;
            Span<double> li = l.AsSpan(i * k, k);
            for (int j = 0; j <= i; j++)
            {
                double s = a[ri * k + (k - 1 - j)] - System.Numerics.Tensors.TensorPrimitives.Dot<double>(li[..j], l.AsSpan(j * k, j));
                if (j == i)
                {
                    if (!(s > 0)) { return null; }
                    li[i] = Math.Sqrt(s);
                }
                else { li[j] = s / l[j * k + j]; }
            }
        }
        var m = new double[k * k];
        for (int i = 0; i < k; i++)
        {
            Span<double> mi = m.AsSpan(i * k, i + 1);
            for (int t = 0; t < i; t++)
            {
                double c = -l[i * k + t];
                if (c != 0) { System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(m.AsSpan(t * k, i + 1), c, mi, mi); }
            }
            mi[i] += 1;
            System.Numerics.Tensors.TensorPrimitives.Multiply(mi, 1 / l[i * k + i], mi);
        }
        var u = new double[k * k];
        for (int i = 0; i < k; i++)
        {
            for (int j = i; j < k; j++) { u[i * k + j] = m[(k - 1 - i) * k + (k - 1 - j)]; }
        }
        return u;
    }

    /// <summary>The GPTQ rule written out plainly: damp, permute, invert (Gauss-Jordan), Cholesky, then one column at a time over the whole row.</summary>
    static (sbyte[] Levels, double[] U) Reference(float[] w, int rows, int k, float[] scales, int bits, double[] h, bool actOrder)
    {
        h = (double[])h.Clone();
        var wd = new double[rows * k];
        for (int i = 0; i < wd.Length; i++) { wd[i] = w[i]; }
        for (int i = 0; i < k; i++)
        {
            if (h[i * k + i] == 0)
            {
                h[i * k + i] = 1;
                for (int r = 0; r < rows; r++) { wd[r * k + i] = 0; }
            }
        }
        int[] perm = Enumerable.Range(0, k).ToArray();
        if (actOrder) { perm = perm.OrderByDescending(i => h[i * k + i]).ThenBy(i => i).ToArray(); }
        double damp = 0.01 * Enumerable.Range(0, k).Average(i => h[i * k + i]);
        var a = new double[k, 2 * k];
        for (int i = 0; i < k; i++)
        {
            for (int j = 0; j < k; j++) { a[i, j] = h[perm[i] * k + perm[j]] + (i == j ? damp : 0); }
            a[i, k + i] = 1;
        }
        for (int c = 0; c < k; c++)   // Gauss-Jordan without pivoting (A is positive definite)
        {
            double p = a[c, c];
            for (int j = 0; j < 2 * k; j++) { a[c, j] /= p; }
            for (int r = 0; r < k; r++)
            {
                if (r == c) { continue; }
                double f = a[r, c];
                for (int j = 0; j < 2 * k; j++) { a[r, j] -= f * a[c, j]; }
            }
        }
        var l = new double[k, k];   // Hinv = L Lᵀ, U = Lᵀ
        for (int i = 0; i < k; i++)
        {
            for (int j = 0; j <= i; j++)
            {
                double s = a[i, k + j];
                for (int t = 0; t < j; t++) { s -= l[i, t] * l[j, t]; }
                l[i, j] = i == j ? Math.Sqrt(s) : s / l[j, j];
            }
        }
        var u = new double[k * k];
        for (int i = 0; i < k; i++) { for (int j = i; j < k; j++) { u[i * k + j] = l[j, i]; } }
        var levels = new sbyte[rows * k];
        double qMin = -(1 << (bits - 1)), qMax = (1 << (bits - 1)) - 1;
        for (int r = 0; r < rows; r++)
        {
            var row = new double[k];
            for (int i = 0; i < k; i++) { row[i] = wd[r * k + perm[i]]; }
            for (int i = 0; i < k; i++)
            {
                double q = Math.Clamp(Math.Round(row[i] / scales[r]), qMin, qMax);
                levels[r * k + perm[i]] = (sbyte)q;
                double e = (row[i] - q * scales[r]) / u[i * k + i];
                for (int j = i + 1; j < k; j++) { row[j] -= e * u[i * k + j]; }
            }
        }
        return (levels, u);
    }

    static double[] RandomGram(int k, int columns, int seed, int deadColumn = -1)
    {
        float[] x = OrtHelpers.Deterministic(columns * k, seed);
        if (deadColumn >= 0) { for (int c = 0; c < columns; c++) { x[c * k + deadColumn] = 0; } }
        return StatisticsReference.RowGram(x, k);
    }

    [Theory]
    [InlineData(2, true)]
    [InlineData(4, true)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    public void Quantize_TinyLayer_MatchesPlainSequentialReferenceExactly(int bits, bool actOrder)
    {
        const int rows = 5, k = 7;
        float[] w = OrtHelpers.Deterministic(rows * k, seed: 31 + bits);
        double[] h = RandomGram(k, 12, seed: 41, deadColumn: 3);
        for (int i = 0; i < k; i++) { h[i * k + i] += i == 3 ? 0 : i * 0.3; }   // distinct diagonal, so act-order really permutes; column 3 stays dead
        float[] scales = WeightQuantizer.RowScales(w, rows, k, bits);
        var options = new GptqOptions { ActOrder = actOrder, RowTile = 2 };

        GptqFactor factor = Gptq.Factor(SquareMatrix.Copy(h, k), options);
        RoundedWeights result = Gptq.Quantize(w, rows, scales, bits, factor, options);
        (sbyte[] expected, double[] u) = Reference(w, rows, k, scales, bits, h, actOrder);

        for (int i = 0; i < u.Length; i++) { Assert.Equal(u[i], factor.U[i], 1e-10); }
        Assert.Equal(expected, result.Levels);
        Assert.All(Enumerable.Range(0, rows), r => Assert.Equal(0, result.Levels[r * k + 3]));
        for (int r = 0; r < rows; r++)
        {
            double direct = Gptq.OutputError(w.AsSpan(r * k, k), result.Dequantized.AsSpan(r * k, k), SquareMatrix.Copy(h, k));
            Assert.Equal(direct, result.OutputErrors![r], 1e-9 * Math.Max(1, direct));
        }
        for (int i = 0; i < w.Length; i++) { Assert.Equal(result.Levels[i] * scales[i / k], result.Dequantized[i]); }
        if (actOrder) { Assert.NotEqual(Enumerable.Range(0, k), factor.Order); }
    }

    [Fact]
    public void Quantize_EveryResNet20Layer_OutputErrorAtMostRoundToNearest()
    {
        var (prepared, summary, stats) = s_resnet.Value;
        foreach (int bits in new[] { 2, 4, 8 })
        {
            foreach (LayerInfo layer in summary.Layers)
            {
                LayerStatistics st = stats[layer.Index];
                float[] w = LayerRounder.WeightRows(prepared, layer);
                int rows = (int)layer.OutputChannels, k = st.K;
                float[] scales = WeightQuantizer.RowScales(w, rows, k, bits);
                double[] h = st.H(0).ToArray();
                RoundedWeights rtn = Gptq.RoundToNearest(w, rows, k, scales, bits);
                foreach (bool actOrder in new[] { true, false })
                {
                    var options = new GptqOptions { ActOrder = actOrder };
                    RoundedWeights gptq = Gptq.Quantize(w, rows, scales, bits, Gptq.Factor(SquareMatrix.Copy(h, k), options), options);
                    double eR = 0, eG = 0;
                    for (int r = 0; r < rows; r++)
                    {
                        eR += Gptq.OutputError(w.AsSpan(r * k, k), rtn.Dequantized.AsSpan(r * k, k), SquareMatrix.Copy(h, k));
                        double direct = Gptq.OutputError(w.AsSpan(r * k, k), gptq.Dequantized.AsSpan(r * k, k), SquareMatrix.Copy(h, k));
                        eG += direct;
                        // The pass's own eᵀHe (‖err‖² − damping·‖e‖²), which the scale search ranks candidates by, is the direct one.
                        Assert.True(Math.Abs(gptq.OutputErrors![r] - direct) <= 1e-8 * Math.Max(direct, 1e-12 * h.Max()),
                            $"{layer.Name} {bits}-bit row {r}: pass error {gptq.OutputErrors[r]} vs direct {direct}");
                    }
                    Assert.True(eG <= eR, $"{layer.Name} {bits}-bit act-order {actOrder}: gptq {eG} > rtn {eR}");
                    if (bits <= 4) { Assert.True(eG < 0.9 * eR, $"{layer.Name} {bits}-bit: gptq {eG} barely below rtn {eR}"); }
                }
            }
        }
    }

    [Fact]
    public void Factor_AllZeroAndRankOneHessian_StillQuantize()
    {
        const int rows = 4, k = 8;
        float[] w = OrtHelpers.Deterministic(rows * k, seed: 5);
        float[] scales = WeightQuantizer.RowScales(w, rows, k, 4);

        RoundedWeights zero = Gptq.Quantize(w, rows, scales, 4, Gptq.Factor(SquareMatrix.Copy(new double[k * k], k)));
        Assert.All(zero.Levels, l => Assert.Equal(0, l));   // every input is dead: nothing reaches the output

        var v = OrtHelpers.Deterministic(k, seed: 9);
        var rankOne = new double[k * k];
        for (int i = 0; i < k; i++) { for (int j = 0; j < k; j++) { rankOne[i * k + j] = v[i] * v[j]; } }
        RoundedWeights q = Gptq.Quantize(w, rows, scales, 4, Gptq.Factor(SquareMatrix.Copy(rankOne, k)));
        RoundedWeights rtn = Gptq.RoundToNearest(w, rows, k, scales, 4);
        Assert.All(q.Dequantized, x => Assert.True(float.IsFinite(x)));
        for (int r = 0; r < rows; r++)
        {
            Assert.True(Gptq.OutputError(w.AsSpan(r * k, k), q.Dequantized.AsSpan(r * k, k), SquareMatrix.Copy(rankOne, k))
                <= Gptq.OutputError(w.AsSpan(r * k, k), rtn.Dequantized.AsSpan(r * k, k), SquareMatrix.Copy(rankOne, k)) + 1e-9);
        }
    }

    /// <summary>ResNet-20's layer 5: its weight rows, their count, K, and the GPTQ factor of its input statistics.</summary>
    static (float[] W, int Rows, int K, GptqFactor Factor) ResNet20Layer5()
    {
        var (prepared, summary, stats) = s_resnet.Value;
        LayerInfo layer = summary.Layers[5];
        LayerStatistics st = stats[layer.Index];
        return (LayerRounder.WeightRows(prepared, layer), (int)layer.OutputChannels, st.K, Gptq.Factor(st.Gram(0)));
    }

    [Fact]
    public void QuantizeSearchingScales_ResNet20_NoWorseThanMseScales()
    {
        var (w, rows, k, factor) = ResNet20Layer5();
        float[] ratios = [.. Enumerable.Range(0, 20).Select(i => 1f - 0.04f * i)];
        RoundedWeights mse = Gptq.Quantize(w, rows, WeightQuantizer.RowScales(w, rows, k, 2), 2, factor);
        RoundedWeights searched = Gptq.QuantizeSearchingScales(w, rows, 2, factor, ratios);
        double eM = 0, eS = 0;
        for (int r = 0; r < rows; r++)
        {
            eM += Gptq.OutputError(w.AsSpan(r * k, k), mse.Dequantized.AsSpan(r * k, k), factor.Hessian);
            eS += Gptq.OutputError(w.AsSpan(r * k, k), searched.Dequantized.AsSpan(r * k, k), factor.Hessian);
        }
        Assert.True(eS < eM, $"searched {eS} vs mse {eM}");
        // With the MSE scales as a candidate, no row is worse than at the MSE scales.
        float[] mseScales = WeightQuantizer.RowScales(w, rows, k, 2);
        RoundedWeights withBase = Gptq.QuantizeSearchingScales(w, rows, 2, factor, ratios, baseScales: mseScales);
        for (int r = 0; r < rows; r++)
        {
            Assert.True(Gptq.OutputError(w.AsSpan(r * k, k), withBase.Dequantized.AsSpan(r * k, k), factor.Hessian)
                <= Gptq.OutputError(w.AsSpan(r * k, k), mse.Dequantized.AsSpan(r * k, k), factor.Hessian));
        }
    }

    [Fact]
    public void QuantizeSearchingScales_RowBlocks_GiveTheWholeLayersResult()
    {
        // The scale search rounds its 41 candidates per row in blocks of rows (bounded garbage: a ResNet-18 layer4 conv at once
        // allocated ~0.9 GB per call). Rows are independent given U, so any block size must give the one-block result bit for bit.
        var (w, rows, k, factor) = ResNet20Layer5();
        float[] ratios = LayerRounder.SearchRatios;
        float[] mseScales = WeightQuantizer.RowScales(w, rows, k, 2);
        RoundedWeights whole = Gptq.QuantizeSearchingScales(w, rows, 2, factor, ratios, baseScales: mseScales, blockBytes: long.MaxValue);
        int candidates = ratios.Length + 1;
        foreach (long blockBytes in (long[])[1, 7L * 9 * candidates * k, Gptq.SearchBlockBytes])
        {
            RoundedWeights blocks = Gptq.QuantizeSearchingScales(w, rows, 2, factor, ratios, baseScales: mseScales, blockBytes: blockBytes);
            Assert.Equal(whole.Levels, blocks.Levels);
            Assert.Equal(whole.Dequantized, blocks.Dequantized);
            Assert.Equal(whole.Scales, blocks.Scales);
            Assert.Equal(whole.OutputErrors, blocks.OutputErrors);
        }
        Assert.True(rows > 7, "the layer must span several blocks of 7 rows");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BiasCorrection_MeanOutputErrorOnCalibrationInputs_IsZero(bool gptq)
    {
        RoundingMethod method = gptq ? RoundingMethod.Gptq : RoundingMethod.Rtn;
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(LayerInputStatisticsTests.GroupedConvGemm());
        var batches = LayerInputStatisticsTests.RandomBatches(2, 4, [4, 9, 9], seed: 77);
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, summary.Layers, batches, cancellationToken: TestContext.Current.CancellationToken);
        foreach (LayerInfo layer in summary.Layers)
        {
            RoundedLayer rounded = LayerRounder.Round(prepared, layer, 2, method, biasCorrection: true, stats[layer.Index]);
            Assert.NotNull(rounded.Bias);
            OnnxModel fake = prepared.Clone();
            TensorData.SetFloats(fake.FindInitializer(layer.WeightName)!, rounded.Dequantized);
            if (layer.BiasName is null)
            {
                fake.Graph.Initializer.Add(TensorData.Float("corrected_bias", [rounded.Bias.Length], rounded.Bias));
                fake.Graph.Node.First(n => n.Input.Count > 1 && n.Input[1] == layer.WeightName).Input.Add("corrected_bias");
            }
            else
            {
                TensorData.SetFloats(fake.FindInitializer(layer.BiasName)!, rounded.Bias);
            }
            int channels = rounded.Bias.Length;
            var meanError = new double[channels];
            double scale = 0;
            long count = 0;
            foreach ((float[] data, long[] shape) in batches)
            {
                // The layer's output from its full-precision input: the fake model only differs in this layer.
                (float[] fp, long[] outShape) = StatisticsReference.Capture(prepared, layer.OutputName, data, shape);
                (float[] q, _) = StatisticsReference.Capture(fake, layer.OutputName, data, shape);
                int perChannel = (int)(outShape.Length == 4 ? outShape[2] * outShape[3] : 1);
                for (int i = 0; i < fp.Length; i++)
                {
                    meanError[(i / perChannel) % channels] += (double)q[i] - fp[i];
                    scale = Math.Max(scale, Math.Abs(fp[i]));
                }
                count += fp.Length / channels;
            }
            Assert.True(scale > 0.5, $"{layer.Name}: outputs of size {scale}");
            Assert.All(meanError, e => Assert.True(Math.Abs(e / count) <= 1e-5, $"{layer.Name}: mean output error {e / count}"));
            // Without the correction the mean error is far from zero at 2 bits.
            RoundedLayer plain = LayerRounder.Round(prepared, layer, 2, method, biasCorrection: false, stats[layer.Index]);
            Assert.Contains(rounded.Bias.Select((b, o) => Math.Abs(b - (plain.Bias?[o] ?? 0))), d => d > 1e-3);
        }
    }
}
