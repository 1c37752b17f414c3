using BitBudget.Graph.Onnx;

namespace BitBudget.Graph;

/// <summary>What <see cref="ModelPreparer.Prepare"/> changed in a model.</summary>
/// <param name="FoldedBatchNorms">BatchNormalization nodes folded into the preceding Conv.</param>
/// <param name="FoldedBiasAdds">Per-channel Add nodes folded into the preceding Conv's bias.</param>
/// <param name="FoldedWeightNodes">Identity/Transpose/Reshape nodes over initializers replaced by their constant result.</param>
/// <param name="BatchMadeDynamic">Whether a fixed batch dimension was replaced by the symbolic 'N'.</param>
public sealed record PreparationReport(int FoldedBatchNorms, int FoldedBiasAdds, int FoldedWeightNodes, bool BatchMadeDynamic)
{
    /// <summary>The graph output kept as the classifier output (every derived model has only this one).</summary>
    public string Output { get; init; } = "";

    /// <summary>Other graph outputs of the original model, dropped with the nodes only they needed.</summary>
    public IReadOnlyList<string> DroppedOutputs { get; init; } = [];

    /// <summary>What the kept output holds, detected from the node producing it.</summary>
    public OutputKind OutputKind { get; init; }
}

/// <summary>
/// Exact rewrites that put a model into the form every later stage expects: constant weights as plain
/// initializers, BatchNormalization folded into Conv, a dynamic batch dimension, initializers not listed as inputs.
/// </summary>
internal static class ModelPreparer
{
    /// <summary>Returns a prepared copy of <paramref name="model"/>; the original is not changed.</summary>
    /// <param name="model">The model as loaded.</param>
    /// <param name="output">The classifier output to keep; null keeps the first graph output. The others are dropped.</param>
    public static (OnnxModel Model, PreparationReport Report) Prepare(OnnxModel model, string? output = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        OnnxModel result = model.Clone();
        IReadOnlyList<string> dropped = KeepOnlyOutput(result, output);
        DetachInitializersFromInputs(result);
        if (result.DataInputs is { Count: > 1 } inputs)
        {
            throw Errors.InvalidInput(
                $"Model '{model.Source}' has {inputs.Count} data inputs ({string.Join(", ", inputs.Select(i => i.Name))}); BitBudget handles classifiers with one image input.");
        }
        int weights = FoldConstantWeightNodes(result);
        int batchNorms = FoldBatchNorms(result);
        int biases = FoldBiasAdds(result);
        bool dynamic = MakeBatchDynamic(result);
        RemoveUnusedInitializers(result);
        return (result, new PreparationReport(batchNorms, biases, weights, dynamic)
        {
            Output = result.OutputName,
            DroppedOutputs = dropped,
            OutputKind = OutputKinds.Detect(result),
        });
    }

    /// <summary>
    /// Keeps one graph output and removes the nodes no longer needed. A spurious second output (e.g. flattened features
    /// with a hard-coded batch) would otherwise be computed, sliced and exported with the classifier.
    /// </summary>
    /// <returns>The names of the dropped outputs.</returns>
    internal static IReadOnlyList<string> KeepOnlyOutput(OnnxModel model, string? output)
    {
        GraphProto graph = model.Graph;
        if (graph.Output.Count == 0)
        {
            throw Errors.InvalidInput($"Model '{model.Source}' has no graph output.");
        }
        string kept = output ?? graph.Output[0].Name;
        ValueInfoProto? keep = graph.Output.FirstOrDefault(o => o.Name == kept)
            ?? throw Errors.InvalidInput(
                $"Model '{model.Source}' has no output '{kept}'; its outputs are {string.Join(", ", graph.Output.Select(o => $"'{o.Name}'"))}.");
        if (graph.Output.Count == 1) { return []; }
        List<string> dropped = [.. graph.Output.Where(o => o.Name != kept).Select(o => o.Name)];
        graph.Output.Clear();
        graph.Output.Add(keep);
        RemoveDeadNodes(model);
        // A data input only the dropped outputs read is dropped too (ONNX Runtime would otherwise want it fed).
        var read = graph.Node.SelectMany(n => n.Input).ToHashSet(StringComparer.Ordinal);
        var initializers = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var unread = graph.Input.Where(i => !initializers.Contains(i.Name) && !read.Contains(i.Name)).ToList();
        if (unread.Count < graph.Input.Count(i => !initializers.Contains(i.Name)))
        {
            foreach (ValueInfoProto input in unread) { graph.Input.Remove(input); }
        }
        return dropped;
    }

