using System.Globalization;
using System.Text;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;

namespace BitBudget.Ompq;

/// <summary>Which tensor stands for a decision unit's function f_i(x) in the orthogonality metric.</summary>
public enum FeatureRule
{
    /// <summary>The layer's output after the elementwise ops that follow it (bias Add, Relu, Clip …).</summary>
    Activation,
    /// <summary>The output of the residual Add the unit closes, after the activation that follows it.</summary>
    BlockOutput,
    /// <summary>The model output (logits); only the last layer reaches it.</summary>
    Logits,
    /// <summary>The layer's own output: nothing elementwise follows it (e.g. it feeds a Concat, a pool or several nodes).</summary>
    Output,
}

/// <summary>One bit-width decision of OMPQ: one searched layer, plus the shortcut convs tied to it when grouping is on.</summary>
/// <param name="Index">Position among the units (topological order of <see cref="Layer"/>); the LP's "deeper units" are those with a larger index.</param>
/// <param name="Layer">Index (in <see cref="ModelSummary.Layers"/>) of the layer that owns the unit's feature.</param>
/// <param name="LayerName">Name of that layer.</param>
/// <param name="Layers">Every layer that takes this unit's bit-width: <see cref="Layer"/> first, then grouped shortcut layers.</param>
/// <param name="FeatureTensor">Graph tensor whose value, flattened per image, is the unit's feature X_i.</param>
/// <param name="Rule">Why that tensor was chosen.</param>
/// <param name="FeatureShape">Shape of the feature for one image.</param>
/// <param name="WeightCount">Weight elements of all layers in the unit (biases not counted).</param>
public sealed record OmpqUnit(
    int Index,
    int Layer,
    string LayerName,
    IReadOnlyList<int> Layers,
    string FeatureTensor,
    FeatureRule Rule,
    IReadOnlyList<long> FeatureShape,
    long WeightCount)
{
    /// <summary>Feature elements per image (d_i).</summary>
    public long FeatureSize => FeatureShape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>How layers become OMPQ decision units.</summary>
public sealed record OmpqUnitOptions
{
    /// <summary>Keep the first and last quantizable layers out of the search (fixed at <see cref="FixedBits"/>); default true.</summary>
    public bool FixFirstAndLast { get; init; } = true;

    /// <summary>Bit-width of the fixed layers; default 8.</summary>
    public int FixedBits { get; init; } = 8;

    /// <summary>
    /// Merge a residual shortcut conv into the unit of the conv that closes the same block (both then share one bit-width),
    /// as OMPQ's code does; default true. When false the shortcut is its own unit whose feature is its own pre-Add output.
    /// </summary>
    public bool GroupShortcuts { get; init; } = true;

    /// <summary>
    /// Transformers: one unit per sub-layer (attention, MLP). Every searched MatMul/Gemm between the residual stream and the
    /// MatMul/Gemm that closes the sub-layer's residual Add (qkv or q/k/v with proj, fc1 with fc2) joins that layer's unit, whose
    /// feature is the residual stream after the Add; default true. Convolutions are never grouped this way.
    /// </summary>
    public bool GroupSubLayers { get; init; } = true;
}

/// <summary>The decision units of a model and the layers kept out of the search.</summary>
/// <param name="Units">The decision units in order.</param>
/// <param name="FixedLayers">Indices of layers outside the search (fixed at <see cref="FixedBits"/>).</param>
/// <param name="FixedBits">Bit-width of the fixed layers.</param>
/// <param name="Layers">Every quantizable layer of the model, for names and weight counts.</param>
public sealed record OmpqUnitMap(IReadOnlyList<OmpqUnit> Units, IReadOnlyList<int> FixedLayers, int FixedBits, IReadOnlyList<LayerInfo> Layers)
{
    /// <summary>Units that hold more than one layer (grouped shortcut convs).</summary>
    public int GroupedUnits => Units.Count(u => u.Layers.Count > 1);

    /// <summary>The "OmpqUnits" report: one line per unit, layers → feature tensor, rule and size, then the fixed layers.</summary>
    public string Format()
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"OmpqUnits: {Units.Count} units over {Units.Sum(u => u.Layers.Count)} searched layers ({GroupedUnits} grouped), {FixedLayers.Count} fixed at {FixedBits} bits");
        text.AppendLine(CultureInfo.InvariantCulture, $"{"unit",4}  {"layers",-44} {"feature tensor",-28} {"rule",-12} {"d_i",9} {"weights",9}");
        foreach (OmpqUnit u in Units)
        {
            string layers = string.Join(" + ", u.Layers.Select(l => $"#{l} {Layers[l].Name}"));
            text.AppendLine(CultureInfo.InvariantCulture, $"{u.Index,4}  {layers,-44} {u.FeatureTensor,-28} {u.Rule,-12} {u.FeatureSize,9} {u.WeightCount,9}");
        }
        foreach (int l in FixedLayers)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"   -  #{l} {Layers[l].Name} fixed at {FixedBits} bits ({Layers[l].WeightCount} weights)");
        }
        return text.ToString();
    }
}

