using System.Text.Json;
using BitBudget.Data;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Pipeline;
using BitBudget.Clado;
using BitBudget.Rounding;
using BitBudget.Tests.Support;
using static BitBudget.Tests.Support.ModelZoo;

namespace BitBudget.Tests.Pipeline;

/// <summary>The zoo models and their data, written once per test run into a temporary folder.</summary>
public sealed class ZooFolder : IDisposable
{
    readonly Assets.TempDir _dir = new();
    readonly Dictionary<string, string> _models = [];
    readonly Lock _lock = new();

    internal static readonly Dictionary<string, Spec> Specs = new()
    {
        ["base"] = new Spec { Name = "base" },
        ["extra-output"] = new Spec { Name = "extra-output", ExtraOutput = true, Head = "logsoftmax", Opset = 11 },
        ["extra-output-first"] = new Spec { Name = "extra-output-first", ExtraOutput = true, ExtraOutputFirst = true },
        ["softmax"] = new Spec { Name = "softmax", Head = "softmax" },
        ["logsoftmax"] = new Spec { Name = "logsoftmax", Head = "logsoftmax" },
        ["nhwc"] = new Spec { Name = "nhwc", Nhwc = true },
        ["batch1"] = new Spec { Name = "batch1", FixedBatch = 1 },
        ["opset7"] = new Spec { Name = "opset7", Opset = 7 },
        ["opset8"] = new Spec { Name = "opset8", Opset = 8, Head = "softmax" },
        ["opset9"] = new Spec { Name = "opset9", Opset = 9 },
        ["opset17"] = new Spec { Name = "opset17", Opset = 17, Head = "logsoftmax" },
        ["classes1001"] = new Spec { Name = "classes1001", Classes = 1001 },
        ["two-inputs"] = new Spec { Name = "two-inputs", TwoInputs = true },
        ["nan-weight"] = new Spec { Name = "nan-weight", BadWeight = float.NaN },
        ["inf-weight"] = new Spec { Name = "inf-weight", BadWeight = float.PositiveInfinity },
    };

    public string Root => _dir.Path;

    /// <summary>The model file of a zoo entry (or "matmul-gemm").</summary>
    public string Model(string name)
    {
        lock (_lock)
        {
            if (!_models.TryGetValue(name, out string? path))
            {
                path = _dir.File(name + ".onnx");
                (name == "matmul-gemm" ? MatMulGemm() : Build(Specs[name])).Save(path);
                _models[name] = path;
            }
            return path;
        }
    }

    /// <summary>
    /// 240 images labelled by the float model (top-1 100 %): the base model's labels for every model computing its function,
    /// the model's own otherwise. "classes1001": a flat folder of PNGs labelled with the model's class − 1, and 1000 data classes
    /// listed in <see cref="ClassList"/> (class 0 of the model is the background).
    /// </summary>
    public string Data(string name)
    {
        string key = name is "classes1001" or "matmul-gemm" ? name : "base";
        lock (_lock)
        {
            string path = _dir.File(key + (key == "classes1001" ? "" : ".csv"));
            if (File.Exists(path) || Directory.Exists(path)) { return path; }
            WriteData(path, OnnxModel.Load(Model(key)), count: 240, seed: 17, dataClasses: key == "classes1001" ? 1000 : 10, labelOffset: key == "classes1001" ? 1 : 0);
            return path;
        }
    }

    /// <summary>The class list of the "classes1001" data (1000 classes).</summary>
    public string ClassList => Data("classes1001") + ".classes.txt";

    public void Dispose() => _dir.Dispose();
}

/// <summary>
/// Issue 17's zoo: every quirk goes through inspect, eval, quantize, search and run (in process), and the behaviours
/// (output choice, probability outputs, background class, --mean lists, NHWC, --calib-split, the guessed preset) are checked
/// against what the float model must give.
/// </summary>
[Collection(ConsoleCollection.Name)]
public class ModelZooTests(ZooFolder zoo) : IClassFixture<ZooFolder>
{
    static readonly string[] Quick = ["--calib-images", "64", "--rounding", "rtn"];

