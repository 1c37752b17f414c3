using BitBudget.Graph;
using BitBudget.Graph.Onnx;
using BitBudget.Quantization;
using BitBudget.Tests.Support;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Quantization;

/// <summary>
/// ONNX Runtime's own QuantizeLinear and DequantizeLinear, run on ResNet-20's real weights with the simulation's scales
/// (zero points 0, the layer's channel axis), against the integers and the dequantized weights the simulation uses: the
/// independent check that our division, rounding (half to even) and per-channel layout are ORT's.
/// </summary>
public class OrtQuantizeLinearTests
{
    static readonly Lazy<(OnnxModel Prepared, IReadOnlyList<LayerInfo> Layers)> s_model = new(() =>
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        return (prepared, summary.Layers);
    });

    [Theory]
    [InlineData(8, true)]
    [InlineData(4, true)]
    [InlineData(2, true)]
    [InlineData(4, false)]
    public void RoundToNearest_IntegersAndDequantizedWeights_AreOrtsOwn(int bits, bool perChannel)
    {
        _ = Assets.ResNet20;
        var (prepared, layers) = s_model.Value;
        var weights = new QuantizedWeights(prepared, layers);   // round to nearest: integers = clamp(round(w / s))
        int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
        long checkedValues = 0;
        foreach (LayerInfo layer in layers)
        {
            QuantizedTensor q = weights.Get(layer.Index, bits, perChannel);
            float[] original = weights.Original(layer.Index).ToArray();
            (sbyte[] ortInts, float[] ortDequantized) = RunOrt(layer, original, q);

            // QuantizeLinear saturates to int8; the b-bit grid is the one clamp ORT's int8 output does not do for b < 8.
            sbyte[] expected = q.Values.ToArray();
            for (int i = 0; i < ortInts.Length; i++)
            {
                int ort = Math.Clamp((int)ortInts[i], qmin, qmax);
                if (ort != expected[i])
                {
                    Assert.Fail($"{layer.Name} W{bits} element {i}: ORT QuantizeLinear gives {ort} (before the {bits}-bit clamp {ortInts[i]}), the simulation {expected[i]} (w = {original[i]:R})");
                }
            }
            // DequantizeLinear of the simulation's integers is bit for bit the simulation's dequantized weight.
            Assert.Equal(q.Dequantized.ToArray(), ortDequantized);
            checkedValues += ortInts.Length;
        }
        Assert.Equal(270_896, checkedValues);   // every weight of ResNet-20's 22 layers (README's inspect table)
    }

    /// <summary>x (the float weight) → QuantizeLinear(scale, 0, axis) → q; and the simulation's integers → DequantizeLinear → ŵ.</summary>
    static (sbyte[] Ints, float[] Dequantized) RunOrt(LayerInfo layer, float[] weight, QuantizedTensor q)
    {
        long[] shape = [.. layer.WeightShape];
        float[] scales = q.Scales.ToArray();
        long[] scaleDims = scales.Length == 1 ? [] : [scales.Length];
        var graph = new GraphProto { Name = "qdq" };
        graph.Input.Add(TinyModels.Value("w", shape));
        graph.Initializer.Add(TensorData.Float("scale", scaleDims, scales));
        graph.Initializer.Add(Int8("zero", scaleDims, new sbyte[scales.Length]));
        graph.Initializer.Add(Int8("q_sim", shape, q.Values.ToArray()));
        var axis = TinyModels.Int("axis", layer.ChannelAxis);
        graph.Node.Add(TinyModels.Node("QuantizeLinear", ["w", "scale", "zero"], ["q_ort"], null, axis));
        graph.Node.Add(TinyModels.Node("DequantizeLinear", ["q_sim", "scale", "zero"], ["w_hat"], null, axis));
        ValueInfoProto qOut = TinyModels.Value("q_ort", shape);
        qOut.Type.TensorType.ElemType = (int)TensorProto.Types.DataType.Int8;
        graph.Output.Add(qOut);
        graph.Output.Add(TinyModels.Value("w_hat", shape));
        var proto = new ModelProto { IrVersion = 8, ProducerName = "bitbudget-tests", Graph = graph };
        proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 13 });

        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(proto.ToByteArray(), options);
        using var input = OrtValue.CreateTensorValueFromMemory(weight, shape);
        using var run = new RunOptions();
        using var outputs = session.Run(run, ["w"], [input], ["q_ort", "w_hat"]);
        return (outputs[0].GetTensorDataAsSpan<sbyte>().ToArray(), outputs[1].GetTensorDataAsSpan<float>().ToArray());
    }

    static TensorProto Int8(string name, long[] dims, sbyte[] values)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int8, RawData = ByteString.CopyFrom((byte[])(Array)values) };
        t.Dims.AddRange(dims);
        return t;
    }
}