/// <summary>
/// Builds OMPQ decision units from the graph. Rule: walk forward from each searched layer's output through single-consumer
/// elementwise nodes (activations, Add/Mul/Sub/Div with a constant); a residual Add (two computed operands) is crossed once,
/// by the unit whose layer is deepest among those reaching it (it closes the block), and the walk goes on through the activation
/// after it. The walk stops at any other node, at a tensor with several consumers, or at a graph output (then the feature is the logits).
/// </summary>
internal static class OmpqUnits
{
    static readonly HashSet<string> s_unary = new(StringComparer.Ordinal)
    {
        "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu",
        "Softplus", "Mish", "Gelu", "Identity", "BatchNormalization", "ThresholdedRelu",
    };

    /// <summary>Decision units of a prepared model (as returned by <see cref="ModelInspector.Inspect"/>).</summary>
    public static OmpqUnitMap Build(OnnxModel prepared, ModelSummary summary, OmpqUnitOptions? options = null)
    {
        options ??= new OmpqUnitOptions();
        IReadOnlyList<LayerInfo> layers = summary.Layers;
        var fixedLayers = new List<int>();
        var searched = new List<int>();
        foreach (LayerInfo l in layers)
        {
            if (options.FixFirstAndLast && (l.IsFirst || l.IsLast)) { fixedLayers.Add(l.Index); } else { searched.Add(l.Index); }
        }
        if (searched.Count == 0)
        {
            throw Errors.NoQuantizableLayers(
                $"Model '{prepared.Source}' has {layers.Count} quantizable layers, all fixed (first and last); OMPQ needs at least one searched layer.");
        }

        GraphProto graph = prepared.Graph;
        var constants = graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        foreach (NodeProto n in graph.Node)
        {
            if (n.OpType == "Constant") { constants.UnionWith(n.Output); }
        }
        var graphOutputs = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var consumers = new Dictionary<string, List<NodeProto>>(StringComparer.Ordinal);
        foreach (NodeProto n in graph.Node)
        {
            foreach (string input in n.Input.Distinct())
            {
                if (input.Length == 0) { continue; }
                if (!consumers.TryGetValue(input, out var list)) { consumers[input] = list = []; }
                list.Add(n);
            }
        }
        Dictionary<string, int> depth = LayerDepths(graph, layers);

        // First walk: each searched layer up to (not across) a residual Add.
        var walks = new Dictionary<int, Walk>();
        foreach (int l in searched)
        {
            walks[l] = WalkElementwise(layers[l].OutputName, consumers, constants, graphOutputs);
        }
        // The deepest layer reaching a residual Add closes the block; the others are its shortcuts.
        var owner = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (int l in searched)
        {
            NodeProto? add = walks[l].ResidualAdd;
            if (add is null) { continue; }
            string key = add.Output[0];
            if (!owner.TryGetValue(key, out int current) || depth[layers[l].OutputName] > depth[layers[current].OutputName]) { owner[key] = l; }
        }

        var shortcutsOf = new Dictionary<int, List<int>>();
        Dictionary<int, List<int>> subLayerOf = options.GroupSubLayers ? SubLayers(graph, layers, searched, walks, owner) : [];
        var inSubLayer = subLayerOf.Values.SelectMany(m => m).ToHashSet();
        var units = new List<(int Layer, string Tensor, FeatureRule Rule)>();
        foreach (int l in searched)
        {
            if (inSubLayer.Contains(l)) { continue; }
            Walk walk = walks[l];
            if (walk.ResidualAdd is { } add)
            {
                int main = owner[add.Output[0]];
                if (main != l && depth[layers[l].OutputName] < depth[layers[main].OutputName])
                {
                    if (options.GroupShortcuts)
                    {
                        if (!shortcutsOf.TryGetValue(main, out var list)) { shortcutsOf[main] = list = []; }
                        list.Add(l);
                        continue;
                    }
                    units.Add((l, walk.Tensor, walk.Crossed ? FeatureRule.Activation : FeatureRule.Output));
                    continue;
                }
                if (main == l)
                {
                    Walk after = WalkElementwise(add.Output[0], consumers, constants, graphOutputs);
                    string tensor = after.Tensor;
                    units.Add((l, tensor, graphOutputs.Contains(tensor) ? FeatureRule.Logits : FeatureRule.BlockOutput));
                    continue;
                }
            }
            FeatureRule rule = graphOutputs.Contains(walk.Tensor) ? FeatureRule.Logits : walk.Crossed ? FeatureRule.Activation : FeatureRule.Output;
            units.Add((l, walk.Tensor, rule));
        }

        var result = new List<OmpqUnit>(units.Count);
        foreach ((int layer, string tensor, FeatureRule rule) in units)
        {
            List<int> members = [layer, .. shortcutsOf.GetValueOrDefault(layer) ?? [], .. subLayerOf.GetValueOrDefault(layer) ?? []];
            IReadOnlyList<long> shape = rule == FeatureRule.Logits && tensor == prepared.OutputName && prepared.OutputShape.Count > 0
                ? [1, .. prepared.OutputShape.Skip(1)]
                : layers[layer].OutputShape;
            result.Add(new OmpqUnit(result.Count, layer, layers[layer].Name, members, tensor, rule, shape, members.Sum(m => layers[m].WeightCount)));
        }
        return new OmpqUnitMap(result, fixedLayers, options.FixedBits, layers);
    }

