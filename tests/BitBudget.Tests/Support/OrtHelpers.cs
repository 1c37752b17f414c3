using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Support;

/// <summary>Plain ORT runs, independent of BitBudget's engine, used as the reference in tests.</summary>
public static class OrtHelpers
{
    public static float[] Run(byte[] model, string inputName, float[] input, long[] shape, string? outputName = null,
        GraphOptimizationLevel level = GraphOptimizationLevel.ORT_ENABLE_ALL)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = level, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var runOptions = new RunOptions();
        string output = outputName ?? session.OutputNames[0];
        using var outputs = session.Run(runOptions, [inputName], [value], [output]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Runs once and returns several outputs (e.g. intermediate tensors exposed as graph outputs), copied out.</summary>
    public static float[][] RunMany(byte[] model, string inputName, float[] input, long[] shape, string[] outputNames)
    {
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL, IntraOpNumThreads = 1 };
        using var session = new InferenceSession(model, options);
        using var value = OrtValue.CreateTensorValueFromMemory(input, shape);
        using var runOptions = new RunOptions();
        using var outputs = session.Run(runOptions, [inputName], [value], outputNames);
        return [.. outputs.Select(o => o.GetTensorDataAsSpan<float>().ToArray())];
    }

    public static float[] Deterministic(int count, int seed = 7)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++) { values[i] = (float)(random.NextDouble() * 2 - 1); }
        return values;
    }
}
