using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;

namespace BitBudget.Quantization;

/// <summary>Calibrates the input-activation quantizers of layers on a calibration set, streaming batch by batch.</summary>
internal static class ActivationCalibrator
{
    /// <summary>
    /// One full-precision pass over <paramref name="data"/> with the inputs of <paramref name="layers"/> exposed; each input is
    /// observed (min/max and a histogram, never the whole tensor) and turned into asymmetric per-tensor parameters.
    /// </summary>
    /// <returns>Parameters by layer name.</returns>
    public static IReadOnlyDictionary<string, ActivationParams> Calibrate(EvaluationEngine engine, IReadOnlyList<LayerInfo> layers, Dataset data,
        int bits = 8, ActivationCalibration method = ActivationCalibration.MinMax, int batchSize = 64, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(layers);
        // Layers reading the same tensor (SqueezeNet's expand 1×1 and 3×3) share one observer.
        string[] inputs = layers.Select(l => l.InputName).Distinct(StringComparer.Ordinal).ToArray();
        var observers = inputs.ToDictionary(t => t, _ => new ActivationObserver(), StringComparer.Ordinal);
        engine.Capture(data, inputs, batchSize, (_, _, tensors) =>
        {
            foreach ((string name, CapturedTensor tensor) in tensors) { observers[name].Observe(tensor.Values); }
        }, cancel);
        return layers.ToDictionary(l => l.Name, l => observers[l.InputName].Compute(bits, method), StringComparer.Ordinal);
    }
}