    static JsonElement Json(InProcessCli.Result r)
    {
        Assert.True(r.Code == 0, r.ToString());
        return JsonDocument.Parse(r.Out).RootElement;
    }

    static double Top1(InProcessCli.Result r) => Json(r).GetProperty("top1").GetDouble();

    public static TheoryData<string> Everyday => new(
        "base", "extra-output", "softmax", "logsoftmax", "nhwc", "batch1", "opset7", "opset8", "opset9", "opset17", "classes1001", "matmul-gemm");

    [Theory]
    [MemberData(nameof(Everyday))]
    public void EveryCommandWorks(string name)
    {
        string model = zoo.Model(name), data = zoo.Data(name);
        string[] offset = name == "classes1001" ? ["--label-offset", "1", "--class-list", zoo.ClassList] : [];
        using var dir = new Assets.TempDir();

        InProcessCli.Result inspect = InProcessCli.Run("inspect", model, "--json");
        JsonElement summary = Json(inspect);
        Assert.Equal(4, summary.GetProperty("layer_count").GetInt32());

        // The data were labelled by the float model, so its top-1 is 100 % whatever the quirk.
        Assert.Equal(100.0, Top1(InProcessCli.Run(["eval", model, "--data", data, "--json", .. offset])));

        InProcessCli.Result quantize = InProcessCli.Run(["quantize", model, "--bits", "8", "--calib", data, "-o", dir.File("w8.onnx"), .. Quick, .. offset]);
        Assert.True(quantize.Code == 0, quantize.ToString());
        Assert.Single(OnnxModel.Load(dir.File("w8.onnx")).Proto.Graph.Output);
        Assert.InRange(Top1(InProcessCli.Run(["eval", dir.File("w8.onnx"), "--data", data, "--json", .. offset])), 90, 100);

        string[] common = ["--calib", data, "--sens-images", "64", "--sens-batch", "32", .. Quick, "--quiet", .. offset];
        InProcessCli.Result search = InProcessCli.Run(["search", model, "--method", "clado", "--budget", "7.5bits", "-o", dir.File("bits.json"), .. common]);
        Assert.True(search.Code == 0, search.ToString());
        Assert.True(File.Exists(dir.File("bits.json")));

        InProcessCli.Result run = InProcessCli.Run(["run", "-m", model, "--eval", data, "--budget", "7.5bits", "--method", "clado,uniform,ompq",
            "-o", dir.File("out"), "--json", .. common]);
        JsonElement result = Json(run);
        Assert.Equal(100.0, result.GetProperty("fp_top1").GetDouble());
        OnnxModel exported = OnnxModel.Load(dir.File("out/model.onnx"));
        Assert.Single(exported.Proto.Graph.Output);
        Assert.Equal(OnnxModel.Load(model).Proto.Graph.Output.First(o => o.Name != "features").Name, exported.OutputName);
    }

    [Fact]
    public void ExtraOutputsAreDroppedFromThePreparedModelAndTheFirstIsNamed()
    {
        OnnxModel model = OnnxModel.Load(zoo.Model("extra-output"));
        Assert.Equal(2, model.Proto.Graph.Output.Count);
        (OnnxModel prepared, PreparationReport report) = ModelPreparer.Prepare(model);
        Assert.Equal("logprob", prepared.OutputName);
        Assert.Single(prepared.Proto.Graph.Output);
        Assert.Equal(["features"], report.DroppedOutputs);
        Assert.DoesNotContain(prepared.Proto.Graph.Node, n => n.Name is "features" or "features_shape");   // the spurious branch is gone
        Assert.Equal(OutputKind.LogProbabilities, report.OutputKind);

        InProcessCli.Result eval = InProcessCli.Run("eval", zoo.Model("extra-output"), "--data", zoo.Data("extra-output"));
        Assert.True(eval.Code == 0, eval.ToString());
        Assert.Contains(eval.ErrLines, l => l.StartsWith("output 'logprob'", StringComparison.Ordinal) && l.Contains("dropped 'features'", StringComparison.Ordinal));
    }

