using System.CommandLine;
using BitBudget.Data;
using BitBudget.Runtime;

namespace BitBudget.Cli;

/// <summary>The options that choose and preprocess a dataset, shared by every command that reads images.</summary>
sealed class DataArguments
{
    readonly string _prefix;
    public Option<string[]> Preset { get; }
    public Option<FileInfo?> PreprocessFile { get; }
    public Option<int?> Resize { get; }
    public Option<int?> Crop { get; }
    public Option<float?> Scale { get; }
    public Option<string[]?> Mean { get; }
    public Option<string[]?> Std { get; }
    public Option<int> LabelOffset { get; }
    public Option<bool> Bgr { get; }
    public Option<bool> Nhwc { get; }
    public Option<bool> Grey { get; }
    public Option<FileInfo?> ClassList { get; }
    public Option<bool> SkipBadImages { get; }
    public Option<bool> NoCache { get; }

    public DataArguments(string prefix = "")
    {
        _prefix = prefix;
        Preset = new Option<string[]>("--preset")
        {
            Description = $"Preprocessing preset ({string.Join(", ", Data.Preprocessing.PresetNames)}; default: guessed from the model input) and/or quantization preset (default, clado-paper); repeat for both.",
        };
        PreprocessFile = new Option<FileInfo?>("--preprocess") { Description = "Preprocessing JSON file (fields of the preset, snake_case); overrides the preset." };
        Resize = new Option<int?>("--resize") { Description = "Resize the shorter side to this many pixels (bilinear)." };
        Crop = new Option<int?>("--crop") { Description = "Center-crop a square of this side." };
        Scale = new Option<float?>("--scale") { Description = "Multiply 0..255 pixels by this before mean/std (e.g. 0.00392157)." };
        Mean = new Option<string[]?>("--mean") { Description = "Per-channel mean after scaling, separated by commas or spaces: --mean 0.5,0.5,0.5 or --mean 0.5 0.5 0.5.", AllowMultipleArgumentsPerToken = true };
        Std = new Option<string[]?>("--std") { Description = "Per-channel std after scaling, separated by commas or spaces: --std 0.25,0.25,0.25.", AllowMultipleArgumentsPerToken = true };
        LabelOffset = new Option<int>("--label-offset")
        {
            Description = "Add N to every data label to get the model's class (1 for ImageNet models whose class 0 is background); splits use the data's own labels.",
            DefaultValueFactory = _ => 0,
        };
        Bgr = new Option<bool>("--bgr") { Description = "Feed channels in BGR order." };
        Nhwc = new Option<bool>("--nhwc") { Description = "Feed channels-last tensors." };
        Grey = new Option<bool>("--grey") { Description = "Convert images to one grey channel." };
        ClassList = new Option<FileInfo?>("--class-list") { Description = "File with one class key per line, fixing the label order." };
        SkipBadImages = new Option<bool>("--skip-bad-images") { Description = "Skip unreadable images (reported) instead of failing." };
        NoCache = new Option<bool>("--no-cache") { Description = "Do not read or write the decoded-image cache." };
    }

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { Preset, PreprocessFile, Resize, Crop, Scale, Mean, Std, Bgr, Nhwc, Grey, ClassList, LabelOffset, SkipBadImages, NoCache })
        {
            command.Options.Add(o);
        }
    }

    readonly HashSet<string> _said = [];

    /// <summary>Prints an informational line once per command (the preprocessing is worked out for every data set).</summary>
    void SayOnce(string line)
    {
        if (_said.Add(line)) { Ui.Note(line); }
    }

    /// <summary>The preprocessing the options describe; without a preset it is guessed from the model input shape (and said so),
    /// and a channels-last input is detected from the shape when unambiguous.</summary>
    public Preprocessing Preprocessing(ParseResult parse, IReadOnlyList<long> modelInput)
    {
        // Bad values fail before anything is said.
        float[]? mean = Numbers(parse.GetValue(Mean), "--mean"), std = Numbers(parse.GetValue(Std), "--std");
        Preprocessing pre;
        if (parse.GetValue(PreprocessFile) is FileInfo file) { pre = Data.Preprocessing.Load(file.FullName); }
        else if (DataPreset(parse) is string name) { pre = Data.Preprocessing.FromPreset(name); }
        else
        {
            (string guessed, pre, string reason) = InputLayout.Guess(modelInput);
            SayOnce($"preset: {guessed}, {reason}; --preset chooses another");
        }
        if (!parse.GetValue(Nhwc) && InputLayout.Adapt(pre, modelInput) is (Preprocessing adapted, string note))
        {
            pre = adapted;
            SayOnce($"{note}; feeding {(adapted.Layout == TensorLayout.Nhwc ? "channels-last" : "channels-first")} tensors");
        }
        if (parse.GetValue(Resize) is int r) { pre = pre with { ResizeShorter = r }; }
        if (parse.GetValue(Crop) is int c) { pre = pre with { CenterCrop = c }; }
        if (parse.GetValue(Scale) is float s) { pre = pre with { Scale = s }; }
        if (parse.GetValue(Grey)) { pre = pre with { Grey = true, Mean = pre.Mean.Length == 1 ? pre.Mean : [pre.Mean[0]], Std = pre.Std.Length == 1 ? pre.Std : [pre.Std[0]] }; }
        if (mean is { Length: > 0 }) { pre = pre with { Mean = mean }; }
        if (std is { Length: > 0 }) { pre = pre with { Std = std }; }
        if (parse.GetValue(Bgr)) { pre = pre with { ChannelOrder = ChannelOrder.Bgr }; }
        if (parse.GetValue(Nhwc)) { pre = pre with { Layout = TensorLayout.Nhwc }; }
        return pre.Validated("preprocessing options");
    }

    /// <summary>Per-channel values given as one or more tokens, each holding numbers separated by commas or spaces.</summary>
    static float[]? Numbers(string[]? tokens, string option)
    {
        if (tokens is null || tokens.Length == 0) { return null; }
        var values = new List<float>();
        foreach (string part in tokens.SelectMany(t => t.Split([',', ' ', '\t'], StringSplitOptions.RemoveEmptyEntries)))
        {
            if (!float.TryParse(part, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out float v) || !float.IsFinite(v))
            {
                throw Errors.InvalidInput(
                    $"{option} '{string.Join(" ", tokens)}': '{part}' is not a number; give one value per channel separated by commas or spaces, e.g. {option} 0.5,0.5,0.5.");
            }
            values.Add(v);
        }
        if (values.Count == 0) { throw Errors.InvalidInput($"{option} needs one value per channel, e.g. {option} 0.5,0.5,0.5."); }
        return [.. values];
    }

    /// <summary>The quantization presets accepted by --preset beside the data presets.</summary>
    public static IReadOnlyList<string> QuantizationPresets { get; } = ["default", "clado-paper"];

    string? DataPreset(ParseResult parse) => Presets(parse).FirstOrDefault(p => !QuantizationPresets.Contains(p));

    /// <summary>The quantization preset named by --preset, or "default".</summary>
    public string QuantizationPreset(ParseResult parse) => Presets(parse).FirstOrDefault(p => QuantizationPresets.Contains(p)) ?? "default";

    string[] Presets(ParseResult parse)
    {
        string[] values = parse.GetValue(Preset) ?? [];
        foreach (string v in values)
        {
            if (!QuantizationPresets.Contains(v) && !Data.Preprocessing.PresetNames.Contains(v.ToLowerInvariant()))
            {
                throw Errors.InvalidInput(
                    $"Unknown preset '{v}'; expected a data preset ({string.Join(", ", Data.Preprocessing.PresetNames)}) or a quantization preset ({string.Join(", ", QuantizationPresets)}).");
            }
        }
        return values;
    }

    public DataOptions Options(ParseResult parse, string path, IReadOnlyList<long> modelInput, string split = "all", int? limit = null, int? seed = null) => new()
    {
        Path = path,
        Preprocessing = Preprocessing(parse, modelInput),
        ClassList = parse.GetValue(ClassList)?.FullName,
        Split = split,
        Limit = limit,
        Seed = seed,
        SkipBadImages = parse.GetValue(SkipBadImages),
        LabelOffset = parse.GetValue(LabelOffset) is int offset and >= 0 ? offset
            : throw Errors.InvalidInput($"--label-offset must be 0 or more, got {parse.GetValue(LabelOffset)}."),
        CacheDirectory = parse.GetValue(NoCache) ? "" : null,
    };

    /// <summary>The option files this command reads (preprocessing JSON, class list), which no output may replace.</summary>
    public IEnumerable<string?> InputFiles(ParseResult parse) => [parse.GetValue(PreprocessFile)?.FullName, parse.GetValue(ClassList)?.FullName];

    public override string ToString() => _prefix;
}

