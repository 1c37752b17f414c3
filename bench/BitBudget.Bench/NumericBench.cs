using System.Diagnostics;
using System.Numerics.Tensors;
using BitBudget.Data;
using BitBudget.Graph;
using BitBudget.Optimization;
using BitBudget.Quantization;
using BitBudget.Rounding;
using MathNet.Numerics.LinearAlgebra;

namespace BitBudget.Bench;

/// <summary>
/// Hand-written numeric kernels against their library forms, side by side in one run: GPTQ's inverse factor (the hand-written
/// Cholesky + triangular inverse the library keeps vs MathNet), Ω's eigenvalue clipping (the former scalar V·diag·Vᵀ vs the
/// MathNet products the library uses), and on the real models how many GPTQ integers the MathNet factor would change. Args: kernels | gptq resnet|squeezenet [bits…].
/// </summary>
static class NumericBench
{
    public static int Run(string[] args)
    {
        string part = args.Length > 0 ? args[0] : "kernels";
        Console.WriteLine($"load average {Measure.LoadAverage()} (2 cores shared)");
        if (part == "kernels") { Kernels(); return 0; }
        if (part == "gptq" && args.Length > 1) { return GptqOnModel(args[1]); }
        Console.Error.WriteLine("error: usage: numeric kernels | numeric gptq resnet|squeezenet");
        return 1;
    }

    static void Kernels()
    {
        Console.WriteLine("GPTQ inverse factor U (H⁻¹ = UᵀU) of a random SPD K×K matrix: median of 5, hand-written vs MathNet");
        foreach (int k in new[] { 27, 144, 576, 1152 })
        {
            double[] a = RandomSpd(k, seed: k);
            double[] oldU = Gptq.InverseUpperFactor(a, k)!, newU = ByMathNet.InverseUpperFactor(a, k)!;
            double diff = 0, scale = 0;
            for (int i = 0; i < oldU.Length; i++) { diff = Math.Max(diff, Math.Abs(oldU[i] - newU[i])); scale = Math.Max(scale, Math.Abs(oldU[i])); }
            double tOld = Measure.Median(5, () => Gptq.InverseUpperFactor(a, k));
            double tNew = Measure.Median(5, () => ByMathNet.InverseUpperFactor(a, k));
            Console.WriteLine($"  K={k,5}: hand-written {tOld * 1e3,9:F2} ms   MathNet {tNew * 1e3,9:F2} ms   MathNet/hand {tNew / tOld,5:F2}×   max |ΔU|/max|U| {diff / scale:E2}");
        }
        Console.WriteLine("Ω eigenvalue clipping (CLADO's PSD projection) of a random symmetric n×n Ω: median of 5, scalar loops vs MathNet");
        foreach (int n in new[] { 57, 156, 300 })
        {
            double[,] omega = RandomSymmetric(n, seed: n);
            double[,] oldC = HandWritten.ClipEigenvalues(omega), newC = PsdProjection.ClipEigenvalues(omega).ToArray();
            double diff = 0;
            for (int i = 0; i < n; i++) { for (int j = 0; j < n; j++) { diff = Math.Max(diff, Math.Abs(oldC[i, j] - newC[i, j])); } }
            double tOld = Measure.Median(5, () => HandWritten.ClipEigenvalues(omega));
            double tNew = Measure.Median(5, () => PsdProjection.ClipEigenvalues(omega));
            Console.WriteLine($"  n={n,4}: scalar {tOld * 1e3,8:F2} ms   MathNet {tNew * 1e3,8:F2} ms   MathNet/scalar {tNew / tOld,5:F2}×   max |ΔΩ| {diff:E2}");
        }
    }

