using BitBudget.Numerics;

namespace BitBudget.Reporting;

/// <summary>The bit-width one configuration gives one layer.</summary>
/// <param name="Layer">Layer name (the weight initializer's name).</param>
/// <param name="Bits">Weight bits.</param>
public sealed record LayerChoice(string Layer, int Bits);

/// <summary>One evaluated configuration of a Pareto sweep: where it sits (size, bits), what was predicted and what was measured.</summary>
/// <param name="Method">Search method, e.g. "clado", "independent", "ompq", "uniform".</param>
/// <param name="Rounding">Weight rounding: "rtn" (round to nearest) or "gptq".</param>
/// <param name="BudgetLabel">The budget this point was solved for, as the user wrote it (e.g. "3.5bits"); uniform points carry their own label (e.g. "uniform 4").</param>
/// <param name="AverageBits">Average weight bits over all quantized layers.</param>
/// <param name="SizeBytes">Weight bytes of all quantized layers.</param>
/// <param name="PredictedLoss">Predicted loss increase xᵀΩx, when the method has one.</param>
/// <param name="Top1Simulated">Top-1 accuracy as a fraction in [0, 1] of the fake-quantized (simulated) model.</param>
/// <param name="Top1Exported">Top-1 accuracy as a fraction in [0, 1] of the exported QDQ model run in ONNX Runtime.</param>
/// <param name="SolverStatus">How the search ended, e.g. "Optimal", "TimeLimit".</param>
/// <param name="Gap">Relative optimality gap the solver proved (0 = optimal); null when the method has none.</param>
/// <param name="Bits">Bits of every layer, in model order.</param>
/// <param name="Draw">Index of the random draw of the sensitivity set this point came from (0 when there is one).</param>
public sealed record ParetoPoint(
    string Method,
    string Rounding,
    string BudgetLabel,
    double AverageBits,
    double SizeBytes,
    double? PredictedLoss,
    double? Top1Simulated,
    double? Top1Exported,
    string SolverStatus,
    double? Gap,
    IReadOnlyList<LayerChoice> Bits,
    int Draw = 0)
{
    /// <summary>The measured top-1 a plot or table shows: the exported model's when it was evaluated, else the simulated one.</summary>
    public double? Top1 => Top1Exported ?? Top1Simulated;

    /// <summary>True for a uniform configuration (every searched layer at one bit-width).</summary>
    public bool IsUniform => Method.Equals("uniform", StringComparison.OrdinalIgnoreCase);
}

/// <summary>Every configuration of one measurement, evaluated on one split.</summary>
/// <param name="ModelName">Model name or file name shown in titles.</param>
/// <param name="FpTop1">Top-1 of the float model as a fraction in [0, 1].</param>
/// <param name="EvalSplit">Which images the accuracies were measured on, e.g. "CIFAR-10 test, 10,000 images".</param>
/// <param name="FpSizeBytes">Weight bytes of the quantizable layers in float32.</param>
/// <param name="Points">Every evaluated configuration, in the order to list them.</param>
public sealed record ParetoFront(
    string ModelName,
    double FpTop1,
    string EvalSplit,
    double FpSizeBytes,
    IReadOnlyList<ParetoPoint> Points);

/// <summary>One row of the per-layer report: what the layer is, how sensitive it is, and what each method gave it.</summary>
/// <param name="Index">Position in model order, from 0.</param>
/// <param name="Name">Layer name.</param>
/// <param name="Op">ONNX op type (Conv, Gemm, MatMul).</param>
/// <param name="WeightCount">Number of weight elements.</param>
/// <param name="MacsPerImage">Multiply-accumulates per image.</param>
/// <param name="Fixed">True when the layer is kept at a fixed bit-width instead of being searched.</param>
/// <param name="DeltaLoss">Measured loss increase when only this layer is quantized, by bit-width (the diagonal of Ω, halved as the measurement defines it).</param>
/// <param name="ChosenBits">Bits each method chose for this layer, by a column key such as "clado" or "clado@3.5bits".</param>
public sealed record LayerReportRow(
    int Index,
    string Name,
    string Op,
    long WeightCount,
    long MacsPerImage,
    bool Fixed,
    IReadOnlyDictionary<int, double> DeltaLoss,
    IReadOnlyDictionary<string, int> ChosenBits);

/// <summary>The eigenvalue summary of Ω before and after the positive semidefinite projection.</summary>
/// <param name="MinEigenvalue">Smallest eigenvalue of the measured (symmetrized) Ω.</param>
/// <param name="MaxEigenvalue">Largest eigenvalue.</param>
/// <param name="NegativeCount">How many eigenvalues were negative.</param>
/// <param name="ClippedMass">Sum of |negative eigenvalues| divided by the sum of |all eigenvalues| (what the projection removed).</param>
public sealed record OmegaSpectrum(double MinEigenvalue, double MaxEigenvalue, int NegativeCount, double ClippedMass);

/// <summary>The measured cross-layer sensitivity matrix Ω, one row and column per (layer, bits) choice.</summary>
/// <param name="Labels">Row/column labels, "layer@bits".</param>
/// <param name="Values">Ω itself, <c>Labels.Count</c> × <c>Labels.Count</c>.</param>
/// <param name="Spectrum">Eigenvalue summary, when computed.</param>
public sealed record OmegaMatrix(IReadOnlyList<string> Labels, SquareMatrix Values, OmegaSpectrum? Spectrum = null)
{
    /// <summary>Ω itself, <c>Labels.Count</c> × <c>Labels.Count</c>.</summary>
    public SquareMatrix Values { get; init; } = (Values ?? throw new ArgumentNullException(nameof(Values))).Order == Labels?.Count ? Values
        : throw new ArgumentException($"Ω is {Values.Order}×{Values.Order} but has {Labels?.Count} labels.", nameof(Values));

