using BitBudget.Graph;
using BitBudget.Quantization;

namespace BitBudget.Tests.Quantization;

public class BitConfigTests
{
    static readonly string[] s_names = ["conv1", "conv2a", "conv2b", "conv3", "fc"];

    internal static List<LayerInfo> Layers(params string[] names) =>
        [.. names.Select((n, i) => new LayerInfo(i, n, n == "fc" ? "Gemm" : "Conv", n + ".weight", [8, 4, 3, 3], 288, null, 0, 0, 1, "in", "out",
            [1, 8, 4, 4], 1000, i, [n], i == 0, i == names.Length - 1))];

    [Fact]
    public void Defaults_FirstAndLastFixedAt8_OthersSearched()
    {
        IReadOnlyList<LayerBits> r = BitConfig.Uniform(4).Resolve(Layers(s_names));
        Assert.Equal([8, 4, 4, 4, 8], r.Select(b => b.WeightBits));
        Assert.Equal([false, true, true, true, false], r.Select(b => b.Searchable));
        Assert.All(r, b => Assert.True(b.PerChannel));
    }

    [Fact]
    public void Parse_PatternsExactNamesPolicyAndOrtVocabulary()
    {
        const string json = """
            {
              "version": 1,
              "defaults": { "weight_bits": 8, "weight_range": "minmax" },
              "first_layer": "search",
              "last_layer": 6,
              "layers": {
                "conv2*": 4,
                "conv2b": { "quant_type": "QInt2", "axis": 0, "symmetric": true, "activation_quant_type": "QUInt8" },
                "conv3": "float",
                "conv1.weight": { "weight_bits": 3, "axis": null, "weight_range": "mse" },
                "f?": 2
              }
            }
            """;
        BitConfig config = BitConfig.Parse(json);
        IReadOnlyList<LayerBits> r = config.Resolve(Layers(s_names));
        Assert.Equal([3, 4, 2, 0, 6], r.Select(b => b.WeightBits));   // "f?" is a pattern: the last-layer policy (6) wins over it
        Assert.Equal([0, 0, 8, 0, 0], r.Select(b => b.ActivationBits));
        Assert.False(r[0].PerChannel);
        Assert.Equal(WeightRange.Mse, r[0].Range);
        Assert.Equal(WeightRange.MinMax, r[1].Range);
        Assert.Equal([true, true, true, false, false], r.Select(b => b.Searchable));
        Assert.True(r[3].IsFloat);
    }

    [Fact]
    public void ExactNameBeatsPolicy()
    {
        var r = BitConfig.Parse("""{ "layers": { "fc": 2 } }""").Resolve(Layers(s_names));
        Assert.Equal(2, r[4].WeightBits);
        Assert.False(r[4].Searchable);
    }

    [Fact]
    public void RoundTrip_ToJsonAndFromResolved()
    {
        var layers = Layers(s_names);
        IReadOnlyList<LayerBits> r = BitConfig.Parse("""{ "layers": { "conv2*": 2, "conv3": { "weight_bits": 5, "activation_bits": 8, "per_channel": false } } }""").Resolve(layers);
        BitConfig explicitConfig = BitConfig.FromResolved(r);
        Assert.Equal(r, BitConfig.Parse(explicitConfig.ToJson()).Resolve(layers));
        BitConfig original = BitConfig.Parse("""{ "first_layer": "float", "layers": { "conv2*": 2 } }""");
        Assert.Equal(original.Resolve(layers), BitConfig.Parse(original.ToJson()).Resolve(layers));
        Assert.Equal("f 2 2 8 8", BitConfig.Describe(original.Resolve(layers)));
    }

    [Fact]
    public void WeightBytes_RoundsUpPerTensor()
    {
        Assert.Equal(1, BitConfig.WeightBytes(3, 2));
        Assert.Equal(2, BitConfig.WeightBytes(3, 4));
        Assert.Equal(144, BitConfig.WeightBytes(288, 3));   // 3-bit values stored in int4 containers
        Assert.Equal(288, BitConfig.WeightBytes(288, 5));   // 5-bit in int8
        Assert.Equal(288, BitConfig.WeightBytes(288, 6));
        Assert.Equal(12, BitConfig.WeightBytes(3, 0));
        var layers = Layers(s_names);
        Assert.Equal(288 + 144 * 3 + 288, BitConfig.WeightBytes(BitConfig.Uniform(4).Resolve(layers), layers));
    }

    [Theory]
    [InlineData("""{ "layers": { "conv2a": 9 } }""", "Bit config '(config)': 'layers.conv2a' has weight bits 9; expected 2–8 (or \"float\").")]
    [InlineData("""{ "layers": { "conv2a": 1 } }""", "Bit config '(config)': 'layers.conv2a' has weight bits 1; expected 2–8 (or \"float\").")]
    [InlineData("""{ "defaults": { "weight_bits": 16 } }""", "Bit config '(config)': 'defaults.weight_bits' has weight bits 16; expected 2–8 (or \"float\").")]
    [InlineData("""{ "layers": { "conv9": 4 } }""", "Bit config names layer 'conv9', which the model does not have (layers: conv1, conv2a, conv2b, conv3, fc).")]
    [InlineData("""{ "layers": { "block*": 4 } }""", "Bit config pattern 'block*' matches no layer of the model (layers: conv1, conv2a, conv2b, conv3, fc).")]
    [InlineData("""{ "layers": { "conv3": { "symmetric": false } } }""", "Bit config '(config)': 'layers.conv3' asks for asymmetric weights; BitBudget quantizes weights symmetrically (symmetric: true).")]
    [InlineData("""{ "layers": { "conv3": { "activation_bits": 2 } } }""", "Bit config '(config)': 'layers.conv3.activation_bits' has activation bits 2; expected 4–16 (or null).")]
    [InlineData("""{ "layers": { "conv3": { "quant_type": "QUInt4" } } }""", "Bit config '(config)': 'layers.conv3' has quant type 'QUInt4'; expected QInt2…QInt8 for weights.")]
    [InlineData("""{ "bits": 4 }""", "Bit config '(config)': unknown key 'bits' (expected version, model, defaults, first_layer, last_layer, layers).")]
    [InlineData("""[4]""", "Bit config '(config)' must be a JSON object.")]
    public void BadConfig_OneLineMessage(string json, string message)
    {
        var e = Assert.Throws<BitBudgetException>(() => BitConfig.Parse(json).Resolve(Layers(s_names)));
        Assert.Equal(ErrorKind.InvalidInput, e.Kind);
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void NotJson_InvalidInput()
    {
        var e = Assert.Throws<BitBudgetException>(() => BitConfig.Parse("{ layers: ", "bits.json"));
        Assert.StartsWith("Bit config 'bits.json' is not valid JSON:", e.Message);
    }

    [Theory]
    [InlineData("conv*", "conv2a", true)]
    [InlineData("conv?a", "conv2a", true)]
    [InlineData("*2*", "conv2a", true)]
    [InlineData("conv", "conv2a", false)]
    [InlineData("*b", "conv2a", false)]
    public void Glob(string pattern, string text, bool expected) => Assert.Equal(expected, BitConfig.Glob(pattern, text));
}
