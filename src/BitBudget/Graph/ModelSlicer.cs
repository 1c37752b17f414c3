using BitBudget.Graph.Onnx;

namespace BitBudget.Graph;

/// <summary>
/// Cuts a model into contiguous node ranges that run as separate models: the range [from, to) takes the tensors live before
/// node <c>from</c> as inputs and produces those live before node <c>to</c> (or the graph outputs at the end).
/// Nodes are in the file's topological order.
/// </summary>
internal sealed class ModelSlicer
{
    readonly OnnxModel _model;
    readonly Dictionary<string, int> _producer = new(StringComparer.Ordinal);
    readonly Dictionary<string, int> _lastUse = new(StringComparer.Ordinal);
    readonly HashSet<string> _outputs;
    readonly HashSet<string> _initializers;
    readonly Dictionary<string, int> _types;

    public ModelSlicer(OnnxModel model)
    {
        _model = model;
        _initializers = model.Graph.Initializer.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        _outputs = model.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        _types = TensorTypes.Infer(model.Graph);
        foreach (var input in model.DataInputs) { _producer[input.Name] = -1; }
        for (int i = 0; i < model.Graph.Node.Count; i++)
        {
            NodeProto node = model.Graph.Node[i];
            foreach (string output in node.Output) { if (output.Length > 0) { _producer[output] = i; } }
            foreach (string input in node.Input) { if (input.Length > 0 && !_initializers.Contains(input)) { _lastUse[input] = i; } }
        }
    }

    /// <summary>Number of nodes.</summary>
    public int NodeCount => _model.Graph.Node.Count;

    /// <summary>Index of the node named <paramref name="name"/> (or whose first output is that name).</summary>
    public int IndexOf(string name)
    {
        for (int i = 0; i < _model.Graph.Node.Count; i++)
        {
            NodeProto n = _model.Graph.Node[i];
            if ((n.Name.Length > 0 ? n.Name : n.Output[0]) == name) { return i; }
        }
        throw Errors.InvalidInput($"Model '{_model.Source}' has no node '{name}'.");
    }

    /// <summary>
    /// Most bytes live at once when the nodes <paramref name="nodes"/> (ascending; null = all) run one after another and every
    /// tensor is freed after its last reader: the inputs the range reads from outside, and each output until its last use
    /// (graph outputs and <paramref name="kept"/> tensors until the end). <paramref name="bytes"/> gives a tensor's size (0 if unknown).
    /// </summary>
    public long PeakLive(Func<string, long> bytes, int[]? nodes = null, IReadOnlySet<string>? kept = null)
    {
        nodes ??= [.. Enumerable.Range(0, NodeCount)];
        var inRange = nodes.ToHashSet();
        var last = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (int i in nodes)
        {
            foreach (string input in _model.Graph.Node[i].Input) { if (input.Length > 0 && !_initializers.Contains(input)) { last[input] = i; } }
        }
        long live = 0, peak = 0;
        var alive = new HashSet<string>(StringComparer.Ordinal);
        foreach (string t in ExternalInputs(nodes)) { if (alive.Add(t)) { live += bytes(t); } }
        peak = live;
        foreach (int i in nodes)
        {
            NodeProto node = _model.Graph.Node[i];
            foreach (string o in node.Output) { if (o.Length > 0 && alive.Add(o)) { live += bytes(o); } }
            peak = Math.Max(peak, live);
            foreach (string t in node.Input.Concat(node.Output))
            {
                if (t.Length == 0 || _outputs.Contains(t) || (kept?.Contains(t) ?? false) || !alive.Contains(t)) { continue; }
                if (!last.TryGetValue(t, out int l) || l <= i) { alive.Remove(t); live -= bytes(t); }
            }
        }
        return peak;
    }

