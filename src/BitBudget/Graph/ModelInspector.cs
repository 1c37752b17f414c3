using BitBudget.Graph.Onnx;
using BitBudget.Runtime;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Graph;

/// <summary>Finds the quantizable layers of a model and measures their shapes and cost.</summary>
internal static class ModelInspector
{
    /// <summary>Prepares <paramref name="model"/> (see <see cref="ModelPreparer"/>) and lists its quantizable layers.</summary>
    /// <returns>The prepared model, which every later stage should use, and its summary.</returns>
    /// <param name="model">The model as loaded.</param>
    /// <param name="output">The classifier output to keep (null: the first); see <see cref="ModelPreparer.Prepare"/>.</param>
    public static (OnnxModel Prepared, ModelSummary Summary) Inspect(OnnxModel model, string? output = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        (OnnxModel prepared, PreparationReport report) = ModelPreparer.Prepare(model, output);
        long elements = model.Graph.Initializer.Sum(TensorData.ElementCount);
        return (prepared, Summarize(prepared, report) with { ModelInitializerElements = elements });
    }

    /// <summary>Lists the quantizable layers of an already prepared model.</summary>
    public static ModelSummary Summarize(OnnxModel prepared, PreparationReport? report = null)
    {
        List<Candidate> candidates = FindCandidates(prepared);
        if (candidates.Count == 0)
        {
            throw Errors.NoQuantizableLayers(
                $"Model '{prepared.Source}' has no quantizable layer (Conv, Gemm or MatMul with a constant float weight).");
        }
        Dictionary<string, long[]> shapes = OutputShapes(prepared, candidates.SelectMany(c => c.Nodes.Select(n => n.Output[0])).Distinct().ToList());
        var layers = new List<LayerInfo>(candidates.Count);
        for (int i = 0; i < candidates.Count; i++)
        {
            Candidate c = candidates[i];
            NodeProto first = c.Nodes[0];
            long[] weightShape = TensorData.Shape(c.Weight);
            long weightCount = TensorData.ElementCount(c.Weight);
            TensorProto? bias = c.BiasName is null ? null : prepared.FindInitializer(c.BiasName);
            int groups = first.OpType == "Conv" ? ConvGeometry.GroupsOf(first) : 1;
            long macs = 0;
            foreach (NodeProto node in c.Nodes)
            {
                long[] outShape = shapes[node.Output[0]];
                long outElements = outShape.Skip(1).Aggregate(1L, (a, b) => a * b);
                long perOutput = node.OpType switch
                {
                    "Conv" => weightCount / weightShape[0],           // Cin/groups × kernel
                    "Gemm" => c.ChannelAxis == 0 ? weightShape[1] : weightShape[0],
                    _ => weightShape[0],                                // MatMul: K
                };
                macs += outElements * perOutput;
            }
            layers.Add(new LayerInfo(
                Index: i,
                Name: first.Name.Length > 0 ? first.Name : first.Output[0],
                OpType: first.OpType,
                WeightName: c.Weight.Name,
                WeightShape: weightShape,
                WeightCount: weightCount,
                BiasName: bias?.Name,
                BiasCount: bias is null ? 0 : TensorData.ElementCount(bias),
                ChannelAxis: c.ChannelAxis,
                Groups: groups,
                InputName: first.Input[0],
                OutputName: first.Output[0],
                OutputShape: shapes[first.Output[0]],
                MacsPerImage: macs,
                NodeIndex: c.NodeIndex,
                NodeNames: [.. c.Nodes.Select(n => n.Name.Length > 0 ? n.Name : n.Output[0])],
                IsFirst: i == 0,
                IsLast: i == candidates.Count - 1)
            {
                // Read from the attributes here, once per node, for every later pass (statistics, im2col, Gram shifts).
                NodeGeometry = [.. c.Nodes.Select(n => n.OpType == "Conv" ? ConvGeometry.Of(n, weightShape) : null)],
            });
        }
        return new ModelSummary(prepared.Source, prepared.InputName, prepared.InputShape, prepared.OutputName, prepared.Opset, layers,
            report ?? new PreparationReport(0, 0, 0, false), prepared.Graph.Initializer.Sum(TensorData.ElementCount));
    }

