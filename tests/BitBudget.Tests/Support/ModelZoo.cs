using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using static BitBudget.Tests.Support.TinyModels;

namespace BitBudget.Tests.Support;

/// <summary>
/// Small classifiers with the quirks of real exports (issue 17), built with the ONNX protobuf API: extra outputs,
/// Softmax/LogSoftmax heads, channels-last input, a fixed batch, old and new opsets, a background class, two inputs,
/// non-finite weights, MatMul/Gemm layers. Every model reads 8×8 RGB images ([N,3,8,8] unless said otherwise), so the
/// cifar10 preset is guessed and <see cref="WriteData"/> makes a matching ERAN CSV.
/// </summary>
internal static class ModelZoo
{
    public const int Side = 8;

    /// <summary>What <see cref="Build"/> may change in the base CNN.</summary>
    public sealed record Spec
    {
        public string Name { get; init; } = "zoo";
        public int Classes { get; init; } = 10;
        /// <summary>Head after the logits: "" (logits), "softmax" or "logsoftmax".</summary>
        public string Head { get; init; } = "";
        /// <summary>Add a second output first in the output list? No: the classifier stays first; this adds a spurious
        /// second output (flattened features reshaped with the batch hard-coded as <see cref="FixedBatch"/> or 128, as PyTorch writes it).</summary>
        public bool ExtraOutput { get; init; }
        /// <summary>Put the spurious output first (then --model-output must choose the classifier).</summary>
        public bool ExtraOutputFirst { get; init; }
        public bool Nhwc { get; init; }
        /// <summary>A fixed batch dimension (e.g. 1) instead of the symbolic N, with a Reshape that hard-codes it.</summary>
        public int? FixedBatch { get; init; }
        public long Opset { get; init; } = 13;
        /// <summary>A second data input (a per-image scale multiplied into the first conv's output).</summary>
        public bool TwoInputs { get; init; }
        /// <summary>Put NaN (or +Inf when false) into one channel of the middle conv's weight.</summary>
        public float? BadWeight { get; init; }
    }

