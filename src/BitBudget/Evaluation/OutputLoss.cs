using BitBudget.Graph;

namespace BitBudget.Evaluation;

/// <summary>How far a perturbed model's output is from what it should be, per image (the loss CLADO measures the change of).</summary>
public enum OutputLoss
{
    /// <summary>Cross-entropy of the softmax against the labels (the paper's CNN experiments); needs labels.</summary>
    CrossEntropy,
    /// <summary>KL divergence from the float model's softmax to the perturbed model's (no labels).</summary>
    Kl,
    /// <summary>Mean squared difference to the float model's raw output, over its elements (no labels, no softmax: any model, feature extractors included).</summary>
    Mse,
}

/// <summary>The per-image losses of <see cref="OutputLoss"/>, summed over a micro-batch so batches can be accumulated in any split.</summary>
public static class OutputLosses
{
    /// <summary>Whether the loss reads labels.</summary>
    public static bool NeedsLabels(this OutputLoss loss) => loss == OutputLoss.CrossEntropy;

    /// <summary>Parses <c>ce|cross-entropy</c>, <c>kl|kl-divergence</c>, <c>mse</c>.</summary>
    public static OutputLoss Parse(string text) => (text ?? "").Trim().ToLowerInvariant() switch
    {
        "ce" or "cross-entropy" or "crossentropy" => OutputLoss.CrossEntropy,
        "kl" or "kl-divergence" or "kldivergence" => OutputLoss.Kl,
        "mse" => OutputLoss.Mse,
        _ => throw Errors.InvalidInput($"Loss '{text}' is not ce, kl or mse."),
    };

    /// <summary>Short name as the CLI spells it.</summary>
    public static string Name(this OutputLoss loss) => loss switch { OutputLoss.CrossEntropy => "ce", OutputLoss.Kl => "kl", _ => "mse" };

    /// <summary>
    /// Σ over the <paramref name="images"/> images of the loss of <paramref name="outputs"/> ([images, k] row-major) against
    /// <paramref name="labels"/> (cross-entropy) or the float model's <paramref name="reference"/> outputs of the same images;
    /// <paramref name="kind"/> says what the outputs hold (softmax is applied to logits only).
    /// </summary>
    public static double Sum(OutputLoss loss, OutputKind kind, ReadOnlySpan<float> outputs, int images, ReadOnlySpan<int> labels, ReadOnlySpan<float> reference)
    {
        if (images <= 0) { return 0; }
        int k = outputs.Length / images;
        if (loss == OutputLoss.Mse)
        {
            double total = 0;
            for (int i = 0; i < outputs.Length; i++) { double d = (double)outputs[i] - reference[i]; total += d * d; }
            return total / k;
        }
        Span<float> logp = k <= 4096 ? stackalloc float[k] : new float[k];
        Span<float> refp = loss == OutputLoss.Kl ? (k <= 4096 ? stackalloc float[k] : new float[k]) : default;
        double sum = 0;
        for (int i = 0; i < images; i++)
        {
            Metrics.LogProbabilities(outputs.Slice(i * k, k), kind, logp);
            if (loss == OutputLoss.CrossEntropy)
            {
                sum -= logp[labels[i]];
                continue;
            }
            Metrics.LogProbabilities(reference.Slice(i * k, k), kind, refp);
            for (int c = 0; c < k; c++) { sum += Math.Exp(refp[c]) * (refp[c] - logp[c]); }
        }
        return sum;
    }
}
