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
            throw Errors.InvalidInput($"Layer '{layer.Name}' is not in model '{model.Source}'; inspect the same prepared model the layer list came from.");
        }
        return nodes;
    }

    /// <summary>
    /// Inserts [Clip →] QuantizeLinear → DequantizeLinear on the activation input of each node of <paramref name="layer"/>.
    /// Only inputs get a Q/DQ pair, never outputs. ONNX Runtime 1.31.1 (ORT_ENABLE_EXTENDED and above) fuses
    /// DQ(input) + DQ(int2 weight) + Conv + Q(output) into QLinearConv, which has no int2 kernel, and the session fails to
    /// load; the output Q appears whenever the next layer's input Q follows the conv (ORT removes a Relu in between when the
    /// zero point is 0), and neither a signed container nor input-only pairs prevent it. With <paramref name="emulate"/>
    /// the same fake quantization is written with float operators instead (Div, Round, Add, Clip, Sub, Mul: bit-identical
    /// to QuantizeLinear/DequantizeLinear), which ORT cannot fuse; the exporter uses it for the inputs of int2-weight layers.
    /// </summary>
    public static void InsertActivationQdq(OnnxModel model, LayerInfo layer, ActivationParams p, bool emulate)
    {
        foreach (NodeProto node in LayerNodes(model, layer)) { InsertInputQdq(model, node, 0, p, emulate, $"{OpsetUpgrade.NodeName(node)}_input"); }
    }

    /// <summary>
    /// Inserts the fake quantization of <see cref="InsertActivationQdq"/> on input <paramref name="input"/> of <paramref name="node"/> only
    /// (other readers of the tensor keep the float values); new tensors are named after <paramref name="stem"/>.
    /// </summary>
    public static void InsertInputQdq(OnnxModel model, NodeProto node, int input, ActivationParams p, bool emulate, string stem)
    {
        bool wide = p.Bits > 8;
        TensorProto.Types.DataType type = wide ? TensorProto.Types.DataType.Uint16 : TensorProto.Types.DataType.Uint8;
        string scale = ModelPreparer.UniqueName(model, $"{stem}_scale");
        model.Graph.Initializer.Add(TensorData.Float(scale, [], [p.Scale]));
        string source = node.Input[input];
        var inserted = new List<NodeProto>();
        string Add(string op, string suffix, params string[] inputs)
        {
            string output = ModelPreparer.UniqueName(model, $"{stem}_{suffix}");
            inserted.Add(Node(op, output, inputs, [output]));
            model.Graph.Node.Add(inserted[^1]);   // reserve the name; moved into place below
            return output;
        }
        string Constant(string suffix, float value)
        {
            string name = ModelPreparer.UniqueName(model, $"{stem}_{suffix}");
            model.Graph.Initializer.Add(TensorData.Float(name, [], [value]));
            return name;
        }
        string result;
        if (emulate)
        {
            string zp = Constant("zero_point_f", p.ZeroPoint);
            string divided = Add("Div", "divided", source, scale);
            string rounded = Add("Round", "rounded", divided);   // ties to even, like QuantizeLinear
            string shifted = Add("Add", "shifted", rounded, zp);
            string saturated = Add("Clip", "saturated", shifted, Constant("qmin", 0), Constant("qmax", p.QMax));
            string centred = Add("Sub", "centred", saturated, zp);
            result = Add("Mul", "dequantized", centred, scale);
        }
        else
        {
            string zeroPoint = ModelPreparer.UniqueName(model, $"{stem}_zero_point");
            model.Graph.Initializer.Add(ZeroPoint(zeroPoint, type, p.ZeroPoint));
            if (p.Bits is not (8 or 16))
            {
                // The container holds 8 or 16 bits; clipping to the b-bit range first makes QuantizeLinear saturate at 2^b − 1.
                source = Add("Clip", "clipped", source, Constant("clip_min", p.RangeMin), Constant("clip_max", p.RangeMax));
            }
            string quantized = Add("QuantizeLinear", "quantized", source, scale, zeroPoint);
            result = Add("DequantizeLinear", "dequantized", quantized, scale, zeroPoint);
        }
        foreach (NodeProto n in inserted) { model.Graph.Node.Remove(n); }
        int at = model.Graph.Node.IndexOf(node);
        for (int i = 0; i < inserted.Count; i++) { model.Graph.Node.Insert(at + i, inserted[i]); }
        node.Input[input] = result;
    }

    /// <summary>Name of the bias initializer added to a layer that had none.</summary>
    public static string AddedBiasName(LayerInfo layer) => $"{layer.WeightName}_corrected_bias";

    /// <summary>
    /// Writes <paramref name="bias"/> as the bias of every node of <paramref name="layer"/>: into its bias initializer, or, when the
    /// layer has none, a new initializer wired as the Conv's third input, the Gemm's C, or an Add after a MatMul. Idempotent; works
    /// on any model holding the layer's nodes (a slice too).
    /// </summary>
    public static void SetBias(OnnxModel model, LayerInfo layer, ReadOnlySpan<float> bias)
    {
        var initializers = model.InitializerMap();
        if (layer.BiasName is not null)
        {
            if (!initializers.TryGetValue(layer.BiasName, out TensorProto? existing))
            {
                throw Errors.InvalidInput($"Layer '{layer.Name}' bias '{layer.BiasName}' is not in model '{model.Source}'.");
            }
            TensorData.SetFloats(existing, bias);
            return;
        }
        string name = AddedBiasName(layer);
        if (initializers.TryGetValue(name, out TensorProto? added))
        {
            TensorData.SetFloats(added, bias);
            return;
        }
        List<NodeProto> nodes = LayerNodes(model, layer);
        model.Graph.Initializer.Add(TensorData.Float(name, [bias.Length], bias));
        foreach (NodeProto node in nodes)
        {
            if (node.OpType is "Conv" or "Gemm")
            {
                if (node.OpType == "Gemm" && node.Attribute.FirstOrDefault(a => a.Name == "beta") is { } beta && beta.F != 1f)
                {
                    throw Errors.InvalidInput($"Layer '{layer.Name}' is a Gemm without C and with beta = {beta.F}; bias correction cannot add a bias to it.");
                }
                while (node.Input.Count < 3) { node.Input.Add(""); }
                node.Input[2] = name;
                continue;
            }
            // MatMul: the product goes to a new tensor and an Add writes the original output name, so consumers are unchanged.
            if (node.Name.Length == 0) { node.Name = OpsetUpgrade.NodeName(node); }   // the layer finds its node by this name
            string output = node.Output[0];
            string product = ModelPreparer.UniqueName(model, $"{output}_before_bias");
            node.Output[0] = product;
            int at = model.Graph.Node.IndexOf(node);
            model.Graph.Node.Insert(at + 1, Node("Add", $"{OpsetUpgrade.NodeName(node)}_corrected_bias_add", [product, name], [output]));
        }
    }

    /// <summary>Puts back the layer's float bias: the original values, or no bias when <see cref="SetBias"/> added one.</summary>
    public static void RestoreBias(OnnxModel model, LayerInfo layer, ReadOnlySpan<float> original)
    {
        if (layer.BiasName is not null)
        {
            SetBias(model, layer, original);
            return;
        }
        string name = AddedBiasName(layer);
        TensorProto? added = model.Graph.Initializer.FirstOrDefault(t => t.Name == name);
        if (added is null) { return; }
        model.Graph.Initializer.Remove(added);
        for (int i = model.Graph.Node.Count - 1; i >= 0; i--)
        {
            NodeProto node = model.Graph.Node[i];
            int slot = node.Input.IndexOf(name);
            if (slot < 0) { continue; }
            if (node.OpType == "Add")
            {
                // The MatMul writing this Add's other input takes the output name back.
                string product = node.Input[1 - slot];
                NodeProto? producer = model.Graph.Node.FirstOrDefault(n => n.Output.Count > 0 && n.Output[0] == product);
                if (producer is not null) { producer.Output[0] = node.Output[0]; }
                model.Graph.Node.RemoveAt(i);
            }
            else
            {
                node.Input.RemoveAt(slot);
            }
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
            throw Errors.InvalidInput(
                $"Layer '{b.Layer}' asks for {b.ActivationBits}-bit input activations but no calibration was given for it; calibrate on data or use weights only (--activations none).");
        }
        if (p.Bits != b.ActivationBits)
        {
            throw Errors.InvalidInput($"Layer '{b.Layer}' asks for {b.ActivationBits}-bit activations but was calibrated for {p.Bits} bits.");
        }
        return p;
    }

    public static void CheckConfig(IReadOnlyList<LayerInfo> layers, IReadOnlyList<LayerBits> config)
    {
        if (config.Count != layers.Count)
        {
            throw Errors.InvalidInput($"The bit configuration has {config.Count} layers but the model has {layers.Count}.");
        }
        for (int i = 0; i < layers.Count; i++)
        {
            if (config[i].Layer != layers[i].Name || config[i].LayerIndex != i)
            {
                throw Errors.InvalidInput($"Bit configuration entry {i} is layer '{config[i].Layer}' but the model's layer {i} is '{layers[i].Name}'.");
            }
        }
    }
}