    /// <summary>Removes nodes none of whose outputs reaches a graph output (walking back from the outputs).</summary>
    internal static void RemoveDeadNodes(OnnxModel model)
    {
        GraphProto graph = model.Graph;
        var needed = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var live = new bool[graph.Node.Count];
        for (int n = graph.Node.Count - 1; n >= 0; n--)
        {
            NodeProto node = graph.Node[n];
            if (!node.Output.Any(needed.Contains)) { continue; }
            live[n] = true;
            needed.UnionWith(node.Input.Where(i => i.Length > 0));
            // Subgraphs (If/Loop bodies) read outer tensors by name.
            foreach (AttributeProto a in node.Attribute)
            {
                foreach (GraphProto g in a.G is null ? a.Graphs : a.Graphs.Append(a.G))
                {
                    needed.UnionWith(g.Node.SelectMany(x => x.Input).Where(i => i.Length > 0));
                }
            }
        }
        for (int n = graph.Node.Count - 1; n >= 0; n--)
        {
            if (!live[n]) { graph.Node.RemoveAt(n); }
        }
    }

    /// <summary>
    /// IR &lt; 4 lists every initializer as a graph input too, which makes weights overridable and stops ONNX Runtime
    /// from treating them as constants. Removing those entries (and raising the IR version to 4) keeps the computation.
    /// </summary>
    internal static void DetachInitializersFromInputs(OnnxModel model)
    {
        var initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        for (int i = model.Graph.Input.Count - 1; i >= 0; i--)
        {
            if (initializers.Contains(model.Graph.Input[i].Name)) { model.Graph.Input.RemoveAt(i); }
        }
        if (model.Proto.IrVersion < 4) { model.Proto.IrVersion = 4; }
    }

    /// <summary>Replaces Identity, Transpose and Reshape nodes whose inputs are all initializers by their result.</summary>
    internal static int FoldConstantWeightNodes(OnnxModel model)
    {
        GraphProto graph = model.Graph;
        var outputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        int folded = 0;
        bool changed = true;
        while (changed)
        {
            changed = false;
            var initializers = model.InitializerMap();
            for (int n = 0; n < graph.Node.Count; n++)
            {
                NodeProto node = graph.Node[n];
                if (node.Domain is not ("" or "ai.onnx") || node.Output.Count != 1 || outputs.Contains(node.Output[0])) { continue; }
                if (node.OpType is not ("Identity" or "Transpose" or "Reshape")) { continue; }
                if (node.Input.Count == 0 || !node.Input.All(i => initializers.ContainsKey(i))) { continue; }
                TensorProto source = initializers[node.Input[0]];
                if (source.DataType != (int)TensorProto.Types.DataType.Float) { continue; }
                TensorProto? folded1 = node.OpType switch
                {
                    "Identity" => Rename(source, node.Output[0]),
                    "Transpose" => Transpose(source, node, node.Output[0]),
                    _ => Reshape(source, initializers[node.Input[1]], node.Output[0]),
                };
                if (folded1 is null) { continue; }
                graph.Initializer.Add(folded1);
                graph.Node.RemoveAt(n);
                folded++;
                changed = true;
                break;
            }
        }
        return folded;
    }