    /// <summary>
    /// Transformer sub-layers: for each residual Add closed by a MatMul/Gemm, the other searched MatMul/Gemm layers that lie
    /// after the Add's other operand (the residual stream) and before the closing layer, keyed by the closing layer.
    /// </summary>
    static Dictionary<int, List<int>> SubLayers(GraphProto graph, IReadOnlyList<LayerInfo> layers, List<int> searched,
        Dictionary<int, Walk> walks, Dictionary<string, int> owner)
    {
        var result = new Dictionary<int, List<int>>();
        var closing = owner.Values.ToHashSet();
        foreach (int main in closing)
        {
            if (layers[main].OpType == "Conv" || walks[main].ResidualAdd is not { } add) { continue; }
            string stream = add.Input[0] == walks[main].Tensor ? add.Input[1] : add.Input[0];
            HashSet<string> after = Descendants(graph, stream), before = Ancestors(graph, layers[main].InputName);
            List<int> members = [.. searched.Where(l => l != main && !closing.Contains(l) && layers[l].OpType != "Conv"
                && after.Contains(layers[l].OutputName) && before.Contains(layers[l].OutputName))];
            if (members.Count > 0) { result[main] = members; }
        }
        return result;
    }

    /// <summary>Every tensor computed from <paramref name="tensor"/> (itself included).</summary>
    static HashSet<string> Descendants(GraphProto graph, string tensor)
    {
        var reached = new HashSet<string>(StringComparer.Ordinal) { tensor };
        foreach (NodeProto n in graph.Node)
        {
            if (n.Input.Any(reached.Contains)) { reached.UnionWith(n.Output.Where(o => o.Length > 0)); }
        }
        return reached;
    }

    /// <summary>Every tensor <paramref name="tensor"/> is computed from (itself included).</summary>
    static HashSet<string> Ancestors(GraphProto graph, string tensor)
    {
        var reached = new HashSet<string>(StringComparer.Ordinal) { tensor };
        for (int i = graph.Node.Count - 1; i >= 0; i--)
        {
            NodeProto n = graph.Node[i];
            if (n.Output.Any(reached.Contains)) { reached.UnionWith(n.Input.Where(x => x.Length > 0)); }
        }
        return reached;
    }

    /// <summary>Where an elementwise walk from a tensor ended.</summary>
    /// <param name="Tensor">Last tensor reached.</param>
    /// <param name="Crossed">Whether at least one elementwise node was crossed.</param>
    /// <param name="ResidualAdd">The residual Add consuming <see cref="Tensor"/>, if that is why the walk stopped.</param>
    readonly record struct Walk(string Tensor, bool Crossed, NodeProto? ResidualAdd);

    static Walk WalkElementwise(string start, Dictionary<string, List<NodeProto>> consumers, HashSet<string> constants, HashSet<string> graphOutputs)
    {
        string tensor = start;
        bool crossed = false;
        while (!graphOutputs.Contains(tensor) && consumers.TryGetValue(tensor, out var next) && next.Count == 1)
        {
            NodeProto node = next[0];
            if (node.Output.Count < 1) { break; }
            bool elementwise = s_unary.Contains(node.OpType) && node.Input[0] == tensor && node.Input.Skip(1).All(i => i.Length == 0 || constants.Contains(i));
            bool binary = node.OpType is "Add" or "Mul" or "Sub" or "Div" && node.Input.Count == 2;
            if (binary && node.Input.Count(i => constants.Contains(i)) == 1)
            {
                elementwise = true;
            }
            else if (binary && node.OpType == "Add" && node.Input.All(i => !constants.Contains(i)) && node.Input[0] != node.Input[1])
            {
                return new Walk(tensor, crossed, node);
            }
            if (!elementwise) { break; }
            tensor = node.Output[0];
            crossed = true;
        }
        return new Walk(tensor, crossed, null);
    }

    /// <summary>For every tensor, the largest number of quantizable layers on a path from the graph input to it.</summary>
    static Dictionary<string, int> LayerDepths(GraphProto graph, IReadOnlyList<LayerInfo> layers)
    {
        var layerNodes = new HashSet<string>(layers.SelectMany(l => l.NodeNames), StringComparer.Ordinal);
        var depth = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (NodeProto n in graph.Node)
        {
            int d = 0;
            foreach (string input in n.Input) { d = Math.Max(d, depth.GetValueOrDefault(input)); }
            string name = n.Name.Length > 0 ? n.Name : n.Output.Count > 0 ? n.Output[0] : "";
            if (layerNodes.Contains(name)) { d++; }
            foreach (string output in n.Output) { depth[output] = d; }
        }
        return depth;
    }
}
