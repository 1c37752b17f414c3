using System.Diagnostics;
using System.Globalization;
using BitBudget.Graph;
using BitBudget.Numerics;
using BitBudget.Runtime;

namespace BitBudget.Ompq;

/// <summary>Settings of OMPQ's orthogonality proxy.</summary>
public sealed record OrthogonalityOptions
{
    /// <summary>β of θ_i = exp(−β γ_i); default 10 (the value in OMPQ's README example). 0 makes θ uniform.</summary>
    public double Beta { get; init; } = 10;

    /// <summary>Center the Gram matrices (linear CKA, as OMPQ's code does); false gives the uncentered ORM of the paper's formula.</summary>
    public bool Centered { get; init; } = true;

    /// <summary>
    /// Most feature bytes (N × Σ d_i × 4) one forward pass may expose; more features are split over several passes of the same
    /// batch, each output freed as soon as its Gram is computed. Default 1 GiB.
    /// </summary>
    public long MaxFeatureBytes { get; init; } = 1L << 30;

    /// <summary>ONNX Runtime settings of the forward pass.</summary>
    public RuntimeOptions Runtime { get; init; } = RuntimeOptions.Default;
}

/// <summary>Whether the importance factors θ can change the LP's answer.</summary>
public enum ThetaEffect
{
    /// <summary>Several units carry a non-negligible θ; the allocation depends on the ORM.</summary>
    Informative,
    /// <summary>All θ are equal (β = 0, one unit, or equal γ): the LP maximizes the plain sum of bits, a size-only rule.</summary>
    Uniform,
    /// <summary>
    /// Only one θ is above 1e-9 after normalization (the others underflow or vanish below solver tolerances): the LP's
    /// coefficients depend on the units' positions only, not on the ORM values.
    /// </summary>
    OneHot,
}

/// <summary>OMPQ's proxy for one batch: ORM matrix, γ and θ per decision unit.</summary>
/// <param name="Units">The decision units, in the order of every per-unit list below.</param>
/// <param name="Images">N, the number of images.</param>
/// <param name="Centered">Whether the Gram matrices were centered (linear CKA).</param>
/// <param name="Beta">β used for θ.</param>
/// <param name="Orm">ORM_ij, L×L, symmetric, unit diagonal.</param>
/// <param name="Gamma">γ_i = Σ_{j≠i} ORM_ij.</param>
/// <param name="Theta">θ_i = exp(−β (γ_i − min γ)), normalized so the largest is 1 (the LP optimum is unchanged by the scale).</param>
/// <param name="Log10RawTheta">log10 of the unnormalized θ_i = exp(−β γ_i); below about −308 it underflows in double.</param>
/// <param name="Effect">Whether θ can influence the allocation.</param>
/// <param name="EffectiveUnits">Units with θ_i ≥ 1e-6.</param>
/// <param name="Notes">Degeneracies in words (underflow, constant features, one-hot θ); empty when there are none.</param>
/// <param name="Passes">Forward passes run (more than one when the features exceed <see cref="OrthogonalityOptions.MaxFeatureBytes"/>).</param>
/// <param name="ForwardSeconds">Wall time in ONNX Runtime.</param>
/// <param name="GramSeconds">Wall time computing Gram matrices, ORM, γ and θ.</param>
public sealed record OrthogonalityResult(
    OmpqUnitMap Units,
    int Images,
    bool Centered,
    double Beta,
    double[][] Orm,
    double[] Gamma,
    double[] Theta,
    double[] Log10RawTheta,
    ThetaEffect Effect,
    int EffectiveUnits,
    IReadOnlyList<string> Notes,
    int Passes,
    double ForwardSeconds,
    double GramSeconds)
{
    /// <summary>Units whose feature is constant over the images (zero ORM row off the diagonal).</summary>
    public IReadOnlyList<int> ConstantUnits { get; init; } = [];

    /// <summary>
    /// Shannon entropy (nats) of θ normalized to sum 1: 0 when θ is one-hot, ln L when it is uniform. How many units θ really
    /// weighs is exp of it.
    /// </summary>
    public double ThetaEntropy => OrthogonalityMath.Entropy(Theta);

    /// <summary><see cref="ThetaEntropy"/> over its maximum ln L: 0 = one-hot, 1 = uniform (1 for a single unit).</summary>
    public double ThetaEntropyNormalized => Theta.Length < 2 ? 1 : Math.Clamp(ThetaEntropy / Math.Log(Theta.Length), 0, 1);
}