    static TensorProto Rename(TensorProto source, string name)
    {
        TensorProto copy = source.Clone();
        copy.Name = name;
        return copy;
    }

    static TensorProto? Transpose(TensorProto source, NodeProto node, string name)
    {
        long[] dims = TensorData.Shape(source);
        int rank = dims.Length;
        long[] perm = node.Attribute.FirstOrDefault(a => a.Name == "perm")?.Ints.ToArray() ?? [.. Enumerable.Range(0, rank).Reverse().Select(i => (long)i)];
        if (perm.Length != rank) { return null; }
        float[] data = TensorData.ReadFloats(source);
        long[] outDims = [.. perm.Select(p => dims[p])];
        long[] inStrides = Strides(dims);
        var result = new float[data.Length];
        var index = new long[rank];
        for (long flat = 0; flat < data.Length; flat++)
        {
            long src = 0;
            for (int d = 0; d < rank; d++) { src += index[d] * inStrides[perm[d]]; }
            result[flat] = data[src];
            for (int d = rank - 1; d >= 0; d--)
            {
                if (++index[d] < outDims[d]) { break; }
                index[d] = 0;
            }
        }
        return TensorData.Float(name, outDims, result);
    }

    static TensorProto? Reshape(TensorProto source, TensorProto shapeTensor, string name)
    {
        long[] dims = TensorData.Shape(source);
        long[] target = TensorData.ReadInt64s(shapeTensor);
        long count = TensorData.ElementCount(source);
        long known = 1;
        int inferred = -1;
        for (int i = 0; i < target.Length; i++)
        {
            if (target[i] == 0 && i < dims.Length) { target[i] = dims[i]; }
            if (target[i] == -1) { inferred = i; } else { known *= target[i]; }
        }
        if (inferred >= 0) { target[inferred] = known == 0 ? 0 : count / known; }
        if (target.Aggregate(1L, (a, b) => a * b) != count) { return null; }
        TensorProto copy = source.Clone();
        copy.Name = name;
        copy.Dims.Clear();
        copy.Dims.AddRange(target);
        return copy;
    }

    static long[] Strides(long[] dims)
    {
        var strides = new long[dims.Length];
        long s = 1;
        for (int d = dims.Length - 1; d >= 0; d--) { strides[d] = s; s *= dims[d]; }
        return strides;
    }

    /// <summary>Folds BatchNormalization (inference form) that directly follows a Conv with a constant, unshared weight.</summary>
    internal static int FoldBatchNorms(OnnxModel model)
    {
        GraphProto graph = model.Graph;
        int folded = 0;
        for (int n = graph.Node.Count - 1; n >= 0; n--)
        {
            NodeProto bn = graph.Node[n];
            if (bn.OpType != "BatchNormalization" || bn.Output.Count != 1 || bn.Input.Count != 5) { continue; }
            if (FoldableConv(model, bn.Input[0]) is not (NodeProto conv, TensorProto weight)) { continue; }
            var initializers = model.InitializerMap();
            if (!bn.Input.Skip(1).All(initializers.ContainsKey)) { continue; }
            float[] scale = TensorData.ReadFloats(initializers[bn.Input[1]]);
            float[] shift = TensorData.ReadFloats(initializers[bn.Input[2]]);
            float[] mean = TensorData.ReadFloats(initializers[bn.Input[3]]);
            float[] variance = TensorData.ReadFloats(initializers[bn.Input[4]]);
            double epsilon = bn.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5;
            int outChannels = (int)weight.Dims[0];
            var multiplier = new double[outChannels];
            var addend = new double[outChannels];
            for (int o = 0; o < outChannels; o++)
            {
                multiplier[o] = scale[o] / Math.Sqrt(variance[o] + (double)(float)epsilon);
                addend[o] = shift[o] - mean[o] * multiplier[o];
            }
            ApplyChannelAffine(model, conv, weight, multiplier, addend);
            conv.Output[0] = bn.Output[0];
            graph.Node.RemoveAt(n);
            folded++;
        }
        return folded;
    }

