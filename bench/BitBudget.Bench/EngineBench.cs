using System.Diagnostics;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Bench;

/// <summary>
/// Evaluation engine against a plain InferenceSession.Run on the same FP model and batch (images/s, ratio), and the cost of
/// running the model with different weights for one layer, by each mechanism: a new session over the re-serialized model
/// (what EvaluationEngine.WithWeights does), weights fed as graph inputs to one session, and CLADO's baked sub-model sessions.
/// </summary>
static class EngineBench
{
    public static int Run(string[] args)
    {
        int repetitions = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 5;
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Measure.Assets("cifar10/resnet20.onnx")));
        Dataset data = DatasetLoader.Load(new DataOptions { Path = Measure.Assets("cifar10/test"), Preprocessing = Preprocessing.Cifar10, Limit = 1024 });
        const int batch = 256;

        using var engine = EvaluationEngine.Create(prepared);
        double engineTime = Measure.Median(repetitions, () => engine.Evaluate(data, new EvaluationOptions { BatchSize = batch }));
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var plain = new InferenceSession(prepared.ToBytes(), options);
        double plainTime = Measure.Median(repetitions, () =>
        {
            for (int start = 0; start < data.Count; start += batch)
            {
                float[] input = data.Batch(start, batch).ToArray();
                using var value = OrtValue.CreateTensorValueFromMemory(input, [batch, 3, 32, 32]);
                using var ro = new RunOptions();
                using var outputs = plain.Run(ro, [prepared.InputName], [value], [prepared.OutputName]);
            }
        });
        Console.WriteLine($"ResNet-20, {data.Count} images, batch {batch}, ORT_ENABLE_ALL, all cores");
        Console.WriteLine($"  evaluation engine (top-1, CE)     {data.Count / engineTime,8:F0} images/s");
        Console.WriteLine($"  plain InferenceSession.Run        {data.Count / plainTime,8:F0} images/s");
        Console.WriteLine($"  engine / plain time               {engineTime / plainTime,8:F3}");

        // Different weights for one layer.
        LayerInfo layer = summary.Layers[10];
        var weights = new QuantizedWeights(prepared, summary.Layers);
        float[] q4 = weights.Get(layer.Index, 4).Dequantized.ToArray();
        double forward = plainTime / (data.Count / batch);
        double swap = Measure.Median(repetitions, () =>
        {
            using var swapped = engine.WithWeights(new Dictionary<string, float[]> { [layer.WeightName] = q4 });
        });

        // Weights as graph inputs: one session, the weight fed with every run (no constant folding or prepacking of it).
        OnnxModel asInput = prepared.Clone();
        var tensor = asInput.InitializerMap()[layer.WeightName];
        asInput.Graph.Initializer.Remove(tensor);
        asInput.Graph.Input.Add(new BitBudget.Graph.Onnx.ValueInfoProto
        {
            Name = layer.WeightName,
            Type = new BitBudget.Graph.Onnx.TypeProto { TensorType = new BitBudget.Graph.Onnx.TypeProto.Types.Tensor { ElemType = 1 } },
        });
        using var inputSession = new InferenceSession(asInput.ToBytes(), options);
        float[] first = data.Batch(0, batch).ToArray();
        double fedTime = Measure.Median(repetitions, () =>
        {
            using var value = OrtValue.CreateTensorValueFromMemory(first, [batch, 3, 32, 32]);
            using var w = OrtValue.CreateTensorValueFromMemory(q4, [.. layer.WeightShape]);
            using var ro = new RunOptions();
            using var outputs = inputSession.Run(ro, [prepared.InputName, layer.WeightName], [value, w], [prepared.OutputName]);
        });
        Console.WriteLine($"one forward of {batch} images (plain)   {forward * 1000,8:F1} ms");
        Console.WriteLine($"weight swap: new session over the re-serialized model (WithWeights)  {swap * 1000,8:F1} ms  = {swap / forward:F2} forwards");
        Console.WriteLine($"weight swap: weight as a graph input, per forward                   {fedTime * 1000,8:F1} ms  = {fedTime / forward:F2}× a plain forward (paid on every run)");
        Console.WriteLine("CLADO uses neither: each (layer, bits) is baked once into a suffix sub-model session (bench clado), so its inner loop swaps nothing.");
        return 0;
    }
}