    sealed record Candidate(TensorProto Weight, List<NodeProto> Nodes, int NodeIndex, int ChannelAxis, string? BiasName);

    static List<Candidate> FindCandidates(OnnxModel model)
    {
        var initializers = model.InitializerMap();
        var byWeight = new Dictionary<string, Candidate>(StringComparer.Ordinal);
        var order = new List<Candidate>();
        for (int n = 0; n < model.Graph.Node.Count; n++)
        {
            NodeProto node = model.Graph.Node[n];
            if (node.Domain is not ("" or "ai.onnx") || node.Input.Count < 2) { continue; }
            if (!initializers.TryGetValue(node.Input[1], out TensorProto? weight) || weight.DataType != (int)TensorProto.Types.DataType.Float) { continue; }
            int channelAxis;
            switch (node.OpType)
            {
                case "Conv" when weight.Dims.Count >= 3:
                    channelAxis = 0;
                    break;
                case "Gemm" when weight.Dims.Count == 2:
                    bool transB = (node.Attribute.FirstOrDefault(a => a.Name == "transB")?.I ?? 0) != 0;
                    bool transA = (node.Attribute.FirstOrDefault(a => a.Name == "transA")?.I ?? 0) != 0;
                    if (transA || initializers.ContainsKey(node.Input[0])) { continue; }
                    channelAxis = transB ? 0 : 1;
                    break;
                case "MatMul" when weight.Dims.Count == 2:
                    if (initializers.ContainsKey(node.Input[0])) { continue; }
                    channelAxis = 1;
                    break;
                default:
                    continue;
            }
            string? bias = node.OpType != "MatMul" && node.Input.Count > 2 && initializers.ContainsKey(node.Input[2]) ? node.Input[2] : null;
            if (byWeight.TryGetValue(weight.Name, out Candidate? existing))
            {
                existing.Nodes.Add(node);
                continue;
            }
            var candidate = new Candidate(weight, [node], n, channelAxis, bias);
            byWeight[weight.Name] = candidate;
            order.Add(candidate);
        }
        return order;
    }

    /// <summary>Runs the model once on a zero image of batch 1 with the given tensors exposed as outputs, and returns their shapes.</summary>
    static Dictionary<string, long[]> OutputShapes(OnnxModel model, List<string> tensors)
    {
        OnnxModel probe = model.WithOutputs(tensors);
        long[] inputShape = ConcreteInputShape(model);
        var zeros = new float[inputShape.Aggregate(1L, (a, b) => a * b)];
        using InferenceSession session = OrtSessions.Create(probe.ToBytes(),
            RuntimeOptions.Default with { Optimization = GraphOptimizationLevel.ORT_DISABLE_ALL }, $"model '{model.Source}'");
        using var input = OrtValue.CreateTensorValueFromMemory(zeros, inputShape);
        using var runOptions = new RunOptions();
        try
        {
            using var outputs = session.Run(runOptions, [model.InputName], [input], tensors);
            var shapes = new Dictionary<string, long[]>(StringComparer.Ordinal);
            for (int i = 0; i < tensors.Count; i++)
            {
                shapes[tensors[i]] = outputs[i].GetTensorTypeAndShape().Shape;
            }
            return shapes;
        }
        catch (OnnxRuntimeException e)
        {
            throw Errors.Runtime($"ONNX Runtime cannot run model '{model.Source}' on a zero input of shape [{string.Join(",", inputShape)}]: {OrtSessions.OneLine(e.Message)}", e);
        }
    }

    /// <summary>The data input shape with the batch set to 1; other symbolic dimensions are an error.</summary>
    internal static long[] ConcreteInputShape(OnnxModel model)
    {
        long[] shape = [.. model.InputShape];
        if (shape.Length == 0)
        {
            throw Errors.InvalidInput($"Model '{model.Source}' does not declare the shape of input '{model.InputName}'.");
        }
        shape[0] = 1;
        if (shape.Any(d => d <= 0))
        {
            throw Errors.InvalidInput(
                $"Model '{model.Source}' input '{model.InputName}' has symbolic dimensions [{string.Join(",", model.InputShape)}] besides the batch.");
        }
        return shape;
    }
}
