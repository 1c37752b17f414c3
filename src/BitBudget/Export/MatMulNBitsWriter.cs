using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Quantization;

namespace BitBudget.Export;

/// <summary>
/// Writes a 3–4-bit MatMul weight as ONNX Runtime's <c>com.microsoft.MatMulNBits</c> (block-wise 4-bit, native CPU kernel)
/// instead of INT4 + DequantizeLinear + MatMul. Schema (contrib opset 1): inputs A (float [.., K]), B (uint8 [N, blocks, blob],
/// blob = block_size·bits/8, codes packed low nibble first along K), scales (float [N·blocks]), zero_points (uint8, two 4-bit
/// codes per byte, [N·⌈blocks/2⌉]); attributes K, N, bits, block_size; Y = A · ((B − zero_point)·scale)ᵀ.
/// </summary>
/// <remarks>
/// BitBudget's weights are symmetric with one scale per output channel, so every block of a column repeats the channel's
/// scale and the zero point is 8: the dequantized weights are exactly those of the simulation. K is zero-padded to whole
/// blocks (code 8 = weight 0). accuracy_level stays 0 (float inputs, float accumulation) so the product matches QDQ.
/// </remarks>
internal static class MatMulNBitsWriter
{
    public const string Domain = "com.microsoft";
    const int Bits = 4;

    /// <summary>Whether a layer at <paramref name="bits"/> can be written as MatMulNBits.</summary>
    public static bool Applies(LayerInfo layer, int bits) => layer.OpType == "MatMul" && layer.WeightShape.Count == 2 && bits is 3 or 4;

    /// <summary>Block size along K: the largest of 64, 32, 16 that divides K (no padding), else 16 (least padding).</summary>
    public static int BlockSize(long k) => k % 64 == 0 ? 64 : k % 32 == 0 ? 32 : 16;

    /// <summary>Rewrites every node of <paramref name="layer"/> (weight [K, N], already removed from the initializers) as MatMulNBits.</summary>
    /// <returns>Stored payload bytes (B + zero points) and scale bytes.</returns>
    public static (long PayloadBytes, long ScaleBytes) Rewrite(OnnxModel model, LayerInfo layer, QuantizedTensor q)
    {
        int k = checked((int)layer.WeightShape[0]), n = checked((int)layer.WeightShape[1]);
        int block = BlockSize(k), blocks = (k + block - 1) / block, blob = block * Bits / 8;
        int zeroPoint = 1 << (Bits - 1);
        ReadOnlySpan<sbyte> values = q.Values.Span;           // [K, N] row-major
        ReadOnlySpan<float> channelScales = q.Scales.Span;    // [N], or one per-tensor scale
        var packed = new byte[(long)n * blocks * blob];
        var scales = new float[n * blocks];
        for (int col = 0; col < n; col++)
        {
            float s = channelScales.Length == 1 ? channelScales[0] : channelScales[col];
            for (int b = 0; b < blocks; b++) { scales[col * blocks + b] = s; }
            for (int i = 0; i < blocks * block; i++)
            {
                int code = (i < k ? values[i * n + col] : 0) + zeroPoint;
                packed[(long)col * blocks * blob + i / 2] |= (byte)(code << (i % 2 * 4));
            }
        }
        var zeroPoints = new byte[n * ((blocks + 1) / 2)];
        for (int col = 0; col < n; col++)
        {
            for (int b = 0; b < blocks; b++) { zeroPoints[col * ((blocks + 1) / 2) + b / 2] |= (byte)(zeroPoint << (b % 2 * 4)); }
        }
        string bName = ModelPreparer.UniqueName(model, $"{layer.WeightName}_nbits");
        string scaleName = ModelPreparer.UniqueName(model, $"{layer.WeightName}_nbits_scales");
        string zpName = ModelPreparer.UniqueName(model, $"{layer.WeightName}_nbits_zero_points");
        model.Graph.Initializer.Add(TensorData.Raw(bName, TensorProto.Types.DataType.Uint8, [n, blocks, blob], packed));
        model.Graph.Initializer.Add(TensorData.Float(scaleName, [scales.Length], scales));
        model.Graph.Initializer.Add(TensorData.Raw(zpName, TensorProto.Types.DataType.Uint8, [zeroPoints.Length], zeroPoints));
        foreach (NodeProto node in QdqGraph.LayerNodes(model, layer))
        {
            node.OpType = "MatMulNBits";
            node.Domain = Domain;
            node.Input[1] = bName;
            node.Input.Add(scaleName);
            node.Input.Add(zpName);
            node.Attribute.Add(Int("K", k));
            node.Attribute.Add(Int("N", n));
            node.Attribute.Add(Int("bits", Bits));
            node.Attribute.Add(Int("block_size", block));
        }
        if (!model.Proto.OpsetImport.Any(o => o.Domain == Domain))
        {
            model.Proto.OpsetImport.Add(new OperatorSetIdProto { Domain = Domain, Version = 1 });
        }
        return (packed.LongLength + zeroPoints.LongLength, scales.LongLength * 4);
    }

    static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };
}
