using BitBudget.Graph.Onnx;

namespace BitBudget.Graph;

/// <summary>A 2-D Conv's geometry, read once from its attributes: kernel, strides, dilations, pads (begin/end) and groups.</summary>
/// <param name="Kh">Kernel height.</param>
/// <param name="Kw">Kernel width.</param>
/// <param name="StrideH">Vertical stride.</param>
/// <param name="StrideW">Horizontal stride.</param>
/// <param name="DilationH">Vertical dilation.</param>
/// <param name="DilationW">Horizontal dilation.</param>
/// <param name="PadTop">Rows padded above.</param>
/// <param name="PadLeft">Columns padded on the left.</param>
/// <param name="PadBottom">Rows padded below.</param>
/// <param name="PadRight">Columns padded on the right.</param>
/// <param name="Groups">Convolution groups.</param>
/// <param name="AutoPad">The ONNX auto_pad mode (NOTSET, VALID, SAME_UPPER, SAME_LOWER); explicit pads apply for NOTSET only.</param>
internal sealed record ConvGeometry(int Kh, int Kw, int StrideH, int StrideW, int DilationH, int DilationW,
    int PadTop, int PadLeft, int PadBottom, int PadRight, int Groups, string AutoPad = "NOTSET")
{
    /// <summary>
    /// The geometry of <paramref name="node"/> with weight <paramref name="weightShape"/>, or null when the Conv is not 2-D.
    /// Called once per node by the graph stage (<see cref="ModelInspector"/>); every later pass reads
    /// <see cref="LayerInfo.NodeGeometry"/> instead of the attributes.
    /// </summary>
    internal static ConvGeometry? Of(NodeProto node, IReadOnlyList<long> weightShape)
    {
        if (weightShape.Count != 4) { return null; }
        long[] Ints(string name, long fallback, int count)
        {
            AttributeProto? a = node.Attribute.FirstOrDefault(x => x.Name == name);
            return a is null || a.Ints.Count == 0 ? Enumerable.Repeat(fallback, count).ToArray() : [.. a.Ints];
        }
        long[] strides = Ints("strides", 1, 2), dilations = Ints("dilations", 1, 2), pads = Ints("pads", 0, 4);
        string autoPad = node.Attribute.FirstOrDefault(x => x.Name == "auto_pad")?.S.ToStringUtf8() ?? "NOTSET";
        if (autoPad is "VALID") { pads = [0, 0, 0, 0]; }
        return new ConvGeometry((int)weightShape[2], (int)weightShape[3], (int)strides[0], (int)strides[1], (int)dilations[0], (int)dilations[1],
            (int)pads[0], (int)pads[1], (int)pads[2], (int)pads[3], GroupsOf(node), autoPad is "" ? "NOTSET" : autoPad);
    }

    /// <summary>A Conv's <c>group</c> attribute (1 when absent); also for Convs that are not 2-D, which have no <see cref="ConvGeometry"/>.</summary>
    internal static int GroupsOf(NodeProto node) => (int)(node.Attribute.FirstOrDefault(a => a.Name == "group")?.I ?? 1);

    /// <summary>Output size and the effective leading pads on an <paramref name="h"/> × <paramref name="w"/> input (auto_pad resolved).</summary>
    public ConvOutput Output(int h, int w)
    {
        (int top, int bottom) = Pads(h, Kh, StrideH, DilationH, PadTop, PadBottom);
        (int left, int right) = Pads(w, Kw, StrideW, DilationW, PadLeft, PadRight);
        int outH = (h + top + bottom - DilationH * (Kh - 1) - 1) / StrideH + 1;
        int outW = (w + left + right - DilationW * (Kw - 1) - 1) / StrideW + 1;
        return new ConvOutput(outH, outW, top, left);
    }

    (int Begin, int End) Pads(int size, int kernel, int stride, int dilation, int begin, int end)
    {
        if (AutoPad is not ("SAME_UPPER" or "SAME_LOWER")) { return (begin, end); }
        int total = Math.Max(0, ((size + stride - 1) / stride - 1) * stride + (kernel - 1) * dilation + 1 - size);
        return AutoPad == "SAME_UPPER" ? (total / 2, total - total / 2) : (total - total / 2, total / 2);
    }
}

/// <summary>A Conv's output size and effective leading pads for one input size.</summary>
internal readonly record struct ConvOutput(int OutH, int OutW, int PadTop, int PadLeft);

/// <summary>One node that reads a layer's weight (a shared weight has several): its op, its data input and, for a Conv, its geometry.</summary>
internal sealed record WeightReader(string OpType, string InputName, ConvGeometry? Conv)
{
    /// <summary>
    /// The nodes of <paramref name="model"/> that read <paramref name="layer"/>'s weight, in graph order. The data input is the
    /// model's own (a derived model may feed the node through inserted Q/DQ); the geometry is the layer's
    /// (<see cref="LayerInfo.NodeGeometry"/>, same graph order), never read again from the attributes.
    /// </summary>
    internal static IReadOnlyList<WeightReader> Of(OnnxModel model, LayerInfo layer)
    {
        NodeProto[] nodes = [.. model.Graph.Node.Where(n => n.Input.Count >= 2 && n.Input[1] == layer.WeightName && n.OpType == layer.OpType)];
        if (nodes.Length != layer.NodeGeometry.Count)
        {
            throw Errors.InvalidInput(
                $"Layer '{layer.Name}' is read by {nodes.Length} node(s) of model '{model.Source}' but its description has {layer.NodeGeometry.Count}; take the layers from ModelInspector on this model.");
        }
        return [.. nodes.Select((n, k) => new WeightReader(n.OpType, n.Input[0], layer.NodeGeometry[k]))];
    }
}
