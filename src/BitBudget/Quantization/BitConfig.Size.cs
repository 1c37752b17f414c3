using System.Globalization;
using System.Text;
using BitBudget.Graph;

namespace BitBudget.Quantization;

// Byte accounting and the one-line description of a resolved configuration.
public sealed partial record BitConfig
{
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