/// <summary>OMPQ's orthogonality proxy: one forward pass, per-unit Gram matrices, linear CKA between units, importance factors.</summary>
internal static class Orthogonality
{
    /// <summary>
    /// Runs <paramref name="prepared"/> once on <paramref name="images"/> (NCHW, shape <paramref name="shape"/>) with the units'
    /// feature tensors exposed, and computes ORM, γ and θ.
    /// </summary>
    /// <exception cref="BitBudgetException">The batch does not match the model input or has fewer than 2 images; ORT fails.</exception>
    public static OrthogonalityResult Measure(OnnxModel prepared, OmpqUnitMap units, float[] images, IReadOnlyList<long> shape,
        OrthogonalityOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new OrthogonalityOptions();
        ArgumentNullException.ThrowIfNull(images);
        CheckBeta(options.Beta);
        int n = CheckBatch(prepared, images, shape);

        var tensors = units.Units.Select(u => u.FeatureTensor).Distinct(StringComparer.Ordinal).ToList();
        var grams = new Dictionary<string, double[]>(StringComparer.Ordinal);
        long forwardTicks = 0, gramTicks = 0;
        int passes = 0;
        // The features come from the tensor tap in micro-batches that fit the memory budget; a unit's Gram needs every image's
        // feature at once, so each pass gathers its features ([n, d] each, at most MaxFeatureBytes in all) before the Grams.
        var data = Data.Dataset.FromArrays(images, new int[n], [.. shape.Skip(1).Select(d => checked((int)d))], [], "OMPQ images");
        var tap = new Evaluation.TensorTap(prepared, options.Runtime);
        foreach (List<string> pass in SplitPasses(units, tensors, n, options.MaxFeatureBytes))
        {
            cancellationToken.ThrowIfCancellationRequested();
            passes++;
            long start = Stopwatch.GetTimestamp();
            var features = new float[pass.Count][];
            tap.Stream(data, n, pass, n, (first, count, captured) =>
            {
                for (int k = 0; k < pass.Count; k++)
                {
                    Evaluation.CapturedTensor value = captured[pass[k]];
                    long[] outShape = value.Shape;
                    if (outShape.Length == 0 || outShape[0] != count)
                    {
                        throw Errors.InvalidInput(
                            $"Feature tensor '{pass[k]}' has shape [{string.Join(",", outShape)}]; OMPQ needs the batch of {n} images as its first dimension.");
                    }
                    ReadOnlySpan<float> v = value.Values;
                    int d = v.Length / count;
                    features[k] ??= new float[(long)n * d];
                    v.CopyTo(features[k].AsSpan(first * d));
                }
            }, null, cancellationToken, "the OMPQ feature pass");
            forwardTicks += Stopwatch.GetTimestamp() - start;
            start = Stopwatch.GetTimestamp();
            var results = new double[pass.Count][];
            // Units are independent; each result lands in its own slot, so the outcome does not depend on scheduling.
            Parallel.For(0, pass.Count, new ParallelOptions { CancellationToken = cancellationToken }, k =>
            {
                results[k] = OrthogonalityMath.Gram(features[k], n);
                features[k] = [];   // free this feature map now
            });
            for (int k = 0; k < pass.Count; k++) { grams[pass[k]] = results[k]; }
            gramTicks += Stopwatch.GetTimestamp() - start;
        }

        long tail = Stopwatch.GetTimestamp();
        var perUnit = new List<double[]>(units.Units.Count);
        foreach (OmpqUnit u in units.Units)
        {
            double[] k = grams[u.FeatureTensor];
            perUnit.Add(options.Centered ? OrthogonalityMath.Center(k, n) : k);
        }
        OrthogonalityResult result = FromGrams(units, n, perUnit, options.Centered, options.Beta);
        gramTicks += Stopwatch.GetTimestamp() - tail;
        return result with
        {
            Passes = passes,
            ForwardSeconds = Stopwatch.GetElapsedTime(0, forwardTicks).TotalSeconds,
            GramSeconds = Stopwatch.GetElapsedTime(0, gramTicks).TotalSeconds,
        };
    }

    /// <summary>ORM, γ, θ and the degeneracy report from per-unit Gram matrices (already centered if wanted).</summary>
    internal static OrthogonalityResult FromGrams(OmpqUnitMap units, int n, IReadOnlyList<double[]> grams, bool centered, double beta)
    {
        SquareMatrix orm = OrthogonalityMath.Orm(grams, out List<int> constant);
        return Weigh(units, n, orm, constant, centered, beta);
    }

