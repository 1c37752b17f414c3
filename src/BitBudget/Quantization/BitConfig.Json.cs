using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using BitBudget.Internals;

namespace BitBudget.Quantization;

// The config file: loading, parsing with messages naming the file and entry, writing.
public sealed partial record BitConfig
{
    /// <summary>Reads a config file.</summary>
    public static BitConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw Errors.FileNotFound($"Bit config file '{path}' does not exist.");
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
            throw Errors.InvalidInput($"Bit config '{source}' is not valid JSON: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        if (root is not JsonObject obj)
        {
            throw Errors.InvalidInput($"Bit config '{source}' must be a JSON object.");
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

    /// <summary>Maps ORT quant types (QInt4, QUInt8, int4 …) to bits; weights must be signed, activations unsigned.</summary>
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

    static BitBudgetException Invalid(string source, string what) => Errors.InvalidInput( $"Bit config '{source}': {what}.");

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
}