/// <summary>Threads and execution provider.</summary>
sealed class RuntimeArguments
{
    public Option<int> Threads { get; } = new("--threads")
    {
        Description = $"ONNX Runtime intra-op threads: 0 = one per core, at most {RuntimeOptions.MaxThreads} (4 × the {Environment.ProcessorCount} logical cores).",
        DefaultValueFactory = _ => 0,
    };
    public Option<Device> Device { get; } = new("--device") { Description = "Execution provider: cpu, cuda, tensorrt, dml.", DefaultValueFactory = _ => Runtime.Device.Cpu };

    public Option<string?> MaxMemory { get; } = new("--max-memory")
    {
        Description = "Most memory the process may use (e.g. 3GiB, 1500MB); every pass streams its images in micro-batches that fit. Default: the smaller of 3 GiB and half the physical memory.",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Threads);
        command.Options.Add(Device);
        command.Options.Add(MaxMemory);
    }

    public RuntimeOptions Options(ParseResult parse)
    {
        var options = new RuntimeOptions { IntraOpThreads = parse.GetValue(Threads), Device = parse.GetValue(Device) };
        if (parse.GetValue(MaxMemory) is not string text) { return options.Validated("--threads"); }
        long bytes = ParseMaxMemory(text) ?? throw Errors.InvalidInput($"--max-memory '{text}' is not an amount of memory such as 3GiB or 1500MB.");
        return (options with { MaxMemory = bytes }).Validated("--threads");
    }

    /// <summary>The bytes of a --max-memory value, null when it is not an amount of memory.</summary>
    public static long? ParseMaxMemory(string text)
    {
        try { return Optimization.Budget.Parse(text) is { Kind: Optimization.BudgetKind.Bytes } budget ? (long)budget.Value : null; }
        catch (BitBudgetException) { return null; }
    }
}