    /// <summary>Folds Add(conv_out, C) with C of shape [Cout,1,1] or [1,Cout,1,1] into the Conv bias (CNTK exports write biases this way).</summary>
    internal static int FoldBiasAdds(OnnxModel model)
    {
        GraphProto graph = model.Graph;
        int folded = 0;
        for (int n = graph.Node.Count - 1; n >= 0; n--)
        {
            NodeProto add = graph.Node[n];
            if (add.OpType != "Add" || add.Input.Count != 2 || add.Output.Count != 1) { continue; }
            var initializers = model.InitializerMap();
            int constIndex = initializers.ContainsKey(add.Input[1]) ? 1 : initializers.ContainsKey(add.Input[0]) ? 0 : -1;
            if (constIndex < 0) { continue; }
            if (FoldableConv(model, add.Input[1 - constIndex]) is not (NodeProto conv, TensorProto weight)) { continue; }
            TensorProto constant = initializers[add.Input[constIndex]];
            long[] dims = TensorData.Shape(constant);
            long outChannels = weight.Dims[0];
            int rank = (int)weight.Dims.Count;   // the conv output has the weight's rank (N, C, spatial...)
            bool perChannel = dims.Length >= rank - 1 && dims.Length <= rank && constant.DataType == (int)TensorProto.Types.DataType.Float
                && dims[^(rank - 1)] == outChannels && dims.Skip(dims.Length - (rank - 2)).All(d => d == 1)
                && dims.Take(dims.Length - (rank - 1)).All(d => d == 1);
            if (!perChannel) { continue; }
            float[] values = TensorData.ReadFloats(constant);
            var multiplier = Enumerable.Repeat(1.0, (int)outChannels).ToArray();
            double[] addend = [.. values.Select(v => (double)v)];
            ApplyChannelAffine(model, conv, weight, multiplier, addend);
            conv.Output[0] = add.Output[0];
            graph.Node.RemoveAt(n);
            folded++;
        }
        return folded;
    }

    /// <summary>The Conv producing <paramref name="tensor"/> if it has a constant weight used by no other node and its output feeds only one node.</summary>
    static (NodeProto Conv, TensorProto Weight)? FoldableConv(OnnxModel model, string tensor)
    {
        GraphProto graph = model.Graph;
        NodeProto? conv = graph.Node.FirstOrDefault(x => x.Output.Contains(tensor));
        if (conv is null || conv.OpType != "Conv" || conv.Input.Count < 2) { return null; }
        if (graph.Output.Any(o => o.Name == tensor)) { return null; }
        if (graph.Node.Count(x => x.Input.Contains(tensor)) != 1) { return null; }
        if (graph.Node.Count(x => x.Input.Contains(conv.Input[1])) != 1) { return null; }
        if (conv.Input.Count > 2 && conv.Input[2] != "" && graph.Node.Count(x => x.Input.Contains(conv.Input[2])) != 1) { return null; }
        TensorProto? weight = model.FindInitializer(conv.Input[1]);
        if (weight is null || weight.DataType != (int)TensorProto.Types.DataType.Float) { return null; }
        if (conv.Input.Count > 2 && conv.Input[2] != "" && model.FindInitializer(conv.Input[2]) is null) { return null; }
        return (conv, weight);
    }