    /// <summary>Every layer of the model at the given bits with GPTQ (output-error scales), factored by both codes: integers that differ.</summary>
    static int GptqOnModel(string which)
    {
        (string path, Dataset calib) = which == "resnet"
            ? (Measure.Assets("cifar10/resnet20.onnx"), DatasetLoader.Load(new DataOptions { Path = Measure.Assets("cifar10/train-5k"), Preprocessing = Preprocessing.Cifar10, Limit = 512, Seed = 1 }))
            : (Measure.Assets("imagenet/squeezenet1.1.onnx"), DatasetLoader.Load(new DataOptions { Path = Measure.Assets("imagenet/samples"), Preprocessing = Preprocessing.ImageNet, Split = "even-classes" }));
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(path));
        IReadOnlyList<LayerInfo> layers = summary.Layers;
        var rounding = WeightRounding.Default;
        IReadOnlyList<LayerStatistics> stats = LayerInputStatistics.Collect(prepared, layers, calib, Math.Min(calib.Count, rounding.CalibrationImages), 32);
        long integers = 0, differing = 0;
        double tOld = 0, tNew = 0, worst = 0;
        foreach (LayerInfo layer in layers)
        {
            LayerStatistics st = stats[layer.Index];
            long t0 = Stopwatch.GetTimestamp();
            GptqFactor[] factors = LayerRounder.Factors(st, rounding.GptqOptions);
            tOld += Stopwatch.GetElapsedTime(t0).TotalSeconds;
            var mathNet = new GptqFactor[factors.Length];
            for (int g = 0; g < factors.Length; g++)
            {
                GptqFactor f = factors[g];
                double[] a = PermutedDamped(st.H(g), f);
                long t1 = Stopwatch.GetTimestamp();
                double[] u = ByMathNet.InverseUpperFactor(a, f.K) ?? throw new InvalidOperationException($"{layer.Name}: MathNet's factor fails at the damping the hand-written one accepted.");
                tNew += Stopwatch.GetElapsedTime(t1).TotalSeconds;
                mathNet[g] = f with { U = u };
                double scale = Math.Abs(TensorPrimitives.MaxMagnitude<double>(u));
                for (int i = 0; i < u.Length; i++) { worst = Math.Max(worst, Math.Abs(u[i] - f.U[i]) / scale); }
            }
            foreach (int bits in new[] { 2, 3, 4, 8 })
            {
                RoundedLayer a = LayerRounder.Round(prepared, layer, bits, RoundingMethod.Gptq, true, st, null, rounding.GptqOptions, mathNet, searchScales: true);
                RoundedLayer b = LayerRounder.Round(prepared, layer, bits, RoundingMethod.Gptq, true, st, null, rounding.GptqOptions, factors, searchScales: true);
                integers += a.Levels.Length;
                for (int i = 0; i < a.Levels.Length; i++) { if (a.Levels[i] != b.Levels[i]) { differing++; } }
            }
        }
        Console.WriteLine($"{which}: {layers.Count} layers, GPTQ (output-error scales, bias correction) at 2/3/4/8 bits: {differing} of {integers} integers differ " +
            $"between the hand-written and the MathNet factor; max |ΔU|/max|U| per group {worst:E2}; factoring time hand-written {tOld:F2} s (incl. damping and permutation), MathNet {tNew:F2} s (factor only), MathNet/hand {tNew / tOld:F1}×");
        return 0;
    }

    /// <summary>The damped, permuted H that <see cref="Gptq.Factor"/> factored into <paramref name="f"/>.</summary>
    static double[] PermutedDamped(ReadOnlySpan<double> h, GptqFactor f)
    {
        int k = f.K;
        var a = new double[k * k];
        for (int i = 0; i < k; i++)
        {
            int oi = f.Order[i];
            for (int j = 0; j < k; j++)
            {
                int oj = f.Order[j];
                a[i * k + j] = f.Dead[oi] || f.Dead[oj] ? (oi == oj ? 1 : 0) : h[oi * k + oj];
            }
            a[i * k + i] += f.Damping;
        }
        return a;
    }

    static double[] RandomSpd(int k, int seed)
    {
        var random = new Random(seed);
        var x = Matrix<double>.Build.Dense(k, 2 * k, (_, _) => random.NextDouble() - 0.5);
        Matrix<double> h = x * x.Transpose() + Matrix<double>.Build.DenseIdentity(k) * 1e-3;
        return h.ToRowMajorArray();
    }

    static double[,] RandomSymmetric(int n, int seed)
    {
        var random = new Random(seed);
        var m = new double[n, n];
        for (int i = 0; i < n; i++) { for (int j = 0; j <= i; j++) { m[i, j] = m[j, i] = random.NextDouble() - 0.5; } }
        return m;
    }

    /// <summary>GPTQ's inverse factor the library way (GPTQ reference's route, all MathNet), the alternative the hand-written Gptq code is measured against.</summary>
    static class ByMathNet
    {
        public static double[]? InverseUpperFactor(double[] a, int k)
        {
            try
            {
                Matrix<double> inverse = Matrix<double>.Build.Dense(k, k, a).Cholesky().Solve(Matrix<double>.Build.DenseIdentity(k));
                // A⁻¹ = L Lᵀ with L lower, so U = Lᵀ, whose row-major array is L's column-major one.
                return inverse.Cholesky().Factor.ToColumnMajorArray();
            }
            catch (ArgumentException)
            {
                return null;   // not positive definite
            }
        }
    }

    /// <summary>The scalar loop the MathNet products in PsdProjection replaced, kept here only as the side-by-side reference.</summary>
    static class HandWritten
    {
        /// <summary>Ω = V·diag(max(λ, 0))·Vᵀ by scalar loops, symmetrised (the former PsdProjection code).</summary>
        public static double[,] ClipEigenvalues(double[,] omega)
        {
            int n = omega.GetLength(0);
            var evd = Matrix<double>.Build.Dense(n, n, (i, j) => 0.5 * (omega[i, j] + omega[j, i])).Evd(Symmetricity.Symmetric);
            double[] lambda = [.. evd.EigenValues.Select(c => c.Real)];
            double[,] vectors = evd.EigenVectors.ToArray();
            var result = new double[n, n];
            for (int k = 0; k < n; k++)
            {
                double l = Math.Max(lambda[k], 0);
                if (l == 0) { continue; }
                for (int u = 0; u < n; u++)
                {
                    double a = l * vectors[u, k];
                    for (int v = 0; v < n; v++) { result[u, v] += a * vectors[v, k]; }
                }
            }
            for (int u = 0; u < n; u++)
            {
                for (int v = u + 1; v < n; v++) { result[u, v] = result[v, u] = 0.5 * (result[u, v] + result[v, u]); }
            }
            return result;
        }
    }
}