    [Fact]
    public void ModelOutputChoosesTheClassifierWhenItIsNotFirst()
    {
        string model = zoo.Model("extra-output-first"), data = zoo.Data("extra-output-first");
        // The default is the first output: the features (512 values per image), named in the log, so a wrong choice shows.
        InProcessCli.Result first = InProcessCli.Run("eval", model, "--data", data);
        Assert.Contains(first.ErrLines, l => l.StartsWith("output 'features'", StringComparison.Ordinal));
        Assert.Equal(100.0, Top1(InProcessCli.Run("eval", model, "--data", data, "--json", "--model-output", "logits")));
        using var dir = new Assets.TempDir();
        InProcessCli.Result quantize = InProcessCli.Run(["quantize", model, "--bits", "8", "--calib", data, "-o", dir.File("q.onnx"), "--model-output", "logits", .. Quick]);
        Assert.True(quantize.Code == 0, quantize.ToString());
        Assert.Equal("logits", OnnxModel.Load(dir.File("q.onnx")).OutputName);
        InProcessCli.Result wrong = InProcessCli.Run("eval", model, "--data", data, "--model-output", "nope");
        Assert.Equal(2, wrong.Code);
        Assert.Single(wrong.ErrLines);
        Assert.StartsWith("error: ", wrong.Err, StringComparison.Ordinal);
        Assert.Contains("'features', 'logits'", wrong.Err, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("softmax", OutputKind.Probabilities)]
    [InlineData("logsoftmax", OutputKind.LogProbabilities)]
    public void ProbabilityOutputsGiveTheLogitsModelsLosses(string head, OutputKind kind)
    {
        Dataset data = DatasetLoader.Load(new DataOptions { Path = zoo.Data("base"), Preprocessing = Preprocessing.Cifar10, CacheDirectory = "" });
        var options = PipelineOptions.Default with
        {
            Rounding = BitBudget.Rounding.WeightRounding.RoundToNearest,
            Sensitivity = new SensitivityOptions { BatchSize = 60 },
        };
        Dataset calibration = data.Subset([.. Enumerable.Range(0, 120)]), sensitivity = data.Subset([.. Enumerable.Range(120, 120)]);
        CalibratedPipeline logits = MpqPipeline.Open(OnnxModel.Load(zoo.Model("base")), options).Calibrate(calibration);
        CalibratedPipeline probs = MpqPipeline.Open(OnnxModel.Load(zoo.Model(head)), options).Calibrate(calibration);
        Assert.Equal(OutputKind.Logits, logits.OutputKind);
        Assert.Equal(kind, probs.OutputKind);

        EvaluationResult a = logits.Evaluate(logits.Original, data), b = probs.Evaluate(probs.Original, data);
        Assert.InRange(a.CrossEntropy, 0.01, 5);   // a real loss, not ~0 (softmax twice flattens it towards log 10)
        Assert.Equal(a.CrossEntropy, b.CrossEntropy, 1e-4);
        Assert.Equal(a.Top1, b.Top1);

        var config = logits.Uniform(4);
        EvaluationResult ka = logits.EvaluateAgainst(logits.Simulate(config), data, logits.Logits(logits.Original, data));
        EvaluationResult kb = probs.EvaluateAgainst(probs.Simulate(config), data, probs.Logits(probs.Original, data));
        Assert.True(ka.KlDivergence > 1e-5, $"KL {ka.KlDivergence}");
        Assert.Equal(ka.KlDivergence!.Value, kb.KlDivergence!.Value, 1e-5);
        Assert.Equal(ka.CrossEntropy, kb.CrossEntropy, 1e-4);

        SensitivityResult sa = logits.MeasureSensitivity(sensitivity), sb = probs.MeasureSensitivity(sensitivity);
        double max = sa.Omega.ToRowMajorArray().Max(Math.Abs);
        Assert.True(max > 1e-4, $"max |Ω| {max}");
        for (int i = 0; i < sa.Omega.AsSpan().Length; i++) { Assert.True(Math.Abs(sa.Omega.AsSpan()[i] - sb.Omega.AsSpan()[i]) <= 1e-3 * max + 1e-6, $"Ω[{i}] {sa.Omega.AsSpan()[i]} vs {sb.Omega.AsSpan()[i]}"); }

        // The override is honoured: reading probabilities as logits applies softmax again and gives another (wrong) loss
        // (log-probabilities read as logits give the same loss: log softmax is the identity on them).
        InProcessCli.Result wrong = InProcessCli.Run("eval", zoo.Model(head), "--data", zoo.Data("base"), "--json", "--output-kind", "logits");
        if (kind == OutputKind.Probabilities) { Assert.NotEqual(a.CrossEntropy, Json(wrong).GetProperty("cross_entropy").GetDouble(), 2); }
        InProcessCli.Result right = InProcessCli.Run("eval", zoo.Model(head), "--data", zoo.Data("base"), "--json");
        Assert.Equal(a.CrossEntropy, Json(right).GetProperty("cross_entropy").GetDouble(), 4);
        Assert.Equal(OutputKinds.Name(kind), Json(right).GetProperty("output_kind").GetString());
    }

    [Fact]
    public void BackgroundClassNeedsTheLabelOffsetAndIsWarnedAbout()
    {
        string model = zoo.Model("classes1001"), data = zoo.Data("classes1001"), list = zoo.ClassList;
        InProcessCli.Result without = InProcessCli.Run("eval", model, "--data", data, "--json", "--class-list", list);
        Assert.InRange(Top1(without), 0, 5);
        Assert.Contains(without.ErrLines, l => l.StartsWith("warning:", StringComparison.Ordinal) && l.Contains("1001 classes", StringComparison.Ordinal)
            && l.Contains("--label-offset 1", StringComparison.Ordinal));
        InProcessCli.Result with = InProcessCli.Run("eval", model, "--data", data, "--json", "--label-offset", "1", "--class-list", list);
        Assert.Equal(100.0, Top1(with));
        Assert.DoesNotContain(with.ErrLines, l => l.StartsWith("warning:", StringComparison.Ordinal));

        // Splits stay on the data's own labels: even-classes keeps data labels 0, 2, 4 … (model classes 1, 3, 5 …).
        var pre = Preprocessing.Cifar10;
        foreach (string split in (string[])["even-classes", "odd-classes"])
        {
            Dataset shifted = DatasetLoader.Load(new DataOptions { Path = data, Preprocessing = pre, Split = split, LabelOffset = 1, ClassList = list, CacheDirectory = "" });
            Dataset plain = DatasetLoader.Load(new DataOptions { Path = data, Preprocessing = pre, Split = split, ClassList = list, CacheDirectory = "" });
            Assert.Equal(1000, shifted.ClassNames.Count);
            Assert.Equal(1001, shifted.ClassCount);
            Assert.Equal(plain.Count, shifted.Count);
            Assert.All(plain.Labels.ToArray(), l => Assert.Equal(split == "even-classes" ? 0 : 1, l % 2));
            Assert.Equal(plain.Labels.ToArray().Select(l => l + 1), shifted.Labels.ToArray());
            Assert.NotEqual(plain.Hash, shifted.Hash);
            Assert.Equal(100.0, Top1(InProcessCli.Run("eval", model, "--data", data, "--json", "--label-offset", "1", "--class-list", list, "--split", split)));
        }
        Assert.Equal(2, InProcessCli.Run("eval", model, "--data", data, "--class-list", list, "--label-offset", "-1").Code);
    }

    [Fact]
    public void MeanAndStdTakeCommasOrSpaces()
    {
        string model = zoo.Model("base"), data = zoo.Data("base");
        double Ce(params string[] extra) => Json(InProcessCli.Run(["eval", model, "--data", data, "--json", "--no-cache", .. extra])).GetProperty("cross_entropy").GetDouble();
        double commas = Ce("--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25");
        Assert.Equal(commas, Ce("--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"));
        Assert.Equal(commas, Ce("--mean", "0.5, 0.5, 0.5", "--std", "0.25 0.25 0.25"));
        Assert.NotEqual(commas, Ce());   // the values are used

        InProcessCli.Result bad = InProcessCli.Run("eval", model, "--data", data, "--mean", "0.5,x,0.5");
        Assert.Equal(2, bad.Code);
        Assert.Single(bad.ErrLines);
        Assert.StartsWith("error: --mean", bad.Err, StringComparison.Ordinal);
        InProcessCli.Result count = InProcessCli.Run("eval", model, "--data", data, "--mean", "0.5,0.5");
        Assert.Equal(2, count.Code);
        Assert.Single(count.ErrLines, l => l.StartsWith("error: ", StringComparison.Ordinal) && l.Contains("mean and std need 3 value(s)", StringComparison.Ordinal));
        Assert.Contains("commas or spaces", InProcessCli.Run("eval", "--help").Out, StringComparison.Ordinal);
    }

    [Fact]
    public void NhwcInputIsDetectedAndSaid()
    {
        InProcessCli.Result r = InProcessCli.Run("eval", zoo.Model("nhwc"), "--data", zoo.Data("nhwc"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("top-1 100.00 %", r.Out, StringComparison.Ordinal);
        Assert.StartsWith("preset: cifar10, guessed from the model input [N,8,8,3]", r.ErrLines[0], StringComparison.Ordinal);
        Assert.Contains("channels-last", r.ErrLines[0], StringComparison.Ordinal);
        // An explicit NCHW preset is adapted too, and said.
        InProcessCli.Result preset = InProcessCli.Run("eval", zoo.Model("nhwc"), "--data", zoo.Data("nhwc"), "--preset", "cifar10");
        Assert.True(preset.Code == 0, preset.ToString());
        Assert.Contains(preset.ErrLines, l => l.StartsWith("layout NHWC (channels-last) detected", StringComparison.Ordinal));
        Assert.Equal(TensorLayout.Nhwc, InputLayout.Detect([-1, 224, 224, 3]));
        Assert.Equal(TensorLayout.Nchw, InputLayout.Detect([-1, 3, 224, 224]));
        Assert.Null(InputLayout.Detect([-1, 3, 3, 3]));
        Assert.Null(InputLayout.Detect([-1, 784]));
    }

    [Fact]
    public void GuessedPresetIsTheFirstLineWithItsReason()
    {
        InProcessCli.Result r = InProcessCli.Run("eval", zoo.Model("base"), "--data", zoo.Data("base"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Equal("preset: cifar10, guessed from the model input [N,3,8,8] (3 channels, 8×8); --preset chooses another", r.ErrLines[0]);
        InProcessCli.Result given = InProcessCli.Run("eval", zoo.Model("base"), "--data", zoo.Data("base"), "--preset", "cifar10");
        Assert.DoesNotContain(given.ErrLines, l => l.StartsWith("preset:", StringComparison.Ordinal));
    }

    [Fact]
    public void QuantizeTakesTheCalibrationSplit()
    {
        using var dir = new Assets.TempDir();
        string model = zoo.Model("base"), data = zoo.Data("base");
        InProcessCli.Result even = InProcessCli.Run("quantize", model, "--bits", "4", "--calib", data, "--calib-split", "even-classes", "-o", dir.File("even.onnx"), "--json");
        Assert.True(even.Code == 0, even.ToString());
        Assert.Contains("split even-classes", Json(even).GetProperty("calibration").GetString(), StringComparison.Ordinal);
        InProcessCli.Result all = InProcessCli.Run("quantize", model, "--bits", "4", "--calib", data, "-o", dir.File("all.onnx"), "--json");
        Assert.Contains("split all", Json(all).GetProperty("calibration").GetString(), StringComparison.Ordinal);
        // GPTQ statistics from other images give other integers.
        Assert.NotEqual(File.ReadAllBytes(dir.File("even.onnx")), File.ReadAllBytes(dir.File("all.onnx")));
        InProcessCli.Result bad = InProcessCli.Run("quantize", model, "--bits", "4", "--calib", data, "--calib-split", "thirds", "-o", dir.File("x.onnx"));
        Assert.Equal(2, bad.Code);
        Assert.Single(bad.ErrLines, l => l.StartsWith("error: ", StringComparison.Ordinal) && l.Contains("'thirds'", StringComparison.Ordinal));
    }
}