    /// <summary>W[o] *= m[o]; b[o] = b[o]*m[o] + a[o], computed in double; adds a bias input if the Conv had none.</summary>
    static void ApplyChannelAffine(OnnxModel model, NodeProto conv, TensorProto weight, double[] multiplier, double[] addend)
    {
        float[] w = TensorData.ReadFloats(weight);
        int outChannels = multiplier.Length;
        int perChannel = w.Length / outChannels;
        for (int o = 0; o < outChannels; o++)
        {
            for (int k = 0; k < perChannel; k++) { w[o * perChannel + k] = (float)(w[o * perChannel + k] * multiplier[o]); }
        }
        TensorData.SetFloats(weight, w);
        TensorProto? biasTensor = conv.Input.Count > 2 && conv.Input[2] != "" ? model.FindInitializer(conv.Input[2]) : null;
        float[] bias = biasTensor is null ? new float[outChannels] : TensorData.ReadFloats(biasTensor);
        for (int o = 0; o < outChannels; o++) { bias[o] = (float)(bias[o] * multiplier[o] + addend[o]); }
        if (biasTensor is null)
        {
            string name = UniqueName(model, (conv.Name.Length > 0 ? conv.Name : conv.Output[0]) + "_bias");
            model.Graph.Initializer.Add(TensorData.Float(name, [outChannels], bias));
            while (conv.Input.Count < 3) { conv.Input.Add(""); }
            conv.Input[2] = name;
        }
        else
        {
            TensorData.SetFloats(biasTensor, bias);
        }
    }

    internal static string UniqueName(OnnxModel model, string stem)
    {
        var used = model.Graph.Initializer.Select(t => t.Name)
            .Concat(model.Graph.Node.SelectMany(x => x.Output))
            .Concat(model.Graph.Input.Select(i => i.Name))
            .ToHashSet(StringComparer.Ordinal);
        if (!used.Contains(stem)) { return stem; }
        for (int i = 1; ; i++)
        {
            string name = $"{stem}_{i}";
            if (!used.Contains(name)) { return name; }
        }
    }

    /// <summary>
    /// Replaces a fixed batch dimension by the symbolic 'N' on the data input and outputs, drops stale shape hints,
    /// and turns Reshape targets that hard-code that batch size into 0 ("copy the input's batch").
    /// </summary>
    internal static bool MakeBatchDynamic(OnnxModel model)
    {
        var input = model.DataInputs[0];
        var shape = input.Type?.TensorType?.Shape;
        if (shape is null || shape.Dim.Count == 0 || shape.Dim[0].ValueCase != TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue)
        {
            return false;
        }
        long fixedBatch = shape.Dim[0].DimValue;
        shape.Dim[0] = new TensorShapeProto.Types.Dimension { DimParam = "N" };
        foreach (var output in model.Graph.Output)
        {
            var outShape = output.Type?.TensorType?.Shape;
            if (outShape is { Dim.Count: > 0 } && outShape.Dim[0].ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue
                && outShape.Dim[0].DimValue == fixedBatch)
            {
                outShape.Dim[0] = new TensorShapeProto.Types.Dimension { DimParam = "N" };
            }
        }
        model.Graph.ValueInfo.Clear();
        var initializers = model.InitializerMap();
        foreach (NodeProto node in model.Graph.Node.Where(x => x.OpType == "Reshape" && x.Input.Count == 2))
        {
            if (!initializers.TryGetValue(node.Input[1], out TensorProto? target)) { continue; }
            long[] values = TensorData.ReadInt64s(target);
            if (values.Length == 0 || values[0] != fixedBatch || model.Graph.Node.Count(x => x.Input.Contains(target.Name)) != 1) { continue; }
            values[0] = 0;
            var replacement = TensorData.Int64(target.Name, [.. target.Dims], values);
            model.Graph.Initializer[model.Graph.Initializer.IndexOf(target)] = replacement;
        }
        return true;
    }

    internal static void RemoveUnusedInitializers(OnnxModel model)
    {
        var used = model.Graph.Node.SelectMany(x => x.Input).Concat(model.Graph.Output.Select(o => o.Name)).ToHashSet(StringComparer.Ordinal);
        for (int i = model.Graph.Initializer.Count - 1; i >= 0; i--)
        {
            if (!used.Contains(model.Graph.Initializer[i].Name)) { model.Graph.Initializer.RemoveAt(i); }
        }
    }
}
