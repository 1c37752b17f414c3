using System.CommandLine;
using BitBudget.Quantization;
using BitBudget.Rounding;

namespace BitBudget.Cli;

/// <summary>The weight-rounding options (docs/rounding.md), shared by every command that quantizes weights.</summary>
sealed class RoundingArguments
{
    public Option<string> Method { get; } = new("--rounding")
    {
        Description = "Weight rounding: gptq (error feedback against the layer inputs of the calibration images; default) or rtn (round to nearest, no data).",
        DefaultValueFactory = _ => "gptq",
    };

    public Option<string?> BiasCorrection { get; } = new("--bias-correction")
    {
        Description = "on|off: move each layer's mean output error on the calibration images into its bias (default: on with gptq, off with rtn).",
    };

    public Option<int> CalibImages { get; } = new("--calib-images")
    {
        Description = "Calibration images for gptq / bias correction (the statistics pass).",
        DefaultValueFactory = _ => WeightRounding.Default.CalibrationImages,
    };

    public Option<string?> ScaleSearch { get; } = new("--scale-search")
    {
        Description = "Per-channel clipping scale: mse (least weight error) or output-error (least layer-output error, gptq only) (default: output-error with gptq, mse with rtn).",
    };

    public Option<string> Final { get; } = new("--final-rounding")
    {
        Description = "How the chosen configuration is rounded for export: sequential (layer by layer against the inputs of the partially quantized " +
            "model, bias corrected towards the float outputs; default) or independent (each layer against float inputs, as measured).",
        DefaultValueFactory = _ => "sequential",
    };

    public RoundingArguments()
    {
        Final.AcceptOnlyFromAmong("independent", "sequential");
        Method.AcceptOnlyFromAmong("gptq", "rtn");
        BiasCorrection.AcceptOnlyFromAmong("on", "off");
        ScaleSearch.AcceptOnlyFromAmong("mse", "output-error");
    }

    public void AddTo(Command command)
    {
        command.Options.Add(Method);
        command.Options.Add(BiasCorrection);
        command.Options.Add(CalibImages);
        command.Options.Add(ScaleSearch);
    }

    /// <summary>Adds --final-rounding (quantize and run: the commands that export).</summary>
    public void AddFinalTo(Command command) => command.Options.Add(Final);

    /// <summary>The --final-rounding choice.</summary>
    public FinalRounding FinalRounding(ParseResult parse) =>
        parse.GetValue(Final) == "sequential" ? Quantization.FinalRounding.Sequential : Quantization.FinalRounding.Independent;

    /// <summary>The settings the options describe; defaults follow the method (gptq: the measured best; rtn: plain round to nearest).</summary>
    public WeightRounding Rounding(ParseResult parse)
    {
        bool gptq = parse.GetValue(Method) != "rtn";
        WeightRounding basis = gptq ? WeightRounding.Default : WeightRounding.RoundToNearest;
        return (basis with
        {
            BiasCorrection = parse.GetValue(BiasCorrection) is string bc ? bc == "on" : basis.BiasCorrection,
            ScaleSearch = parse.GetValue(ScaleSearch) is string s ? (s == "mse" ? BitBudget.Rounding.ScaleSearch.Mse : BitBudget.Rounding.ScaleSearch.OutputError) : basis.ScaleSearch,
            CalibrationImages = parse.GetValue(CalibImages),
        }).Validated();
    }

    /// <summary>One line for humans, e.g. "gptq + bias correction, output-error scales, 512 calibration images".</summary>
    public static string Describe(WeightRounding r) =>
        $"{(r.Method == RoundingMethod.Gptq ? "gptq" : "rtn")}{(r.BiasCorrection ? " + bias correction" : "")}, " +
        $"{(r.ScaleSearch == BitBudget.Rounding.ScaleSearch.Mse ? "mse" : "output-error")} scales" +
        (r.NeedsCalibration ? $", {r.CalibrationImages} calibration images" : "");
}
