using BitBudget.Graph.Onnx;

namespace BitBudget.Graph;

/// <summary>What a classifier's output holds; every loss is computed from log-probabilities derived accordingly.</summary>
public enum OutputKind
{
    /// <summary>Unnormalized scores (softmax is applied to get probabilities).</summary>
    Logits,
    /// <summary>Probabilities (the model ends in Softmax): log is taken, softmax is not applied again.</summary>
    Probabilities,
    /// <summary>Log-probabilities (the model ends in LogSoftmax): used as they are.</summary>
    LogProbabilities,
}

/// <summary>Detects the <see cref="OutputKind"/> of a model's first output from the node that produces it.</summary>
public static class OutputKinds
{
    /// <summary>The kind of <paramref name="model"/>'s first output: Softmax → probabilities, LogSoftmax → log-probabilities,
    /// looking through shape-only nodes (Identity, Flatten, Reshape, Squeeze); anything else → logits.</summary>
    public static OutputKind Detect(OnnxModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var producers = new Dictionary<string, NodeProto>(StringComparer.Ordinal);
        foreach (NodeProto node in model.Graph.Node)
        {
            foreach (string o in node.Output) { producers[o] = node; }
        }
        string tensor = model.OutputName;
        while (producers.TryGetValue(tensor, out NodeProto? node) && node.Domain is "" or "ai.onnx")
        {
            switch (node.OpType)
            {
                case "Softmax": return OutputKind.Probabilities;
                case "LogSoftmax": return OutputKind.LogProbabilities;
                case "Identity" or "Flatten" or "Reshape" or "Squeeze" when node.Input.Count > 0:
                    tensor = node.Input[0];
                    continue;
                default: return OutputKind.Logits;
            }
        }
        return OutputKind.Logits;
    }

    /// <summary>Parses logits, probabilities or log-probabilities (as on the command line).</summary>
    public static OutputKind Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "logits" => OutputKind.Logits,
        "probabilities" or "probs" => OutputKind.Probabilities,
        "log-probabilities" or "logprobs" or "log-probs" => OutputKind.LogProbabilities,
        _ => throw Errors.InvalidInput($"Output kind '{text}' is not logits, probabilities or log-probabilities."),
    };

    /// <summary>The command-line name of a kind.</summary>
    public static string Name(OutputKind kind) => kind switch
    {
        OutputKind.Probabilities => "probabilities",
        OutputKind.LogProbabilities => "log-probabilities",
        _ => "logits",
    };
}
