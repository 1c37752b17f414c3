using System.CommandLine;
using BitBudget.Graph;

namespace BitBudget.Cli;

/// <summary>Which graph output is the classifier's, and what it holds; shared by every command that reads a model.</summary>
sealed class ModelArguments
{
    // Not --output: run, search and quantize already use --output/-o for the file they write.
    public Option<string?> Output { get; } = new("--model-output")
    {
        Description = "The model output holding the class scores, when it has several (default: the first); the others are dropped from every derived model.",
    };

    public Option<string> Kind { get; } = new("--output-kind")
    {
        Description = "What that output holds: auto (Softmax/LogSoftmax at the output are detected), logits, probabilities or log-probabilities.",
        DefaultValueFactory = _ => "auto",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Output);
        command.Options.Add(Kind);
    }

    public string? OutputName(ParseResult parse) => parse.GetValue(Output);

    /// <summary>The override, or null for auto-detection.</summary>
    public OutputKind? OutputKind(ParseResult parse) => parse.GetValue(Kind) is string k && !k.Equals("auto", StringComparison.OrdinalIgnoreCase) ? OutputKinds.Parse(k) : null;

    /// <summary>One line naming the output used and what it holds, when there is something to say (several outputs, not logits, an override).</summary>
    public static string? Describe(PreparationReport report, OutputKind effective, bool overridden)
    {
        if (report.DroppedOutputs.Count == 0 && effective == Graph.OutputKind.Logits && !overridden) { return null; }
        string kind = OutputKinds.Name(effective) + (overridden ? " (--output-kind)" : effective switch
        {
            Graph.OutputKind.Probabilities => " (Softmax at the output: losses take its log, softmax is not applied again)",
            Graph.OutputKind.LogProbabilities => " (LogSoftmax at the output: losses use it as it is)",
            _ => "",
        });
        string dropped = report.DroppedOutputs.Count == 0 ? ""
            : $"; the model has {report.DroppedOutputs.Count + 1} outputs, dropped {string.Join(", ", report.DroppedOutputs.Select(o => $"'{o}'"))} (--model-output chooses)";
        return $"output '{report.Output}': {kind}{dropped}";
    }
}
