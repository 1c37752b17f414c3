using System.CommandLine;
using BitBudget.Graph;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

static class InspectCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "ONNX model file." };
        var json = new Option<bool>("--json") { Description = "Print the layer inventory as JSON on stdout." };
        var command = new Command("inspect", "List the quantizable layers of a model with shapes, parameters and MACs.") { model, json };
        var modelArgs = new ModelArguments();
        command.Options.Add(modelArgs.Output);
        command.SetAction(parse =>
        {
            OnnxModel loaded = OnnxModel.Load(parse.GetRequiredValue(model).FullName);
            (_, ModelSummary summary) = ModelInspector.Inspect(loaded, modelArgs.OutputName(parse));
            if (parse.GetValue(json))
            {
                Ui.WriteJson(new InspectJson(summary.Source, summary.InputName, summary.InputShape, summary.OutputName,
                    OutputKinds.Name(summary.Preparation.OutputKind), summary.Preparation.DroppedOutputs, summary.Opset, summary.Layers.Count,
                    summary.OpCounts, summary.TotalWeights, summary.TotalParameters, summary.TotalMacs, summary.ModelInitializerElements,
                    summary.Preparation, summary.Layers));
                return ExitCodes.Ok;
            }
            Render(summary);
            return ExitCodes.Ok;
        });
        return command;
    }

    static void Render(ModelSummary summary)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"[bold]{Markup.Escape(Path.GetFileName(summary.Source))}[/]: {summary.Layers.Count} quantizable layers ({Markup.Escape(summary.OpCounts)})");
        table.AddColumns("#", "layer", "op", "weight", "params", "groups", "output", "MACs/image", "");
        foreach (var c in table.Columns.Skip(3)) { c.RightAligned(); }
        foreach (LayerInfo l in summary.Layers)
        {
            table.AddRow(
                l.Index.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Markup.Escape(l.Name),
                l.OpType,
                Markup.Escape(Ui.Shape(l.WeightShape)),
                Ui.Count(l.ParameterCount),
                l.Groups.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Markup.Escape(Ui.Shape(l.OutputShape)),
                Ui.Count(l.MacsPerImage),
                l.IsFirst ? "first" : l.IsLast ? "last" : "");
        }
        table.AddEmptyRow();
        table.AddRow("", "[bold]total[/]", "", Ui.Count(summary.TotalWeights) + " w", Ui.Count(summary.TotalParameters), "", "", Ui.Count(summary.TotalMacs), "");
        Ui.Out.Write(table);
        Ui.Out.MarkupLine($"input [blue]{Markup.Escape(summary.InputName)}[/] {Markup.Escape(Ui.Shape(summary.InputShape))}, output [blue]{Markup.Escape(summary.OutputName)}[/] ({OutputKinds.Name(summary.Preparation.OutputKind)}" +
            (summary.Preparation.DroppedOutputs.Count == 0 ? "" : $"; dropped {Markup.Escape(string.Join(", ", summary.Preparation.DroppedOutputs.Select(o => $"'{o}'")))}, --model-output chooses") +
            $"), opset {summary.Opset}; " +
            $"prepared: {summary.Preparation.FoldedBatchNorms} BN folded, {summary.Preparation.FoldedBiasAdds} bias Add folded, " +
            $"{summary.Preparation.FoldedWeightNodes} weight nodes folded, batch {(summary.Preparation.BatchMadeDynamic ? "made dynamic" : "already dynamic")}; " +
            $"{Ui.Count(summary.ModelInitializerElements)} initializer elements in the file.");
    }
}
