using BitBudget.Clado;
using BitBudget.Data;
using BitBudget.Export;
using BitBudget.Graph;
using BitBudget.Quantization;

namespace BitBudget.Pipeline;

/// <summary>
/// A pipeline after <see cref="MpqPipeline.Calibrate"/>: the opened pipeline's steps plus those that need calibrated
/// activation ranges and rounded weights, namely CLADO's measurement, simulation and export (and OMPQ's held-out β, which
/// simulates). Only <see cref="MpqPipeline.Calibrate"/> makes one, so these steps cannot be called before calibrating.
/// </summary>
public sealed class CalibratedPipeline : MpqPipeline
{
    internal CalibratedPipeline(MpqPipeline opened, Dataset calibration, QuantizedWeights weights,
        IReadOnlyDictionary<string, ActivationParams>? activations, IReadOnlyList<AttentionQuantizer>? attention) : base(opened)
    {
        _calibration = calibration;
        Weights = weights;
        Activations = activations;
        Attention = attention;
        CalibrationHash = calibration.Hash;
        _checkImages = calibration.Batch(0, Math.Min(8, calibration.Count)).ToArray();
    }

    /// <summary>Hash of the calibration images used (the first <see cref="PipelineOptions.CalibrationImages"/>).</summary>
    public string CalibrationHash { get; }

    /// <summary>Quantized tensors of every (layer, bits), computed once and shared by measurement, search, simulation and export.</summary>
    internal QuantizedWeights Weights { get; }

    /// <summary>Calibrated input-activation parameters by layer name (null when weights only).</summary>
    internal IReadOnlyDictionary<string, ActivationParams>? Activations { get; }

    /// <summary>
    /// Quantizers of the attention activation × activation MatMuls (<see cref="PipelineOptions.AttentionMatMuls"/> = A8; empty when
    /// the model has none), else null.
    /// </summary>
    internal IReadOnlyList<AttentionQuantizer>? Attention { get; }

    // The calibration images the weights were rounded on (sequential final rounding runs its passes on them).
    readonly Dataset _calibration;

    // A few calibration images on which every export is run and compared with its simulation.
    readonly float[] _checkImages;

    // Sequentially rounded weights per configuration (BitConfig.Describe), so simulation and export use the same tensors.
    readonly System.Collections.Concurrent.ConcurrentDictionary<string, Lazy<QuantizedWeights>> _final = new(StringComparer.Ordinal);

    // Held-out KL of configurations OMPQ's β grid judged (keyed by held-out set and configuration), and the float logits.
    readonly Dictionary<string, double> _heldOutKl = new(StringComparer.Ordinal);
    readonly Dictionary<string, float[]> _heldOutLogits = new(StringComparer.Ordinal);

    /// <summary>CLADO's measurement on <paramref name="sensitivity"/> (see <see cref="CladoSensitivity"/>), reusing the store when configured.</summary>
    public SensitivityResult MeasureSensitivity(Dataset sensitivity, IProgress<SensitivityProgress>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(sensitivity);
        // The calibration images are read again only by sequential final rounding, after the measurement: in a file meanwhile,
        // they leave their memory to the measurement's micro-batches (ResNet-18's 500: 0.30 GB).
        if (!ReferenceEquals(_calibration, sensitivity))
        {
            long spilled = _calibration.Spill();
            Runtime.MemoryTrace.Mark($"calibration images spilled: {spilled >> 10} kB");
        }
        var options = Options.Sensitivity with
        {
            CandidateBits = Options.CandidateBits,
            Runtime = Options.Runtime,
            OutputKind = OutputKind,
            SettingsNote = $"{Options.Fingerprint()} {Options.Sensitivity.SettingsNote}".Trim(),
        };
        return CladoSensitivity.Measure(new SensitivityInput(Prepared, Summary.Layers, Policy, Weights, Activations, sensitivity, Attention), options, progress, cancel);
    }

    /// <summary>
    /// The fake-quantized model of a configuration with its final weights (<see cref="FinalWeights"/>): what its export computes.
    /// With <paramref name="finalRounding"/> false, the independently rounded weights the measurement used (cheaper; what
    /// <c>best</c> judges its candidates with).
    /// </summary>
    public OnnxModel Simulate(IReadOnlyList<LayerBits> config, bool finalRounding = true) =>
        QuantSimulator.Build(Prepared, Summary.Layers, WithActivations(config), finalRounding ? FinalWeights(config) : Weights, Activations, attention: Attention);

    /// <summary>
    /// The weights a configuration is simulated and exported with: <see cref="Weights"/> with <see cref="FinalRounding.Independent"/>,
    /// else the configuration re-rounded by <see cref="SequentialRounding"/> (computed once per configuration).
    /// </summary>
    internal QuantizedWeights FinalWeights(IReadOnlyList<LayerBits> config, IProgress<int>? progress = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (Options.FinalRounding == FinalRounding.Independent || !Weights.Rounding.NeedsCalibration) { return Weights; }
        IReadOnlyList<LayerBits> resolved = WithActivations(config);
        return _final.GetOrAdd(BitConfig.Describe(resolved), _ => new Lazy<QuantizedWeights>(
            () => SequentialRounding.Round(Weights, resolved, Activations, _calibration, Options.Runtime, progress, cancel))).Value;
    }

    /// <summary>Drops the final weights kept for <paramref name="config"/> (a judged candidate that lost); a later use re-rounds them.</summary>
    internal void ForgetFinalWeights(IReadOnlyList<LayerBits> config) => _final.TryRemove(BitConfig.Describe(WithActivations(config)), out _);

    /// <summary>Configurations whose final weights are kept now (tests).</summary>
    internal int FinalWeightsHeld => _final.Count;

    /// <summary>
    /// Writes the QDQ model of a configuration (checked in ORT at ORT_ENABLE_ALL before it counts); with
    /// <paramref name="matMulNBits"/> 3–4-bit MatMul weights become com.microsoft.MatMulNBits instead.
    /// </summary>
    public ExportResult Export(IReadOnlyList<LayerBits> config, string path, bool force = false, bool matMulNBits = false) =>
        QdqExporter.ExportToFile(path, force, Prepared, Summary.Layers, WithActivations(config), FinalWeights(config), Activations,
            new ExportOptions { Runtime = Options.Runtime, CheckInput = _checkImages, MatMulNBits = matMulNBits, Attention = Attention });

    private protected override Func<IReadOnlyList<int>, double> HeldOutJudge(Dataset heldOut, float[]? heldOutFloatLogits, CancellationToken cancel)
    {
        if (heldOutFloatLogits is null && !_heldOutLogits.TryGetValue(heldOut.Hash, out heldOutFloatLogits))
        {
            heldOutFloatLogits = Logits(Original, heldOut, cancel);
            _heldOutLogits[heldOut.Hash] = heldOutFloatLogits;
        }
        float[] reference = heldOutFloatLogits;
        return bits =>
        {
            var config = Configuration(bits);
            string key = $"{heldOut.Hash}|{BitConfig.Describe(config)}";
            if (!_heldOutKl.TryGetValue(key, out double kl))
            {
                // The measured weights, as best judges by default: with sequential final rounding, re-rounding every β's
                // configuration would cost one sequential rounding each (SqueezeNet: minutes per β, and its caches).
                kl = EvaluateAgainst(Simulate(config, finalRounding: false), heldOut, reference, cancel).KlDivergence!.Value;
                _heldOutKl[key] = kl;
            }
            return kl;
        };
    }
}
