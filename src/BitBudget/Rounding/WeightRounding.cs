using System.Globalization;

namespace BitBudget.Rounding;

/// <summary>How a layer's weights are rounded onto the integer grid.</summary>
public enum RoundingMethod
{
    /// <summary>Round to nearest (no data needed).</summary>
    Rtn,
    /// <summary>Error-feedback rounding against the layer's input statistics (GPTQ).</summary>
    Gptq,
}

/// <summary>How the per-output-channel scale (the clipping range) of a weight is chosen.</summary>
public enum ScaleSearch
{
    /// <summary>The clip ratio with the least weight squared error (the round-to-nearest quantizer's search; no data needed).</summary>
    Mse,
    /// <summary>
    /// The clip ratio whose error-feedback rounding gives the least layer-output error eᵀHe on the calibration inputs
    /// (GPTQ only; the MSE scale and 40 ratios 1.00 … 0.22 of max |w|, each rounded with error feedback; never worse than the MSE scale in eᵀHe).
    /// </summary>
    OutputError,
}

/// <summary>
/// How <see cref="Quantization.QuantizedWeights"/> turns float weights into integers: the rounding method, bias correction and the
/// calibration that both need. Immutable; <see cref="Fingerprint"/> names every setting that changes a quantized tensor.
/// </summary>
public sealed record WeightRounding
{
    /// <summary>Rounding method (default GPTQ).</summary>
    public RoundingMethod Method { get; init; } = RoundingMethod.Gptq;

    /// <summary>Move each layer's mean output error (on the calibration inputs) into its bias; a layer without bias gets one.</summary>
    public bool BiasCorrection { get; init; } = true;

    /// <summary>Calibration images for the statistics pass: the first this many of the calibration set (all if it has fewer).</summary>
    public int CalibrationImages { get; init; } = 512;

    /// <summary>Scale choice for per-channel, MSE-ranged layers (default output-error, which needs <see cref="RoundingMethod.Gptq"/>).</summary>
    public ScaleSearch ScaleSearch { get; init; } = ScaleSearch.OutputError;

    /// <summary>GPTQ dampening: this fraction of the mean of diag(H) is added to the diagonal.</summary>
    public double Dampening { get; init; } = 0.01;

    /// <summary>GPTQ rounds columns in descending order of diag(H) instead of their natural order.</summary>
    public bool ActOrder { get; init; } = true;

    /// <summary>The measured best: GPTQ, act-order, 1 % dampening, bias correction, output-error scales, 512 images (docs/rounding.md).</summary>
    public static WeightRounding Default { get; } = new();

    /// <summary>Plain round to nearest with MSE-clipped scales: no calibration data.</summary>
    public static WeightRounding RoundToNearest { get; } = new() { Method = RoundingMethod.Rtn, BiasCorrection = false, ScaleSearch = ScaleSearch.Mse };

    /// <summary>Whether this rounding needs calibration images (GPTQ or bias correction).</summary>
    public bool NeedsCalibration => Method == RoundingMethod.Gptq || BiasCorrection;

    /// <summary>A short stable text naming every setting (calibration images only when they are used).</summary>
    public string Fingerprint()
    {
        var c = CultureInfo.InvariantCulture;
        string text = $"{Method.ToString().ToLowerInvariant()};bc={(BiasCorrection ? "on" : "off")};scales={(ScaleSearch == ScaleSearch.Mse ? "mse" : "output-error")}";
        if (Method == RoundingMethod.Gptq) { text += string.Create(c, $";damp={Dampening:R};order={(ActOrder ? "act" : "natural")}"); }
        if (NeedsCalibration) { text += string.Create(c, $";calib={CalibrationImages}"); }
        return text;
    }

    /// <summary>Throws <see cref="BitBudgetException"/> for settings that cannot be used.</summary>
    public WeightRounding Validated()
    {
        if (CalibrationImages <= 0) { throw Errors.InvalidInput($"Calibration images must be positive, got {CalibrationImages}."); }
        if (!(Dampening >= 0) || double.IsInfinity(Dampening)) { throw Errors.InvalidInput($"GPTQ dampening must be a finite non-negative fraction, got {Dampening}."); }
        if (ScaleSearch == ScaleSearch.OutputError && Method != RoundingMethod.Gptq)
        {
            throw Errors.InvalidInput("The output-error scale search rounds with error feedback and needs gptq rounding; use mse scales with rtn.");
        }
        return this;
    }

    internal GptqOptions GptqOptions => new() { Dampening = Dampening, ActOrder = ActOrder };
}
