using BitBudget.Graph.Onnx;
using BitBudget.Internals;
using Google.Protobuf;

namespace BitBudget.Graph;

/// <summary>An ONNX model held in memory: load, transform and save, keeping every field BitBudget does not touch.</summary>
/// <remarks>Unknown protobuf fields (newer ONNX features) are preserved by the parser and written back unchanged.</remarks>
public sealed class OnnxModel
{
    internal ModelProto Proto { get; }

    internal OnnxModel(ModelProto proto) => Proto = proto;

    internal GraphProto Graph => Proto.Graph;

    /// <summary>Where the model was loaded from, for messages; "(memory)" for models built in code.</summary>
    public string Source { get; init; } = "(memory)";

    /// <summary>Reads and validates an ONNX file.</summary>
    /// <exception cref="BitBudgetException">The file is missing, not ONNX, truncated or uses external data.</exception>
    public static OnnxModel Load(string path)
    {
        if (Directory.Exists(path))
        {
            throw Errors.NotOnnx($"'{path}' is a folder, not an ONNX model file.");
        }
        if (!File.Exists(path))
        {
            throw Errors.FileNotFound($"Model file '{path}' does not exist.");
        }
        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses ONNX bytes; <paramref name="source"/> names them in error messages.</summary>
    public static OnnxModel Parse(byte[] bytes, string source = "(memory)")
    {
        ModelProto proto;
        try
        {
            proto = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e) when (e.Message.Contains("truncated", StringComparison.OrdinalIgnoreCase)
                                                        || e.Message.Contains("ended unexpectedly", StringComparison.OrdinalIgnoreCase))
        {
            throw Errors.TruncatedModel($"Model file '{source}' is truncated: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw Errors.NotOnnx($"'{source}' is not an ONNX model: {e.Message.ReplaceLineEndings(" ")}", e);
        }
        if (bytes.Length == 0 || !proto.HasIrVersion || proto.IrVersion <= 0 || proto.Graph is null || proto.Graph.Node.Count == 0)
        {
            throw Errors.NotOnnx($"'{source}' is not an ONNX model: it has no IR version or no graph.");
        }
        foreach (TensorProto t in proto.Graph.Initializer)
        {
            if (TensorData.IsExternal(t))
            {
                throw Errors.ExternalData(
                    $"Model '{source}' stores tensor '{t.Name}' in external data, which BitBudget does not support yet; save it as a single file.");
            }
            if (!t.HasRawData && t.DataType == (int)TensorProto.Types.DataType.Float && t.FloatData.Count != TensorData.ElementCount(t))
            {
                throw Errors.TruncatedModel($"Model file '{source}' is truncated: tensor '{t.Name}' has {t.FloatData.Count} of {TensorData.ElementCount(t)} values.");
            }
            if (t.HasRawData && t.DataType == (int)TensorProto.Types.DataType.Float && t.RawData.Length != TensorData.ElementCount(t) * 4)
            {
                throw Errors.TruncatedModel($"Model file '{source}' is truncated: tensor '{t.Name}' has {t.RawData.Length} of {TensorData.ElementCount(t) * 4} bytes.");
            }
        }
        return new OnnxModel(proto) { Source = source };
    }

    /// <summary>The serialized model.</summary>
    public byte[] ToBytes() => Proto.ToByteArray();

    /// <summary>Writes the model to <paramref name="path"/> through a temporary file and a rename.</summary>
    public void Save(string path) => AtomicFile.WriteAllBytes(path, ToBytes());

    /// <summary>A deep copy that can be transformed without touching this model.</summary>
    public OnnxModel Clone() => new(Proto.Clone()) { Source = Source };

    /// <summary>SHA-256 of the serialized model, as lower-case hex.</summary>
    public string ComputeHash() => Hashing.Sha256Hex(ToBytes());

    /// <summary>Opset version of the default ONNX domain.</summary>
    public long Opset => Proto.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx")?.Version ?? 1;

    /// <summary>The IR version of the file.</summary>
    public long IrVersion => Proto.IrVersion;

    /// <summary>Name of the data input: the first graph input that is not an initializer.</summary>
    public string InputName => DataInputs[0].Name;

    /// <summary>Name of the first graph output (the logits of a classifier).</summary>
    public string OutputName => Graph.Output[0].Name;

    /// <summary>Shape of the data input; a symbolic dimension is -1.</summary>
    public IReadOnlyList<long> InputShape => ShapeOf(DataInputs[0]);

    /// <summary>Shape of the first output; a symbolic dimension is -1.</summary>
    public IReadOnlyList<long> OutputShape => ShapeOf(Graph.Output[0]);

    internal IReadOnlyList<ValueInfoProto> DataInputs
    {
        get
        {
            var initializers = Graph.Initializer.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
            var inputs = Graph.Input.Where(i => !initializers.Contains(i.Name)).ToList();
            if (inputs.Count == 0)
            {
                throw Errors.InvalidInput($"Model '{Source}' has no data input.");
            }
            return inputs;
        }
    }

    internal static long[] ShapeOf(ValueInfoProto value)
    {
        var shape = value.Type?.TensorType?.Shape;
        if (shape is null) { return []; }
        return [.. shape.Dim.Select(d => d.ValueCase == TensorShapeProto.Types.Dimension.ValueOneofCase.DimValue ? d.DimValue : -1L)];
    }

    /// <summary>A copy whose graph also outputs the named intermediate tensors (with their element types), after the existing outputs.</summary>
    public OnnxModel WithOutputs(IEnumerable<string> tensors) => WithOutputs(tensors, typed: true);

    /// <summary>As <see cref="WithOutputs(IEnumerable{string})"/>; with <paramref name="typed"/> false the outputs carry no type and
    /// ONNX Runtime infers it.</summary>
    internal OnnxModel WithOutputs(IEnumerable<string> tensors, bool typed)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        OnnxModel copy = Clone();
        Dictionary<string, int>? types = null;
        var existing = copy.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        var produced = copy.Graph.Node.SelectMany(n => n.Output).Concat(copy.Graph.Input.Select(i => i.Name)).ToHashSet(StringComparer.Ordinal);
        foreach (string name in tensors)
        {
            if (!produced.Contains(name))
            {
                throw Errors.InvalidInput($"Model '{Source}' has no tensor named '{name}'.");
            }
            if (!existing.Add(name)) { continue; }
            if (!typed)
            {
                copy.Graph.Output.Add(new ValueInfoProto { Name = name });
                continue;
            }
            types ??= TensorTypes.Infer(copy.Graph);
            copy.Graph.Output.Add(TensorTypes.Value(name, types));
        }
        return copy;
    }

    /// <summary>Every tensor a node produces, in node order (what a footprint probe exposes).</summary>
    public IReadOnlyList<string> NodeOutputs => [.. Graph.Node.SelectMany(n => n.Output).Where(o => o.Length > 0).Distinct(StringComparer.Ordinal)];

    /// <summary>A copy that also outputs the named tensors without declaring their type (ORT infers it; for tensors of any element type).</summary>
    internal OnnxModel WithUntypedOutputs(IEnumerable<string> tensors)
    {
        OnnxModel copy = Clone();
        var existing = copy.Graph.Output.Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        foreach (string name in tensors) { if (existing.Add(name)) { copy.Graph.Output.Add(new ValueInfoProto { Name = name }); } }
        return copy;
    }

    /// <summary>
    /// Most bytes live at once in one sequential forward pass when every tensor is freed after its last reader and
    /// <paramref name="kept"/> tensors (exposed outputs) stay until the end; <paramref name="bytes"/> sizes a tensor.
    /// </summary>
    internal long PeakLiveBytes(Func<string, long> bytes, IReadOnlySet<string>? kept = null) => new ModelSlicer(this).PeakLive(bytes, null, kept);

    /// <summary>A copy with the named float initializers set to new values of the same element count.</summary>
    public OnnxModel WithInitializers(IReadOnlyDictionary<string, float[]> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        OnnxModel copy = Clone();
        var map = copy.InitializerMap();
        foreach ((string name, float[] data) in values)
        {
            if (!map.TryGetValue(name, out TensorProto? tensor))
            {
                throw Errors.InvalidInput($"Model '{Source}' has no initializer '{name}' to replace.");
            }
            if (TensorData.ElementCount(tensor) != data.Length)
            {
                throw Errors.InvalidInput(
                    $"Replacement for initializer '{name}' has {data.Length} values; the model's has {TensorData.ElementCount(tensor)}.");
            }
            TensorData.SetFloats(tensor, data);
        }
        return copy;
    }

    /// <summary>
    /// Float initializers of at least <paramref name="minElements"/> values that <paramref name="other"/> holds with the same
    /// name, shape and values: weights that sessions of both models can share instead of each deserializing its own copy.
    /// </summary>
    internal IEnumerable<string> FloatInitializersSameAs(OnnxModel other, long minElements)
    {
        var theirs = other.InitializerMap();
        foreach (TensorProto t in Graph.Initializer)
        {
            if (t.DataType == (int)TensorProto.Types.DataType.Float && TensorData.ElementCount(t) >= minElements
                && theirs.TryGetValue(t.Name, out TensorProto? o) && t.Equals(o))
            {
                yield return t.Name;
            }
        }
    }

    /// <summary>Name, values and shape of every float initializer of at least <paramref name="minElements"/> values.</summary>
    internal IEnumerable<(string Name, float[] Values, long[] Dims)> FloatInitializers(long minElements) =>
        Graph.Initializer.Where(t => t.DataType == (int)TensorProto.Types.DataType.Float && TensorData.ElementCount(t) >= minElements)
            .Select(t => (t.Name, TensorData.ReadFloats(t), TensorData.Shape(t)));

    /// <summary>
    /// Turns the named initializers into references to external data (<paramref name="file"/> at the offset and length
    /// <paramref name="location"/> gives), dropping the embedded values: for sessions that receive those values another way.
    /// </summary>
    internal void MoveToExternalData(IEnumerable<string> names, string file, Func<string, (long Offset, long Length)> location)
    {
        var map = InitializerMap();
        foreach (string name in names)
        {
            TensorProto t = map[name];
            (long offset, long length) = location(name);
            t.ClearRawData();
            t.FloatData.Clear();
            t.DataLocation = TensorProto.Types.DataLocation.External;
            t.ExternalData.Clear();
            t.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = file });
            t.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
            t.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }
    }

    internal TensorProto? FindInitializer(string name) => Graph.Initializer.FirstOrDefault(t => t.Name == name);

    internal Dictionary<string, TensorProto> InitializerMap() =>
        Graph.Initializer.GroupBy(t => t.Name, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Last(), StringComparer.Ordinal);

    /// <summary>Sets the opset of the default domain (never lowers it) and the IR version needed for it.</summary>
    internal void RaiseOpset(long opset)
    {
        var entry = Proto.OpsetImport.FirstOrDefault(o => o.Domain is "" or "ai.onnx");
        if (entry is null)
        {
            Proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        }
        else if (entry.Version < opset)
        {
            entry.Version = opset;
        }
        long ir = opset switch { >= 25 => 12, >= 23 => 11, >= 21 => 10, >= 19 => 9, >= 15 => 8, >= 13 => 7, _ => Proto.IrVersion };
        if (Proto.IrVersion < ir) { Proto.IrVersion = ir; }
    }
}
