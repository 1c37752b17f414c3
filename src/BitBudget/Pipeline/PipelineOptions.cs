using BitBudget.Graph;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Quantization;
using BitBudget.Rounding;
using BitBudget.Runtime;
using BitBudget.Clado;

namespace BitBudget.Pipeline;

/// <summary>Everything that decides how a model is quantized, measured and searched; one immutable record.</summary>
public sealed record PipelineOptions
{
    /// <summary>Name of the preset these settings came from (<c>default</c> or <c>clado-paper</c>); recorded in reports and store keys.</summary>
    public string Preset { get; init; } = "default";

    /// <summary>ONNX Runtime settings.</summary>
    public RuntimeOptions Runtime { get; init; } = RuntimeOptions.Default;

    /// <summary>The classifier output to keep when the model has several (null: the first); the others are dropped from every derived model.</summary>
    public string? Output { get; init; }

    /// <summary>What the output holds; null detects it (a Softmax/LogSoftmax at the output means probabilities/log-probabilities).</summary>
    public OutputKind? OutputKind { get; init; }

    /// <summary>Candidate weight bits of searched layers.</summary>
    public IReadOnlyList<int> CandidateBits { get; init; } = [2, 4, 8];

    /// <summary>Bits of the first quantizable layer (outside the search); 0 keeps it in float; null searches it.</summary>
    public int? FirstLayerBits { get; init; } = 8;

    /// <summary>Bits of the last quantizable layer (outside the search); 0 keeps it in float; null searches it.</summary>
    public int? LastLayerBits { get; init; } = 8;

    /// <summary>Input-activation bits of quantized layers; 0 = weights only.</summary>
    public int ActivationBits { get; init; } = 8;

    /// <summary>
    /// The activation × activation MatMuls of attention (Q·Kᵀ, softmax·V): float (default) or 8-bit inputs calibrated like the
    /// layer inputs (<see cref="ActivationCalibration"/>), in the simulation, CLADO's measurement and the export.
    /// </summary>
    public AttentionMatMulMode AttentionMatMuls { get; init; } = AttentionMatMulMode.Float;

    /// <summary>How activation ranges are calibrated.</summary>
    public ActivationCalibration ActivationCalibration { get; init; } = ActivationCalibration.MinMax;

    /// <summary>Per-output-channel weight scales (else per tensor).</summary>
    public bool PerChannel { get; init; } = true;

    /// <summary>How the weight clipping range is chosen.</summary>
    public WeightRange WeightRange { get; init; } = WeightRange.Mse;

    /// <summary>How weights are rounded: GPTQ with bias correction and output-error scales by default (docs/rounding.md), or round-to-nearest.</summary>
    public WeightRounding Rounding { get; init; } = WeightRounding.Default;

    /// <summary>
    /// How a chosen configuration's weights are rounded for simulation and export (every method alike): as measured
    /// (independent, each layer against float inputs) or sequentially against the partially quantized model's inputs
    /// (<see cref="SequentialRounding"/>, the default: on ResNet-20 over 3 draws and on SqueezeNet it gave the higher exported top-1 at
    /// every budget measured, docs/results.md). Not part of <see cref="Fingerprint"/>: the measurement is the same either way.
    /// </summary>
    public FinalRounding FinalRounding { get; init; } = FinalRounding.Sequential;

    /// <summary>Images of the calibration set used for activation ranges and rounding statistics (the rest are ignored).</summary>
    public int CalibrationImages { get; init; } = 512;

    /// <summary>CLADO measurement settings (batch size, loss, store, shard, naive).</summary>
    public SensitivityOptions Sensitivity { get; init; } = new();

    /// <summary>Solver settings.</summary>
    public SearchOptions Search { get; init; } = new() { TimeLimit = TimeSpan.FromSeconds(30) };

    /// <summary>OMPQ settings; β is chosen on held-out images by default (<see cref="OmpqBetaRule.HeldOut"/>, docs/ompq.md has the measurement).</summary>
    public OmpqOptions Ompq { get; init; } = new() { BetaRule = OmpqBetaRule.HeldOut };

    /// <summary>Images of the OMPQ feature batch.</summary>
    public int OmpqImages { get; init; } = 32;

    /// <summary>BitBudget's defaults: per-channel MSE weights, A8 min/max inputs, first and last layer fixed at 8 bits, bits {2,4,8}.</summary>
    public static PipelineOptions Default { get; } = new();

    /// <summary>
    /// The CLADO paper code's CNN settings: per-tensor MSE weight ranges, A8 asymmetric MSE-calibrated inputs,
    /// first conv and classifier left in float and out of the search.
    /// </summary>
    public static PipelineOptions CladoPaper { get; } = new()
    {
        Preset = "clado-paper",
        PerChannel = false,
        ActivationCalibration = ActivationCalibration.Mse,
        FirstLayerBits = 0,
        LastLayerBits = 0,
        Rounding = WeightRounding.RoundToNearest,
    };

    /// <summary>A preset by name.</summary>
    public static PipelineOptions FromPreset(string name) => name switch
    {
        "default" => Default,
        "clado-paper" => CladoPaper,
        _ => throw Errors.InvalidInput($"Unknown quantization preset '{name}'; expected default or clado-paper."),
    };

    /// <summary>A stable one-line text of the settings that change quantized values.</summary>
    public string Fingerprint() =>
        $"preset={Preset} bits={string.Join(",", CandidateBits)} first={FirstLayerBits?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "searched"} " +
        $"last={LastLayerBits?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "searched"} act={ActivationBits}/{ActivationCalibration} " +
        $"perchannel={PerChannel} range={WeightRange} calib={CalibrationImages} rounding={Rounding.Fingerprint()}" +
        (OutputKind is Graph.OutputKind k ? $" output-kind={k}" : "") +
        (AttentionMatMuls == AttentionMatMulMode.Float ? "" : $" attention-matmuls={AttentionMatMuls}");
}