    /// <summary>
    /// The same proxy with θ = exp(−β γ) for another <paramref name="beta"/>: ORM and γ do not depend on β, so no forward pass
    /// is needed (the data-driven β of <see cref="OmpqBetaRule.HeldOut"/> tries several).
    /// </summary>
    public static OrthogonalityResult WithBeta(OrthogonalityResult proxy, double beta)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        CheckBeta(beta);
        int l = proxy.Gamma.Length;
        SquareMatrix orm = SquareMatrix.Own([.. proxy.Orm.SelectMany(row => row)], l);
        return Weigh(proxy.Units, proxy.Images, orm, [.. proxy.ConstantUnits], proxy.Centered, beta) with
        {
            Passes = proxy.Passes,
            ForwardSeconds = proxy.ForwardSeconds,
            GramSeconds = proxy.GramSeconds,
        };
    }

    static void CheckBeta(double beta)
    {
        if (!(beta >= 0) || double.IsInfinity(beta))
        {
            throw Errors.InvalidInput($"β must be a finite number ≥ 0, got {beta.ToString(CultureInfo.InvariantCulture)}.");
        }
    }

    static OrthogonalityResult Weigh(OmpqUnitMap units, int n, SquareMatrix orm, List<int> constant, bool centered, double beta)
    {
        double[] gamma = OrthogonalityMath.Gamma(orm);
        double[] theta = OrthogonalityMath.Theta(gamma, beta, out double[] logTheta);
        int l = gamma.Length;
        var notes = new List<string>();
        foreach (int i in constant)
        {
            notes.Add($"Unit {i} ('{units.Units[i].LayerName}', tensor '{units.Units[i].FeatureTensor}') has a constant feature over the {n} images; its ORM row is 0 off the diagonal.");
        }
        double[] log10Raw = new double[l];
        for (int i = 0; i < l; i++) { log10Raw[i] = logTheta[i] / Math.Log(10); }
        double maxLog10 = log10Raw.Max();
        int underflowRaw = log10Raw.Count(v => v < -307.6);
        if (underflowRaw > 0)
        {
            notes.Add($"Unnormalized θ = exp(−βγ) underflows to 0 in double for {underflowRaw} of {l} units (largest θ = 10^{maxLog10:F1}); BitBudget normalizes θ by its maximum in the log domain.");
        }
        int effective = theta.Count(t => t >= 1e-6);
        int aboveTolerance = theta.Count(t => t > 1e-9);
        ThetaEffect effect;
        if (l == 1 || theta.Min() >= 1 - 1e-12)
        {
            effect = ThetaEffect.Uniform;
            notes.Add(l == 1
                ? "Only one decision unit: θ has no effect; the allocation depends on the budget alone."
                : $"All θ are equal (β = {beta.ToString(CultureInfo.InvariantCulture)}): θ has no effect and the LP maximizes the plain sum of bits (a size-only rule).");
        }
        else if (aboveTolerance == 1)
        {
            effect = ThetaEffect.OneHot;
            int top = Array.IndexOf(theta, theta.Max());
            notes.Add($"θ is one-hot after normalization (only unit {top} is above 1e-9; β·(γ_i − min γ) ≥ {beta * (gamma.Where((_, i) => i != top).Min() - gamma[top]):F1}): " +
                $"the ORM values have no effect: the LP coefficients are c_i = 1/(L−i) for units up to {top} and about 0 after it, a rule of position and size only.");
        }
        else
        {
            effect = ThetaEffect.Informative;
        }
        double[][] ormRows = [.. Enumerable.Range(0, l).Select(i => orm.Row(i).ToArray())];
        return new OrthogonalityResult(units, n, centered, beta, ormRows, gamma, theta, log10Raw, effect, effective, notes, 0, 0, 0) { ConstantUnits = constant };
    }

    static int CheckBatch(OnnxModel prepared, float[] images, IReadOnlyList<long> shape)
    {
        IReadOnlyList<long> expected = prepared.InputShape;
        string got = string.Join(",", shape);
        if (shape.Count != expected.Count || shape.Count == 0)
        {
            throw Errors.InvalidInput(
                $"The image batch has shape [{got}] but model '{prepared.Source}' input '{prepared.InputName}' has rank {expected.Count}.");
        }
        for (int i = 1; i < shape.Count; i++)
        {
            if (expected[i] > 0 && expected[i] != shape[i])
            {
                throw Errors.InvalidInput(
                    $"The image batch has shape [{got}] but model '{prepared.Source}' expects [N,{string.Join(",", expected.Skip(1))}].");
            }
        }
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (count != images.LongLength)
        {
            throw Errors.InvalidInput($"The image batch has {images.LongLength} values but shape [{got}] needs {count}.");
        }
        if (shape[0] < 2)
        {
            throw Errors.InvalidInput($"OMPQ needs at least 2 images to compare features, got {shape[0]}.");
        }
        return checked((int)shape[0]);
    }

    /// <summary>Consecutive groups of feature tensors whose batch holds at most <paramref name="maxBytes"/> (one tensor at least).</summary>
    static List<List<string>> SplitPasses(OmpqUnitMap units, List<string> tensors, int n, long maxBytes)
    {
        var size = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (OmpqUnit u in units.Units) { size[u.FeatureTensor] = u.FeatureSize * n * sizeof(float); }
        var passes = new List<List<string>>();
        var current = new List<string>();
        long bytes = 0;
        foreach (string t in tensors)
        {
            if (current.Count > 0 && bytes + size[t] > maxBytes)
            {
                passes.Add(current);
                current = [];
                bytes = 0;
            }
            current.Add(t);
            bytes += size[t];
        }
        if (current.Count > 0) { passes.Add(current); }
        return passes;
    }
}
