namespace BitBudget.Graph;

/// <summary>
/// How many bits a b-bit integer weight occupies in an ONNX model: ONNX has int2, int4 and int8 element types only, so 3-bit
/// values live in int4 containers and 5–7-bit values in int8 ones. Sizes and size budgets count what is stored, so a 3-bit
/// layer costs as much as a 4-bit one (docs/quantization.md, "Bit-widths without an ONNX type").
/// </summary>
public static class WeightStorage
{
    /// <summary>Stored bits per weight of a <paramref name="bits"/>-bit integer weight (2, 4 or 8); anything wider than 8 (a float layer's 32) is returned as is.</summary>
    public static int StoredBits(int bits) => bits switch
    {
        <= 2 => 2,
        <= 4 => 4,
        <= 8 => 8,
        _ => bits,
    };
}
