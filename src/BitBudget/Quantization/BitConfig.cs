using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using BitBudget.Graph;
using BitBudget.Internals;

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

/// <summary>
/// A bit-width configuration file: defaults, the first/last-layer policy and per-layer rules (exact names or glob patterns).
/// The vocabulary follows ONNX Runtime's TensorQuantOverrides (<c>quant_type</c>, <c>axis</c>, <c>symmetric</c>); docs/quantization.md has the schema.
/// </summary>
public sealed record BitConfig
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

    /// <summary>Reads a config file.</summary>
    public static BitConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new BitBudgetException(ErrorKind.FileNotFound, $"Bit config file '{path}' does not exist.");
        }
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Writes the config as JSON through a temporary file.</summary>
    public void Save(string path) => AtomicFile.WriteAllText(path, ToJson());

    /// <summary>Parses config JSON; <paramref name="source"/> names it in messages.</summary>
    public static BitConfig Parse(string json, string source = "(config)")
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"Bit config '{source}' is not valid JSON: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        if (root is not JsonObject obj)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"Bit config '{source}' must be a JSON object.");
        }
        var config = new BitConfig();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach ((string written, JsonNode? value) in obj)
        {
            string key = Canonical(written, "", seen, source);
            switch (key)
            {
                case "version":
                    if (value is null || value.GetValueKind() != JsonValueKind.Number || value.GetValue<double>() != 1)
                    {
                        throw Invalid(source, "'version' must be 1");
                    }
                    break;
                case "model":
                    break;   // informational only
                case "defaults":
                    LayerSettings d = ParseEntry(value, "defaults", source);
                    LayerSettings b = config.Defaults;
                    config = config with { Defaults = new LayerSettings(d.WeightBits ?? b.WeightBits, d.ActivationBits ?? b.ActivationBits, d.PerChannel ?? b.PerChannel, d.Range ?? b.Range, d.Search ?? b.Search) };
                    break;
                case "first_layer":
                    config = config with { FirstLayerBits = ParsePolicy(value, key, source) };
                    break;
                case "last_layer":
                    config = config with { LastLayerBits = ParsePolicy(value, key, source) };
                    break;
                case "layers":
                    if (value is not JsonObject layers)
                    {
                        throw Invalid(source, "'layers' must be an object mapping layer names or patterns to bits or settings");
                    }
                    var rules = new List<LayerRule>();
                    foreach ((string pattern, JsonNode? entry) in layers)
                    {
                        rules.Add(new LayerRule(pattern, ParseEntry(entry, $"layers.{pattern}", source)));
                    }
                    config = config with { Layers = rules };
                    break;
                default:
                    throw Invalid(source, $"unknown key '{key}' (expected version, model, defaults, first_layer, last_layer, layers)");
            }
        }
        return config;
    }

    static int? ParsePolicy(JsonNode? value, string key, string source)
    {
        if (value is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() == "search") { return null; }
        if (value is JsonValue f && f.GetValueKind() == JsonValueKind.String && f.GetValue<string>() is "float" or "fp32") { return 0; }
        if (value is JsonValue n && n.GetValueKind() == JsonValueKind.Number && n.TryGetValue(out int bits))
        {
            return CheckWeightBits(bits, key, source);
        }
        throw Invalid(source, $"'{key}' must be weight bits 2–8, \"float\" or \"search\"");
    }

    /// <summary>An entry is a number (weight bits), "float", or an object with TensorQuantOverrides-like keys.</summary>
    static LayerSettings ParseEntry(JsonNode? value, string where, string source)
    {
        switch (value)
        {
            case null:
                return new LayerSettings(WeightBits: 0);
            case JsonValue v when v.GetValueKind() == JsonValueKind.Number:
                if (!v.TryGetValue(out int bits))
                {
                    throw Invalid(source, $"'{where}' has bits {v.ToJsonString()}; an integer 2–8 was expected");
                }
                return new LayerSettings(WeightBits: CheckWeightBits(bits, where, source));
            case JsonValue v when v.GetValueKind() == JsonValueKind.String:
                string s = v.GetValue<string>();
                if (s is "float" or "fp32") { return new LayerSettings(WeightBits: 0); }
                return new LayerSettings(WeightBits: CheckWeightBits(ParseQuantType(s, signed: true, where, source), where, source));
            case JsonObject o:
                int? weightBits = null, activationBits = null;
                bool? perChannel = null, search = null;
                WeightRange? range = null;
                var seenKeys = new HashSet<string>(StringComparer.Ordinal);
                foreach ((string written, JsonNode? item) in o)
                {
                    string key = Canonical(written, where + ".", seenKeys, source);
                    switch (key)
                    {
                        case "weight_bits":
                            weightBits = item is null ? 0 : CheckWeightBits(Int(item, $"{where}.{key}", source), $"{where}.{key}", source);
                            break;
                        case "quant_type":
                            weightBits = CheckWeightBits(ParseQuantType(Str(item, $"{where}.{key}", source), signed: true, where, source), where, source);
                            break;
                        case "float":
                            if (Bool(item, $"{where}.{key}", source)) { weightBits = 0; }
                            break;
                        case "activation_bits":
                            activationBits = item is null ? 0 : CheckActivationBits(Int(item, $"{where}.{key}", source), $"{where}.{key}", source);
                            break;
                        case "activation_quant_type":
                            activationBits = item is null ? 0 : CheckActivationBits(ParseQuantType(Str(item, $"{where}.{key}", source), signed: false, where, source), where, source);
                            break;
                        case "per_channel":
                            perChannel = Bool(item, $"{where}.{key}", source);
                            break;
                        case "axis":
                            // ORT: an axis means per-channel, null per-tensor; BitBudget always uses the layer's own output-channel axis.
                            perChannel = item is not null;
                            if (item is not null) { Int(item, $"{where}.{key}", source); }
                            break;
                        case "symmetric":
                            if (!Bool(item, $"{where}.{key}", source))
                            {
                                throw Invalid(source, $"'{where}' asks for asymmetric weights; BitBudget quantizes weights symmetrically (symmetric: true)");
                            }
                            break;
                        case "weight_range":
                            range = Str(item, $"{where}.{key}", source) switch
                            {
                                "mse" => WeightRange.Mse,
                                "minmax" => WeightRange.MinMax,
                                string other => throw Invalid(source, $"'{where}.weight_range' is '{other}'; expected \"mse\" or \"minmax\""),
                            };
                            break;
                        case "search":
                            search = Bool(item, $"{where}.{key}", source);
                            break;
                        default:
                            throw Invalid(source, $"'{where}' has unknown key '{key}' (expected weight_bits, quant_type, float, activation_bits, activation_quant_type, per_channel, axis, symmetric, weight_range, search)");
                    }
                }
                return new LayerSettings(weightBits, activationBits, perChannel, range, search);
            default:
                throw Invalid(source, $"'{where}' must be weight bits, \"float\" or an object");
        }
    }

    /// <summary>
    /// The snake_case spelling of a key. Files written by hand or by other tools sometimes use camelCase
    /// (<c>firstLayer</c>, <c>weightBits</c>); both spellings read, but not both for one key.
    /// </summary>
    static string Canonical(string key, string where, HashSet<string> seen, string source)
    {
        string canonical = JsonNamingPolicy.SnakeCaseLower.ConvertName(key);
        if (!seen.Add(canonical))
        {
            throw Invalid(source, $"'{where}{key}' is given twice (as '{canonical}' and a camelCase spelling)");
        }
        return canonical;
    }

    /// <summary>Maps ORT quant types (QInt4, QUInt8, int4 …) to bits; weights must be signed, activations unsigned.</summary>
    static int ParseQuantType(string text, bool signed, string where, string source)
    {
        string t = text.Trim().ToLowerInvariant();
        if (t.StartsWith('q')) { t = t[1..]; }
        bool isUnsigned = t.StartsWith("uint", StringComparison.Ordinal);
        string digits = isUnsigned ? t[4..] : t.StartsWith("int", StringComparison.Ordinal) ? t[3..] : "";
        if (digits.Length == 0 || !int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out int bits) || isUnsigned == signed)
        {
            throw Invalid(source, $"'{where}' has quant type '{text}'; expected {(signed ? "QInt2…QInt8 for weights" : "QUInt4…QUInt16 for activations")}");
        }
        return bits;
    }

    static int CheckWeightBits(int bits, string where, string source) =>
        bits is >= 2 and <= 8 ? bits : throw Invalid(source, $"'{where}' has weight bits {bits}; expected 2–8 (or \"float\")");

    static int CheckActivationBits(int bits, string where, string source) =>
        bits is >= 4 and <= 16 ? bits : throw Invalid(source, $"'{where}' has activation bits {bits}; expected 4–16 (or null)");

    static int Int(JsonNode node, string where, string source) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue(out int i) ? i : throw Invalid(source, $"'{where}' must be an integer");

    static string Str(JsonNode? node, string where, string source) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Invalid(source, $"'{where}' must be a string");

    static bool Bool(JsonNode? node, string where, string source) =>
        node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False ? v.GetValue<bool>() : throw Invalid(source, $"'{where}' must be true or false");

    static BitBudgetException Invalid(string source, string what) => new(ErrorKind.InvalidInput, $"Bit config '{source}': {what}.");

    /// <summary>The config as JSON (the format <see cref="Parse"/> reads).</summary>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["version"] = 1,
            ["defaults"] = EntryToJson(Defaults, alwaysObject: true),
            ["first_layer"] = PolicyToJson(FirstLayerBits),
            ["last_layer"] = PolicyToJson(LastLayerBits),
        };
        var layers = new JsonObject();
        foreach (LayerRule rule in Layers) { layers[rule.Pattern] = EntryToJson(rule.Settings, alwaysObject: false); }
        root["layers"] = layers;
        return root.ToJsonString(BitBudgetJson.WriterOptions) + "\n";
    }

    static JsonNode PolicyToJson(int? bits) => bits switch { null => "search", 0 => "float", int b => b };

    static JsonNode? EntryToJson(LayerSettings s, bool alwaysObject)
    {
        if (!alwaysObject && s.ActivationBits is null && s.PerChannel is null && s.Range is null && s.Search is null && s.WeightBits is int wb)
        {
            return wb == 0 ? "float" : wb;
        }
        var o = new JsonObject();
        if (s.WeightBits is int w) { o["weight_bits"] = w == 0 ? null : w; }
        if (s.ActivationBits is int a) { o["activation_bits"] = a == 0 ? null : a; }
        if (s.PerChannel is bool p) { o["per_channel"] = p; }
        if (s.Range is WeightRange r) { o["weight_range"] = r == WeightRange.Mse ? "mse" : "minmax"; }
        if (s.Search is bool q) { o["search"] = q; }
        return o;
    }

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
                throw new BitBudgetException(ErrorKind.InvalidInput, rule.IsPattern
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

    internal static bool Glob(string pattern, string text)
    {
        // Iterative wildcard match with single-star backtracking: linear in practice, no regex compilation per layer.
        int p = 0, t = 0, star = -1, mark = 0;
        while (t < text.Length)
        {
            if (p < pattern.Length && (pattern[p] == '?' || pattern[p] == text[t])) { p++; t++; }
            else if (p < pattern.Length && pattern[p] == '*') { star = p++; mark = t; }
            else if (star >= 0) { p = star + 1; t = ++mark; }
            else { return false; }
        }
        while (p < pattern.Length && pattern[p] == '*') { p++; }
        return p == pattern.Length;
    }

    /// <summary>An explicit config listing every layer by name, as a search writes it; resolving it gives back <paramref name="layers"/>.</summary>
    public static BitConfig FromResolved(IReadOnlyList<LayerBits> layers) => new()
    {
        FirstLayerBits = null,
        LastLayerBits = null,
        Layers = [.. layers.Select(l => new LayerRule(l.Layer, new LayerSettings(l.WeightBits, l.ActivationBits, l.PerChannel, l.Range, l.Searchable)))],
    };

    /// <summary>Weight storage the configuration accounts for: Σ ⌈numel·bits/8⌉ over quantized layers plus 4 bytes per float weight.</summary>
    public static long WeightBytes(IReadOnlyList<LayerBits> bits, IReadOnlyList<LayerInfo> layers)
    {
        long total = 0;
        for (int i = 0; i < bits.Count; i++) { total += WeightBytes(layers[i].WeightCount, bits[i].WeightBits); }
        return total;
    }

    /// <summary>⌈numel·stored bits/8⌉ (3-bit weights in int4 containers, 5–7-bit in int8: <see cref="WeightStorage.StoredBits"/>), or 4·numel for a float weight (bits 0).</summary>
    public static long WeightBytes(long elements, int bits) => bits == 0 ? elements * 4 : (elements * WeightStorage.StoredBits(bits) + 7) / 8;

    /// <summary>A one-line description such as "8 8 4 4 2 … 8" for logs.</summary>
    public static string Describe(IReadOnlyList<LayerBits> bits)
    {
        var sb = new StringBuilder();
        foreach (LayerBits b in bits) { sb.Append(b.IsFloat ? "f" : b.WeightBits.ToString(CultureInfo.InvariantCulture)).Append(' '); }
        return sb.ToString().TrimEnd();
    }
}