    /// <summary>
    /// x → Conv(8, 3×3) → Relu → Conv(8, 3×3) "conv2" → Relu → Conv(8, 3×3) "conv3" → Relu → GlobalAveragePool → Flatten/Reshape
    /// → Gemm(classes) "fc" → [Softmax|LogSoftmax]; four quantizable layers (first and last fixed by default, two searched).
    /// </summary>
    public static OnnxModel Build(Spec spec)
    {
        var nodes = new List<NodeProto>();
        var inits = new List<TensorProto>();
        long batch = spec.FixedBatch ?? -1;
        string input = "x";
        if (spec.Nhwc)
        {
            nodes.Add(Node("Transpose", ["x"], ["x_nchw"], "to_nchw", Ints("perm", 0, 3, 1, 2)));
            input = "x_nchw";
        }
        nodes.Add(Node("Conv", [input, "w1", "b1"], ["c1"], "conv1", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)));
        string afterFirst = "c1";
        if (spec.TwoInputs)
        {
            nodes.Add(Node("Mul", ["c1", "gain"], ["c1g"], "gain_mul"));
            afterFirst = "c1g";
        }
        nodes.Add(Node("Relu", [afterFirst], ["r1"], "relu1"));
        nodes.Add(Node("Conv", ["r1", "w2", "b2"], ["c2"], "conv2", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)));
        nodes.Add(Node("Relu", ["c2"], ["r2"], "relu2"));
        nodes.Add(Node("Conv", ["r2", "w3", "b3"], ["c3"], "conv3", Ints("kernel_shape", 3, 3), Ints("pads", 1, 1, 1, 1)));
        nodes.Add(Node("Relu", ["c3"], ["r3"], "relu3"));
        nodes.Add(Node("GlobalAveragePool", ["r3"], ["gap"], "gap"));
        if (spec.FixedBatch is int fixedBatch)
        {
            nodes.Add(Node("Reshape", ["gap", "flat_shape"], ["flat"], "flatten"));
            inits.Add(TensorData.Int64("flat_shape", [2], [fixedBatch, 8]));
        }
        else
        {
            nodes.Add(Node("Flatten", ["gap"], ["flat"], "flatten", Int("axis", 1)));
        }
        string logits = spec.Head.Length == 0 ? "logits" : "scores";
        nodes.Add(Node("Gemm", ["flat", "wfc", "bfc"], [logits], "fc", Int("transB", 1)));
        string output = logits;
        if (spec.Head.Length > 0)
        {
            output = spec.Head == "softmax" ? "prob" : "logprob";
            nodes.Add(Node(spec.Head == "softmax" ? "Softmax" : "LogSoftmax", [logits], [output], spec.Head, Int("axis", 1)));
        }
        // Scales chosen so the logits spread over a few units (a Softmax head then neither saturates nor underflows).
        float[] w2 = Scaled(Deterministic(8 * 8 * 9, 2), 0.35f);
        if (spec.BadWeight is float bad) { w2[3 * 72 + 5] = bad; }   // output channel 3 of conv2
        inits.AddRange(
        [
            TensorData.Float("w1", [8, 3, 3, 3], Scaled(Deterministic(8 * 27, 1), 0.6f)), TensorData.Float("b1", [8], Scaled(Deterministic(8, 11), 0.1f)),
            TensorData.Float("w2", [8, 8, 3, 3], w2), TensorData.Float("b2", [8], Scaled(Deterministic(8, 12), 0.1f)),
            TensorData.Float("w3", [8, 8, 3, 3], Scaled(Deterministic(8 * 72, 3), 0.35f)), TensorData.Float("b3", [8], Scaled(Deterministic(8, 13), 0.1f)),
            TensorData.Float("wfc", [spec.Classes, 8], Scaled(Deterministic(spec.Classes * 8, 4), 3f)), TensorData.Float("bfc", [spec.Classes], Scaled(Deterministic(spec.Classes, 14), 0.2f)),
        ]);
        ValueInfoProto x = spec.Nhwc ? Value("x", batch, Side, Side, 3) : Value("x", batch, 3, Side, Side);
        var outputs = new List<ValueInfoProto> { Value(output, batch, spec.Classes) };
        if (spec.ExtraOutput)
        {
            // PyTorch's `x.view(128, -1)` on the features: a Constant node holding the traced batch size.
            long traced = spec.FixedBatch ?? 128;
            var shape = new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = TensorData.Int64("", [2], [traced, -1]) };
            nodes.Add(Node("Constant", [], ["features_shape"], "features_shape", shape));
            nodes.Add(Node("Reshape", ["r3", "features_shape"], ["features"], "features"));
            var features = Value("features", traced, 8 * Side * Side);
            if (spec.ExtraOutputFirst) { outputs.Insert(0, features); } else { outputs.Add(features); }
        }
        var graph = new GraphProto { Name = spec.Name };
        graph.Node.AddRange(nodes);
        graph.Initializer.AddRange(inits);
        graph.Input.Add(x);
        if (spec.TwoInputs) { graph.Input.Add(Value("gain", batch, 1, 1, 1)); }
        graph.Output.AddRange(outputs);
        // Opsets before 9 come with IR 3, which lists every initializer as a graph input too.
        long ir = spec.Opset switch { <= 8 => 3, <= 10 => 5, _ => 8 };
        if (ir < 4)
        {
            foreach (TensorProto t in inits) { graph.Input.Add(Value(t.Name, [.. t.Dims])); graph.Input[^1].Type.TensorType.ElemType = t.DataType; }
        }
        var proto = new ModelProto { IrVersion = ir, ProducerName = "bitbudget-zoo", Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = spec.Opset });
        return new OnnxModel(proto) { Source = spec.Name + ".onnx" };
    }

    /// <summary>
    /// x[N,3,8,8] → Flatten → MatMul(192→32) "mm1" + Add → Relu → Gemm(32→32) "gemm2" → Relu → MatMul(32→16) "mm3" + Add → Relu
    /// → Gemm(16→10) "gemm4": MatMul and Gemm layers (issue 17 item 2: 2 bits with bias correction).
    /// </summary>
    public static OnnxModel MatMulGemm()
    {
        var nodes = new List<NodeProto>
        {
            Node("Flatten", ["x"], ["flat"], "flatten", Int("axis", 1)),
            Node("MatMul", ["flat", "w1"], ["m1"], "mm1"),
            Node("Add", ["m1", "b1"], ["a1"], "add1"),
            Node("Relu", ["a1"], ["r1"], "relu1"),
            Node("Gemm", ["r1", "w2", "b2"], ["g2"], "gemm2", Int("transB", 1)),
            Node("Relu", ["g2"], ["r2"], "relu2"),
            Node("MatMul", ["r2", "w3"], ["m3"], "mm3"),
            Node("Add", ["m3", "b3"], ["a3"], "add3"),
            Node("Relu", ["a3"], ["r3"], "relu3"),
            Node("Gemm", ["r3", "w4", "b4"], ["logits"], "gemm4"),
        };
        TensorProto[] inits =
        [
            TensorData.Float("w1", [192, 32], Scaled(Deterministic(192 * 32, 21), 0.15f)), TensorData.Float("b1", [32], Scaled(Deterministic(32, 22), 0.1f)),
            TensorData.Float("w2", [32, 32], Scaled(Deterministic(32 * 32, 23), 0.4f)), TensorData.Float("b2", [32], Scaled(Deterministic(32, 24), 0.1f)),
            TensorData.Float("w3", [32, 16], Scaled(Deterministic(32 * 16, 25), 0.4f)), TensorData.Float("b3", [16], Scaled(Deterministic(16, 26), 0.1f)),
            TensorData.Float("w4", [16, 10], Scaled(Deterministic(16 * 10, 27), 1.5f)), TensorData.Float("b4", [10], Scaled(Deterministic(10, 28), 0.1f)),
        ];
        OnnxModel model = Model(nodes, inits, Value("x", -1, 3, Side, Side), Value("logits", -1, 10));
        return new OnnxModel(model.Proto) { Source = "matmul-gemm.onnx" };
    }

    static float[] Deterministic(int n, int seed) => OrtHelpers.Deterministic(n, seed);

    static float[] Scaled(float[] values, float scale)
    {
        for (int i = 0; i < values.Length; i++) { values[i] *= scale; }
        return values;
    }

    /// <summary>
    /// Writes <paramref name="count"/> random 8×8 RGB images labelled by what the float <paramref name="labeller"/> predicts
    /// (minus <paramref name="labelOffset"/>), so its top-1 is 100 % and a wrong label mapping shows at once. With
    /// <paramref name="dataClasses"/> ≤ 10 an ERAN CSV at <paramref name="path"/>; otherwise a flat folder of
    /// <c>cNNNN_i.png</c> files at <paramref name="path"/> and, beside it, <c>path.classes.txt</c> listing every class
    /// (as ImageNet's wnids are listed), so the data has <paramref name="dataClasses"/> classes whichever occur.
    /// </summary>
    public static void WriteData(string path, OnnxModel labeller, int count, int seed, int dataClasses = 10, int labelOffset = 0)
    {
        var random = new Random(seed);
        var pixels = new byte[count, Side * Side * 3];
        for (int i = 0; i < count; i++)
        {
            // A random colour per image plus noise: the pooled features (and so the predicted classes) vary between images.
            int[] colour = [random.Next(256), random.Next(256), random.Next(256)];
            for (int k = 0; k < Side * Side * 3; k++) { pixels[i, k] = (byte)Math.Clamp(colour[k % 3] + random.Next(-40, 41), 0, 255); }
        }
        string temp = path + ".unlabelled.csv";
        WriteCsv(temp, pixels, new int[count]);
        Dataset data = DatasetLoader.Load(new DataOptions { Path = temp, Preprocessing = Preprocessing.Cifar10, CacheDirectory = "" });
        File.Delete(temp);
        (OnnxModel prepared, _) = ModelPreparer.Prepare(labeller);
        float[] logits;
        using (var engine = EvaluationEngine.Create(prepared)) { logits = engine.Logits(data); }
        int classes = logits.Length / count;
        var labels = new int[count];
        for (int i = 0; i < count; i++)
        {
            ReadOnlySpan<float> row = logits.AsSpan(i * classes, classes);
            int best = 0;
            for (int c = 1; c < classes; c++) { if (row[c] > row[best]) { best = c; } }
            labels[i] = best - labelOffset;
            if (labels[i] < 0 || labels[i] >= dataClasses) { throw new InvalidOperationException($"Image {i} is predicted as class {best}, outside the data's classes."); }
        }
        if (dataClasses <= 10)
        {
            WriteCsv(path, pixels, labels);
            return;
        }
        Directory.CreateDirectory(path);
        File.WriteAllLines(path + ".classes.txt", Enumerable.Range(0, dataClasses).Select(c => $"c{c:D4}"));
        for (int i = 0; i < count; i++)
        {
            using var bitmap = new SkiaSharp.SKBitmap(Side, Side, SkiaSharp.SKColorType.Rgba8888, SkiaSharp.SKAlphaType.Opaque);
            for (int y = 0; y < Side; y++)
            {
                for (int x = 0; x < Side; x++)
                {
                    int at = (y * Side + x) * 3;
                    bitmap.SetPixel(x, y, new SkiaSharp.SKColor(pixels[i, at], pixels[i, at + 1], pixels[i, at + 2]));
                }
            }
            using var png = bitmap.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
            File.WriteAllBytes(System.IO.Path.Combine(path, $"c{labels[i]:D4}_{i:D4}.png"), png.ToArray());
        }
    }

    static void WriteCsv(string path, byte[,] pixels, int[] labels)
    {
        using var writer = new StreamWriter(path);
        for (int i = 0; i < labels.Length; i++)
        {
            writer.Write(labels[i].ToString(System.Globalization.CultureInfo.InvariantCulture));
            for (int k = 0; k < pixels.GetLength(1); k++) { writer.Write(','); writer.Write(pixels[i, k].ToString(System.Globalization.CultureInfo.InvariantCulture)); }
            writer.Write('\n');
        }
    }
}