    /// <summary>Number of rows (= columns).</summary>
    public int Size => Labels.Count;

    /// <summary>Ω[row, column].</summary>
    public double this[int row, int column] => Values[row, column];
}

/// <summary>Wall time of one pipeline stage.</summary>
/// <param name="Stage">Stage name, e.g. "measure".</param>
/// <param name="Seconds">Wall time in seconds.</param>
public sealed record StageTiming(string Stage, double Seconds);

/// <summary>How one solver run ended.</summary>
/// <param name="Method">Search method.</param>
/// <param name="Budget">Budget label.</param>
/// <param name="Status">Solver status, e.g. "Optimal".</param>
/// <param name="Gap">Relative gap proven (null when none).</param>
/// <param name="Seconds">Solve wall time in seconds.</param>
public sealed record SolverRun(string Method, string Budget, string Status, double? Gap, double Seconds);

/// <summary>Everything needed to reproduce or audit a run.</summary>
/// <param name="ToolVersion">BitBudget version.</param>
/// <param name="OrtVersion">ONNX Runtime version.</param>
/// <param name="Opset">ONNX opset of the exported model (null when nothing was exported).</param>
/// <param name="ExecutionProvider">ORT execution provider, e.g. "cpu".</param>
/// <param name="Seeds">Random seeds by purpose, e.g. {"calibration": 0}.</param>
/// <param name="ModelSha256">SHA-256 of the input model file.</param>
/// <param name="DataHashes">Hashes of the data sets by role, e.g. {"calibration": "…", "evaluation": "…"}.</param>
/// <param name="Timings">Wall time per stage, in run order.</param>
/// <param name="SolverRuns">Status of every solver run.</param>
/// <param name="CommandLine">The command-line arguments as given.</param>
/// <param name="CreatedUtc">When the run finished.</param>
/// <param name="Memory">Memory budget and the measured peak resident set.</param>
/// <param name="Pairs">Which CLADO pairs were measured (all, or significant with the threshold and the count skipped).</param>
public sealed record RunManifest(
    string ToolVersion,
    string OrtVersion,
    int? Opset,
    string ExecutionProvider,
    IReadOnlyDictionary<string, long> Seeds,
    string ModelSha256,
    IReadOnlyDictionary<string, string> DataHashes,
    IReadOnlyList<StageTiming> Timings,
    IReadOnlyList<SolverRun> SolverRuns,
    IReadOnlyList<string> CommandLine,
    DateTimeOffset CreatedUtc,
    MemoryUsage? Memory = null,
    PairsMeasured? Pairs = null)
{
    /// <summary>OMPQ's β and θ at every budget it searched (empty without method ompq).</summary>
    public IReadOnlyList<OmpqChoice> Ompq { get; init; } = [];
}

/// <summary>Which CLADO pairs were measured.</summary>
/// <param name="Selection">all or significant.</param>
/// <param name="Threshold">With significant: a scheme's pairs are measured when its single |ΔL| is at least this fraction of the largest.</param>
/// <param name="Skipped">Pairs of different layers not measured (0 in Ω).</param>
/// <param name="Total">Pairs of different layers in Ω.</param>
public sealed record PairsMeasured(string Selection, double? Threshold, int Skipped, int Total);

/// <summary>How OMPQ weighed its units at one budget.</summary>
/// <param name="Budget">The budget label.</param>
/// <param name="BetaRule">"fixed" (the paper's β = 10 or a given one) or "held-out" (β of a grid with the lowest held-out KL).</param>
/// <param name="Beta">β used.</param>
/// <param name="ThetaEntropy">Entropy (nats) of θ normalized to sum 1.</param>
/// <param name="ThetaEntropyNormalized">The entropy over ln L: 0 one-hot, 1 uniform.</param>
/// <param name="Effect">Informative, Uniform or OneHot.</param>
/// <param name="TriedBetas">Every β of the held-out grid (empty for a fixed β).</param>
/// <param name="TriedScores">The held-out KL of each tried β's configuration, same order.</param>
/// <param name="CandidateBits">The candidate bits of the chosen allocation (the held-out rule may cap them, e.g. {2, 4} of {2, 4, 8}).</param>
/// <param name="TriedMaxBits">The largest candidate bit-width of each tried β's allocation, same order as <paramref name="TriedBetas"/>.</param>
public sealed record OmpqChoice(string Budget, string BetaRule, double Beta, double ThetaEntropy, double ThetaEntropyNormalized, string Effect,
    IReadOnlyList<double> TriedBetas, IReadOnlyList<double> TriedScores, IReadOnlyList<int>? CandidateBits = null, IReadOnlyList<int>? TriedMaxBits = null);

/// <summary>What a run held in memory against its budget, and the CLADO measurement's rate.</summary>
/// <param name="BudgetBytes">The memory budget (--max-memory).</param>
/// <param name="PeakRssBytes">Measured peak resident set of the process (VmHWM) when the run finished.</param>
/// <param name="SensitivityImagesPerRun">Images per ONNX Runtime run in the CLADO measurement (null: nothing measured).</param>
/// <param name="SensitivityPlannedPeakBytes">The measurement's planned peak (resident after loading + reference-counted tensors of one micro-batch).</param>
/// <param name="SensitivityUnreferencedPeakBytes">The same plan without reference counting.</param>
/// <param name="EvaluationsPerSecond">CLADO evaluations (singles and pairs) per second.</param>
public sealed record MemoryUsage(long BudgetBytes, long PeakRssBytes, int? SensitivityImagesPerRun = null, long? SensitivityPlannedPeakBytes = null,
    long? SensitivityUnreferencedPeakBytes = null, double? EvaluationsPerSecond = null);