    /// <summary>Tensors produced before node <paramref name="position"/> and still needed at or after it, in a stable order.</summary>
    public string[] LiveAt(int position)
    {
        if (position >= NodeCount) { return [.. _model.Graph.Output.Select(o => o.Name)]; }
        return [.. _producer.Where(p => p.Value < position && ((_lastUse.TryGetValue(p.Key, out int last) && last >= position) || _outputs.Contains(p.Key)))
            .OrderBy(p => p.Value).ThenBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Key)];
    }

    /// <summary>
    /// Node <paramref name="node"/> and every node whose values depend on it, in node order (its cone). Shape and Size read
    /// only their input's shape, which quantization never changes, so the shape arithmetic after them (a transformer's
    /// Shape → Gather → Concat → Reshape chains) stays outside every cone and is read from the full-precision run.
    /// </summary>
    public int[] Cone(int node)
    {
        var inCone = new bool[NodeCount];
        var produced = new HashSet<string>(StringComparer.Ordinal);
        inCone[node] = true;
        foreach (string o in _model.Graph.Node[node].Output) { produced.Add(o); }
        for (int i = node + 1; i < NodeCount; i++)
        {
            NodeProto n = _model.Graph.Node[i];
            if (n.OpType is "Shape" or "Size" && n.Domain is "" or "ai.onnx") { continue; }
            if (!n.Input.Any(produced.Contains)) { continue; }
            inCone[i] = true;
            foreach (string o in n.Output) { produced.Add(o); }
        }
        return [.. Enumerable.Range(0, NodeCount).Where(i => inCone[i])];
    }

    /// <summary>Tensors the given nodes consume but do not produce (initializers excluded), in a stable order.</summary>
    public string[] ExternalInputs(IReadOnlyList<int> nodes)
    {
        var produced = nodes.SelectMany(i => _model.Graph.Node[i].Output).ToHashSet(StringComparer.Ordinal);
        return [.. nodes.SelectMany(i => _model.Graph.Node[i].Input)
            .Where(t => t.Length > 0 && !_initializers.Contains(t) && !produced.Contains(t)).Distinct()
            .OrderBy(t => _producer.TryGetValue(t, out int p) ? p : int.MaxValue).ThenBy(t => t, StringComparer.Ordinal)];
    }

    /// <summary>Whether <paramref name="tensor"/> is produced by one of <paramref name="nodes"/> (sorted).</summary>
    public bool ProducedBy(string tensor, int[] nodes) => _producer.TryGetValue(tensor, out int p) && Array.BinarySearch(nodes, p) >= 0;

    /// <summary>
    /// The given nodes (sorted) as a model of their own: inputs are <see cref="ExternalInputs"/>, outputs the graph outputs they
    /// produce plus <paramref name="extraOutputs"/>.
    /// </summary>
    public OnnxModel SliceNodes(int[] nodes, IEnumerable<string>? extraOutputs = null)
    {
        var graph = new GraphProto { Name = $"{_model.Graph.Name}_cone_{nodes[0]}" };
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (int i in nodes)
        {
            NodeProto node = _model.Graph.Node[i];
            graph.Node.Add(node.Clone());
            foreach (string input in node.Input) { used.Add(input); }
        }
        foreach (TensorProto t in _model.Graph.Initializer) { if (used.Contains(t.Name)) { graph.Initializer.Add(t.Clone()); } }
        foreach (string name in ExternalInputs(nodes)) { graph.Input.Add(TypedValue(name)); }
        var listed = new HashSet<string>(StringComparer.Ordinal);
        foreach (ValueInfoProto o in _model.Graph.Output)
        {
            if (!ProducedBy(o.Name, nodes)) { throw new ArgumentException($"Graph output '{o.Name}' does not depend on node {nodes[0]}.", nameof(nodes)); }
            graph.Output.Add(o.Clone());
            listed.Add(o.Name);
        }
        foreach (string name in extraOutputs ?? [])
        {
            if (!ProducedBy(name, nodes)) { throw new ArgumentException($"Tensor '{name}' is not produced by the given nodes.", nameof(extraOutputs)); }
            if (listed.Add(name)) { graph.Output.Add(TypedValue(name)); }
        }
        var proto = new ModelProto { IrVersion = _model.Proto.IrVersion, Graph = graph, ProducerName = "bitbudget-slice" };
        proto.OpsetImport.Add(_model.Proto.OpsetImport);
        return new OnnxModel(proto) { Source = $"{_model.Source} cone of node {nodes[0]}" };
    }

    /// <summary>Whether <paramref name="tensor"/> is produced by a node in [<paramref name="from"/>, <paramref name="to"/>).</summary>
    public bool ProducedIn(string tensor, int from, int to) => _producer.TryGetValue(tensor, out int p) && p >= from && p < to;

    /// <summary>Nodes [<paramref name="from"/>, <paramref name="to"/>) as a model of their own, optionally also outputting <paramref name="extraOutputs"/> (produced in the range).</summary>
    public OnnxModel Slice(int from, int to, IEnumerable<string>? extraOutputs = null)
    {
        var graph = new GraphProto { Name = $"{_model.Graph.Name}_{from}_{to}" };
        var used = new HashSet<string>(StringComparer.Ordinal);
        for (int i = from; i < to; i++)
        {
            NodeProto node = _model.Graph.Node[i];
            graph.Node.Add(node.Clone());
            foreach (string input in node.Input) { used.Add(input); }
        }
        foreach (TensorProto t in _model.Graph.Initializer) { if (used.Contains(t.Name)) { graph.Initializer.Add(t.Clone()); } }
        foreach (string name in from == 0 ? _model.DataInputs.Select(i => i.Name).ToArray() : LiveAt(from)) { graph.Input.Add(TypedValue(name)); }
        if (to >= NodeCount)
        {
            foreach (ValueInfoProto o in _model.Graph.Output) { graph.Output.Add(o.Clone()); }
        }
        else
        {
            foreach (string name in LiveAt(to)) { graph.Output.Add(TypedValue(name)); }
        }
        var listed = graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (string name in extraOutputs ?? [])
        {
            if (!ProducedIn(name, from, to)) { throw new ArgumentException($"Tensor '{name}' is not produced by nodes {from}–{to}.", nameof(extraOutputs)); }
            if (listed.Add(name)) { graph.Output.Add(TypedValue(name)); }
        }
        var proto = new ModelProto { IrVersion = _model.Proto.IrVersion, Graph = graph, ProducerName = "bitbudget-slice" };
        proto.OpsetImport.Add(_model.Proto.OpsetImport);
        return new OnnxModel(proto) { Source = $"{_model.Source} nodes {from}–{to}" };
    }

    /// <summary>A slice's input or output declared with the tensor's own element type (shape tensors are int64).</summary>
    ValueInfoProto TypedValue(string name) => TensorTypes.Value(name, _types);
}
