namespace BitBudget.Evaluation;

/// <summary>Accuracy and loss of a model on a dataset.</summary>
public sealed record EvaluationResult
{
    /// <summary>Images evaluated.</summary>
    public int Count { get; init; }

    /// <summary>Top-1 accuracy in percent.</summary>
    public double Top1 { get; init; }

    /// <summary>Top-5 accuracy in percent (top-k with k = classes when fewer than 5 classes).</summary>
    public double Top5 { get; init; }

    /// <summary>Mean cross-entropy of the softmax of the logits against the labels (nats).</summary>
    public double CrossEntropy { get; init; }

    /// <summary>Mean KL divergence KL(reference ‖ model) of the softmax outputs, when reference logits were given.</summary>
    public double? KlDivergence { get; init; }

    /// <summary>Wall time of the evaluation.</summary>
    public TimeSpan Elapsed { get; init; }

    /// <summary>Images per second.</summary>
    public double ImagesPerSecond => Elapsed.TotalSeconds > 0 ? Count / Elapsed.TotalSeconds : 0;
}

/// <summary>How <see cref="EvaluationEngine.Evaluate"/> runs.</summary>
public sealed record EvaluationOptions
{
    /// <summary>Most images per ORT run (fewer when the memory budget, <see cref="Runtime.RuntimeOptions.MaxMemory"/>, says so).</summary>
    public int BatchSize { get; init; } = 64;

    /// <summary>
    /// Bytes one image costs in a run, when the caller knows it (e.g. the footprint of the model a simulated or exported model was
    /// built from); null measures the model's own footprint once.
    /// </summary>
    public long? BytesPerImage { get; init; }

    /// <summary>Full-precision logits of the same images ([count, classes]) for the KL divergence, or null.</summary>
    public ReadOnlyMemory<float>? ReferenceLogits { get; init; }

    /// <summary>Keep the logits of every image in <see cref="EvaluationEngine.LastLogits"/>.</summary>
    public bool KeepLogits { get; init; }
}
