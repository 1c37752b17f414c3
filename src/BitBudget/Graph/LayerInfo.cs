namespace BitBudget.Graph;

/// <summary>One quantizable layer: a Conv, Gemm or MatMul whose weight is a constant initializer.</summary>
/// <param name="Index">Position among the quantizable layers, in topological order.</param>
/// <param name="Name">Node name (the output name when the node has none).</param>
/// <param name="OpType">Conv, Gemm or MatMul.</param>
/// <param name="WeightName">Initializer holding the weight; a weight shared by several nodes is one layer.</param>
/// <param name="WeightShape">Shape of the weight tensor.</param>
/// <param name="WeightCount">Number of weight elements.</param>
/// <param name="BiasName">Initializer holding the bias, if any.</param>
/// <param name="BiasCount">Number of bias elements (0 without a bias).</param>
/// <param name="ChannelAxis">Axis of the weight that indexes output channels (0 for Conv and Gemm with transB=1, 1 for MatMul).</param>
/// <param name="Groups">Conv groups (1 for Gemm/MatMul).</param>
/// <param name="InputName">Tensor the layer reads (its activation input).</param>
/// <param name="OutputName">Tensor the layer writes.</param>
/// <param name="OutputShape">Output shape for one image (batch dimension 1).</param>
/// <param name="MacsPerImage">Multiply-accumulates per image, summed over every node sharing the weight.</param>
/// <param name="NodeIndex">Index of the (first) node in the topologically sorted graph.</param>
/// <param name="NodeNames">Every node that uses this weight.</param>
/// <param name="IsFirst">Whether this is the first quantizable layer.</param>
/// <param name="IsLast">Whether this is the last quantizable layer.</param>
public sealed record LayerInfo(
    int Index,
    string Name,
    string OpType,
    string WeightName,
    IReadOnlyList<long> WeightShape,
    long WeightCount,
    string? BiasName,
    long BiasCount,
    int ChannelAxis,
    int Groups,
    string InputName,
    string OutputName,
    IReadOnlyList<long> OutputShape,
    long MacsPerImage,
    int NodeIndex,
    IReadOnlyList<string> NodeNames,
    bool IsFirst,
    bool IsLast)
{
    /// <summary>
    /// Per node of <see cref="NodeNames"/> (graph order): its 2-D Conv geometry, null for Gemm/MatMul and Convs that are not
    /// 2-D. Set by the graph stage; internal because the geometry type is (a hand-made layer has none).
    /// </summary>
    internal IReadOnlyList<ConvGeometry?> NodeGeometry { get; init; } = [];

    /// <summary>Number of output channels (the length of the weight along <see cref="ChannelAxis"/>).</summary>
    public long OutputChannels => WeightShape[ChannelAxis];

    /// <summary>Weight plus bias elements.</summary>
    public long ParameterCount => WeightCount + BiasCount;
}

/// <summary>The quantizable layers of a prepared model and its totals.</summary>
/// <param name="Source">Where the model came from.</param>
/// <param name="InputName">Data input tensor.</param>
/// <param name="InputShape">Data input shape (-1 for a symbolic dimension).</param>
/// <param name="OutputName">Logits tensor.</param>
/// <param name="Opset">Default-domain opset.</param>
/// <param name="Layers">The quantizable layers in topological order.</param>
/// <param name="Preparation">What preparation changed.</param>
/// <param name="ModelInitializerElements">Elements of every initializer of the model as loaded (shape constants included), the "parameters" figure model zoos quote.</param>
public sealed record ModelSummary(
    string Source,
    string InputName,
    IReadOnlyList<long> InputShape,
    string OutputName,
    long Opset,
    IReadOnlyList<LayerInfo> Layers,
    PreparationReport Preparation,
    long ModelInitializerElements)
{
    /// <summary>Weight elements over all quantizable layers.</summary>
    public long TotalWeights => Layers.Sum(l => l.WeightCount);

    /// <summary>Weight plus bias elements over all quantizable layers.</summary>
    public long TotalParameters => Layers.Sum(l => l.ParameterCount);

    /// <summary>Multiply-accumulates per image over all quantizable layers.</summary>
    public long TotalMacs => Layers.Sum(l => l.MacsPerImage);

    /// <summary>Count of layers per operator type, e.g. "21 Conv + 1 Gemm".</summary>
    public string OpCounts => string.Join(" + ", Layers.GroupBy(l => l.OpType).Select(g => $"{g.Count()} {g.Key}"));
}
