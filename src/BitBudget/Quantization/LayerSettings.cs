namespace BitBudget.Quantization;

/// <summary>How the clipping range of a weight channel is chosen.</summary>
public enum WeightRange
{
    /// <summary>The clipping ratio (100 candidates, 0.01…1.00 of max|w|) that minimises the squared error.</summary>
    Mse,
    /// <summary>max|w| of the channel, no clipping.</summary>
    MinMax,
}

/// <summary>Settings a config entry gives a layer; a null member inherits from the rule below it.</summary>
/// <param name="WeightBits">Weight bits 2–8; 0 keeps the layer in float.</param>
/// <param name="ActivationBits">Bits of the layer's input activation 4–16; 0 leaves the input in float.</param>
/// <param name="PerChannel">Per-output-channel weight scales (true) or one scale per tensor.</param>
/// <param name="Range">How weight ranges are chosen.</param>
/// <param name="Search">Whether a mixed-precision search may change the weight bits.</param>
public sealed record LayerSettings(int? WeightBits = null, int? ActivationBits = null, bool? PerChannel = null, WeightRange? Range = null, bool? Search = null);

/// <summary>One entry of the <c>layers</c> object: an exact layer name or a glob pattern (<c>*</c>, <c>?</c>).</summary>
public sealed record LayerRule(string Pattern, LayerSettings Settings)
{
    /// <summary>Whether <see cref="Pattern"/> contains a wildcard.</summary>
    public bool IsPattern => Pattern.Contains('*') || Pattern.Contains('?');
}

/// <summary>The resolved quantization of one layer.</summary>
/// <param name="LayerIndex">Index into the model's layer list.</param>
/// <param name="Layer">Layer name.</param>
/// <param name="WeightBits">Weight bits 2–8, or 0 for a float layer.</param>
/// <param name="ActivationBits">Input activation bits 4–16, or 0 for a float input.</param>
/// <param name="PerChannel">Per-output-channel weight scales.</param>
/// <param name="Range">How weight ranges are chosen.</param>
/// <param name="Searchable">Whether a search may change <see cref="WeightBits"/>.</param>
public sealed record LayerBits(int LayerIndex, string Layer, int WeightBits, int ActivationBits, bool PerChannel, WeightRange Range, bool Searchable)
{
    /// <summary>Whether the weight stays in float.</summary>
    public bool IsFloat => WeightBits == 0;
}
