using BitBudget.Graph;
using BitBudget.Graph.Onnx;

namespace BitBudget.Quantization;

/// <summary>Graph edits shared by the simulator and the exporter, so that both build identical activation quantizers.</summary>
internal static class QdqGraph
{
    /// <summary>Opset for per-channel DequantizeLinear (axis) and the Clip-with-inputs form.</summary>
    public const long BaseOpset = 13;

    /// <summary>Opset that the configuration needs: 13 for Q/DQ, 21 for INT4 weights or 16-bit activations, 25 for INT2 weights.</summary>
    public static long RequiredOpset(IReadOnlyList<LayerBits> config, bool storedWeights)
    {
        long opset = 0;
        foreach (LayerBits b in config)
        {
            if (b.ActivationBits > 8) { opset = Math.Max(opset, 21); }
            else if (b.ActivationBits > 0) { opset = Math.Max(opset, BaseOpset); }
            if (!storedWeights || b.IsFloat) { continue; }
            opset = Math.Max(opset, b.WeightBits switch { 2 => 25, 3 or 4 => 21, _ => BaseOpset });
        }
        return opset;
    }

    /// <summary>The nodes of a layer (every node sharing its weight), looked up by name or first output.</summary>
    public static List<NodeProto> LayerNodes(OnnxModel model, LayerInfo layer)
    {
        var names = layer.NodeNames.ToHashSet(StringComparer.Ordinal);
        var nodes = model.Graph.Node.Where(n => n.Input.Count > 1 && n.Input[1] == layer.WeightName && names.Contains(OpsetUpgrade.NodeName(n))).ToList();
        if (nodes.Count == 0)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"Layer '{layer.Name}' is not in model '{model.Source}'; inspect the same prepared model the layer list came from.");
        }
        return nodes;
    }

    /// <summary>
    /// Inserts [Clip →] QuantizeLinear → DequantizeLinear on the activation input of each node of <paramref name="layer"/>.
    /// Only inputs get a Q/DQ pair, never outputs: ONNX Runtime 1.31.1 fuses DQ(input) + DQ(int2 weight) + Conv + Q(output)
    /// into QLinearConv, which has no int2 kernel, and the session then fails to load.
    /// </summary>
    public static void InsertActivationQdq(OnnxModel model, LayerInfo layer, ActivationParams p)
    {
        bool wide = p.Bits > 8;
        TensorProto.Types.DataType type = wide ? TensorProto.Types.DataType.Uint16 : TensorProto.Types.DataType.Uint8;
        foreach (NodeProto node in LayerNodes(model, layer))
        {
            string stem = $"{OpsetUpgrade.NodeName(node)}_input";
            string scale = ModelPreparer.UniqueName(model, $"{stem}_scale");
            model.Graph.Initializer.Add(TensorData.Float(scale, [], [p.Scale]));
            string zeroPoint = ModelPreparer.UniqueName(model, $"{stem}_zero_point");
            model.Graph.Initializer.Add(ZeroPoint(zeroPoint, type, p.ZeroPoint));
            string source = node.Input[0];
            var inserted = new List<NodeProto>();
            if (p.Bits is not (8 or 16))
            {
                // The container holds 8 or 16 bits; clipping to the b-bit range first makes QuantizeLinear saturate at 2^b − 1.
                string clipped = ModelPreparer.UniqueName(model, $"{stem}_clipped");
                string lo = ModelPreparer.UniqueName(model, $"{stem}_clip_min");
                string hi = ModelPreparer.UniqueName(model, $"{stem}_clip_max");
                model.Graph.Initializer.Add(TensorData.Float(lo, [], [p.RangeMin]));
                model.Graph.Initializer.Add(TensorData.Float(hi, [], [p.RangeMax]));
                inserted.Add(Node("Clip", clipped, [source, lo, hi], [clipped]));
                source = clipped;
            }
            string quantized = ModelPreparer.UniqueName(model, $"{stem}_quantized");
            inserted.Add(Node("QuantizeLinear", quantized, [source, scale, zeroPoint], [quantized]));
            string dequantized = ModelPreparer.UniqueName(model, $"{stem}_dequantized");
            inserted.Add(Node("DequantizeLinear", dequantized, [quantized, scale, zeroPoint], [dequantized]));
            int at = model.Graph.Node.IndexOf(node);
            for (int i = 0; i < inserted.Count; i++) { model.Graph.Node.Insert(at + i, inserted[i]); }
            node.Input[0] = dequantized;
        }
    }

    static TensorProto ZeroPoint(string name, TensorProto.Types.DataType type, int value)
    {
        if (type == TensorProto.Types.DataType.Uint8) { return TensorData.Raw(name, type, [], [(byte)value]); }
        return TensorData.Raw(name, type, [], BitConverter.GetBytes((ushort)value));
    }

    public static NodeProto Node(string op, string name, IEnumerable<string> inputs, IEnumerable<string> outputs, long? axis = null)
    {
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        if (axis is long a) { node.Attribute.Add(new AttributeProto { Name = "axis", Type = AttributeProto.Types.AttributeType.Int, I = a }); }
        return node;
    }

    /// <summary>Checks that every layer with activation bits has matching calibrated parameters.</summary>
    public static ActivationParams? ActivationFor(LayerBits b, IReadOnlyDictionary<string, ActivationParams>? activations)
    {
        if (b.ActivationBits == 0) { return null; }
        if (activations is null || !activations.TryGetValue(b.Layer, out ActivationParams? p))
        {
            throw new BitBudgetException(ErrorKind.InvalidInput,
                $"Layer '{b.Layer}' asks for {b.ActivationBits}-bit input activations but no calibration was given for it; calibrate on data or use weights only (--activations none).");
        }
        if (p.Bits != b.ActivationBits)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"Layer '{b.Layer}' asks for {b.ActivationBits}-bit activations but was calibrated for {p.Bits} bits.");
        }
        return p;
    }

    public static void CheckConfig(IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config)
    {
        if (config.Count != layers.Count)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"The bit configuration has {config.Count} layers but the model has {layers.Count}.");
        }
        for (int i = 0; i < layers.Count; i++)
        {
            if (config[i].Layer != layers[i].Name || config[i].LayerIndex != i)
            {
                throw new BitBudgetException(ErrorKind.InvalidInput, $"Bit configuration entry {i} is layer '{config[i].Layer}' but the model's layer {i} is '{layers[i].Name}'.");
            }
        }
    }
}
