using System.Numerics.Tensors;
using BitBudget.Graph;

namespace BitBudget.Evaluation;

/// <summary>Accumulates top-1/top-5, cross-entropy and KL divergence over batches of logits.</summary>
internal sealed class Metrics(int classes, OutputKind kind = OutputKind.Logits)
{
    long _count, _top1, _top5;
    double _crossEntropy, _kl;
    bool _hasKl, _unlabeled;
    readonly float[] _logProbs = new float[classes], _refLogProbs = new float[classes];

    public int Classes { get; } = classes;

    /// <summary>Adds a batch: <paramref name="logits"/> is [n, classes]; <paramref name="reference"/> optional FP logits of the same images.</summary>
    /// <param name="logits">[n, classes].</param>
    /// <param name="labels">n labels, or empty for unlabeled images (then only the KL divergence is measured).</param>
    /// <param name="reference">Optional FP logits of the same images.</param>
    public void Add(ReadOnlySpan<float> logits, ReadOnlySpan<int> labels, ReadOnlySpan<float> reference = default)
    {
        int n = logits.Length / Classes, k = Math.Min(5, Classes);
        if (!labels.IsEmpty && labels.Length != n) { throw new ArgumentException("One label per output row, or none.", nameof(labels)); }
        if (labels.IsEmpty) { _unlabeled = true; }
        for (int i = 0; i < n; i++)
        {
            ReadOnlySpan<float> row = logits.Slice(i * Classes, Classes);
            if (labels.IsEmpty)
            {
                AddKl(row, reference, i);
                continue;
            }
            int label = labels[i];
            float target = row[label];
            int above = 0;
            for (int c = 0; c < Classes; c++)
            {
                // Ties count against the label, so a constant output never scores as correct.
                if (row[c] > target || (row[c] == target && c < label)) { above++; }
            }
            if (above == 0) { _top1++; }
            if (above < k) { _top5++; }
            LogProbabilities(row, kind, _logProbs);
            _crossEntropy -= _logProbs[label];
            AddKl(row, reference, i, logProbsReady: true);
        }
        _count += n;
    }

    void AddKl(ReadOnlySpan<float> row, ReadOnlySpan<float> reference, int i, bool logProbsReady = false)
    {
        if (reference.IsEmpty) { return; }
        if (!logProbsReady) { LogProbabilities(row, kind, _logProbs); }
        _hasKl = true;
        LogProbabilities(reference.Slice(i * Classes, Classes), kind, _refLogProbs);
        double kl = 0;
        for (int c = 0; c < Classes; c++) { kl += Math.Exp(_refLogProbs[c]) * (_refLogProbs[c] - _logProbs[c]); }
        _kl += kl;
    }

    /// <summary>
    /// The log-probabilities an output row stands for: log softmax of logits; log of probabilities (renormalized, and
    /// floored at the smallest float so an underflowed 0 gives a large finite loss); log-probabilities renormalized
    /// (log softmax is the identity on them up to rounding). Every loss is computed from these.
    /// </summary>
    public static void LogProbabilities(ReadOnlySpan<float> row, OutputKind kind, Span<float> destination)
    {
        if (kind != OutputKind.Probabilities)
        {
            LogSoftmax(row, destination);
            return;
        }
        for (int c = 0; c < row.Length; c++) { destination[c] = MathF.Log(Math.Max(row[c], float.Epsilon)); }
        LogSoftmax(destination, destination);
    }

    /// <summary>log softmax in float with the max subtracted, as PyTorch computes it.</summary>
    public static void LogSoftmax(ReadOnlySpan<float> row, Span<float> destination)
    {
        float max = TensorPrimitives.Max(row);
        TensorPrimitives.Subtract(row, max, destination);
        double sum = 0;
        foreach (float v in destination) { sum += Math.Exp(v); }
        TensorPrimitives.Subtract(destination, (float)Math.Log(sum), destination);
    }

    public EvaluationResult Result(TimeSpan elapsed) => new()
    {
        Count = (int)_count,
        Top1 = _unlabeled ? double.NaN : _count == 0 ? 0 : 100.0 * _top1 / _count,
        Top5 = _unlabeled ? double.NaN : _count == 0 ? 0 : 100.0 * _top5 / _count,
        CrossEntropy = _unlabeled ? double.NaN : _count == 0 ? 0 : _crossEntropy / _count,
        KlDivergence = _hasKl && _count > 0 ? _kl / _count : null,
        Elapsed = elapsed,
    };
}
