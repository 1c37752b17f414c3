using BitBudget.Graph;

namespace BitBudget.Quantization;

/// <summary>
/// A bit-width configuration file: defaults, the first/last-layer policy and per-layer rules (exact names or glob patterns).
/// The vocabulary follows ONNX Runtime's TensorQuantOverrides (<c>quant_type</c>, <c>axis</c>, <c>symmetric</c>); docs/quantization.md has the schema.
/// </summary>
public sealed partial record BitConfig
{
    /// <summary>Settings of every layer no rule names; all members must be set.</summary>
    public LayerSettings Defaults { get; init; } = new(8, 0, true, WeightRange.Mse, true);

    /// <summary>Bits of the first quantizable layer, which is kept outside the search; null puts it in the search like any other layer; 0 keeps it in float.</summary>
    public int? FirstLayerBits { get; init; } = 8;

    /// <summary>Bits of the last quantizable layer, which is kept outside the search; null puts it in the search; 0 keeps it in float.</summary>
    public int? LastLayerBits { get; init; } = 8;

    /// <summary>Per-layer rules in file order. Exact names beat the first/last policy, which beats patterns; among patterns the last match wins.</summary>
    public IReadOnlyList<LayerRule> Layers { get; init; } = [];

    /// <summary>Every layer at <paramref name="bits"/> with the default first/last policy.</summary>
    public static BitConfig Uniform(int bits, int activationBits = 0) => new()
    {
        Defaults = new LayerSettings(bits, activationBits, true, WeightRange.Mse, true),
    };

    /// <summary>Resolves the rules against a model's layers.</summary>
    /// <exception cref="BitBudgetException">An exact name names no layer, or a pattern matches none.</exception>
    public IReadOnlyList<LayerBits> Resolve(IReadOnlyList<LayerInfo> layers)
    {
        var exact = new Dictionary<int, LayerSettings>();
        var patterned = new LayerSettings?[layers.Count];
        foreach (LayerRule rule in Layers)
        {
            bool any = false;
            for (int i = 0; i < layers.Count; i++)
            {
                if (!Matches(rule, layers[i])) { continue; }
                any = true;
                if (rule.IsPattern) { patterned[i] = Merge(rule.Settings, patterned[i]); }
                else { exact[i] = Merge(rule.Settings, exact.GetValueOrDefault(i)); }
            }
            if (!any)
            {
                string names = string.Join(", ", layers.Take(6).Select(l => l.Name)) + (layers.Count > 6 ? ", …" : "");
                throw Errors.InvalidInput(rule.IsPattern
                    ? $"Bit config pattern '{rule.Pattern}' matches no layer of the model (layers: {names})."
                    : $"Bit config names layer '{rule.Pattern}', which the model does not have (layers: {names}).");
            }
        }
        var result = new LayerBits[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            LayerInfo layer = layers[i];
            int? policy = layer.IsFirst ? FirstLayerBits : layer.IsLast ? LastLayerBits : null;
            bool fixedByPolicy = (layer.IsFirst && FirstLayerBits is not null) || (layer.IsLast && LastLayerBits is not null);
            LayerSettings s = Defaults;
            if (patterned[i] is LayerSettings p) { s = Merge(p, s); }
            if (fixedByPolicy) { s = s with { WeightBits = policy, Search = false }; }
            if (exact.TryGetValue(i, out LayerSettings? e)) { s = Merge(e, s); }
            int bits = s.WeightBits ?? 8;
            result[i] = new LayerBits(i, layer.Name, bits, bits == 0 ? 0 : s.ActivationBits ?? 0, s.PerChannel ?? true, s.Range ?? WeightRange.Mse,
                bits != 0 && (s.Search ?? true));
        }
        return result;
    }

    static LayerSettings Merge(LayerSettings top, LayerSettings? below) => below is null ? top : new LayerSettings(
        top.WeightBits ?? below.WeightBits, top.ActivationBits ?? below.ActivationBits, top.PerChannel ?? below.PerChannel, top.Range ?? below.Range, top.Search ?? below.Search);

    static bool Matches(LayerRule rule, LayerInfo layer) =>
        Glob(rule.Pattern, layer.Name) || Glob(rule.Pattern, layer.WeightName);

    /// <summary>An explicit config listing every layer by name, as a search writes it; resolving it gives back <paramref name="layers"/>.</summary>
    public static BitConfig FromResolved(IReadOnlyList<LayerBits> layers) => new()
    {
        FirstLayerBits = null,
        LastLayerBits = null,
        Layers = [.. layers.Select(l => new LayerRule(l.Layer, new LayerSettings(l.WeightBits, l.ActivationBits, l.PerChannel, l.Range, l.Searchable)))],
    };
}
