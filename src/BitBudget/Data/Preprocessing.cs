using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace BitBudget.Data;

/// <summary>Order of colour channels in the model input.</summary>
public enum ChannelOrder
{
    /// <summary>Red, green, blue (PyTorch/torchvision).</summary>
    Rgb,
    /// <summary>Blue, green, red (Caffe, OpenCV).</summary>
    Bgr,
}

/// <summary>Memory layout of one input image.</summary>
public enum TensorLayout
{
    /// <summary>Channels first: [N, C, H, W].</summary>
    Nchw,
    /// <summary>Channels last: [N, H, W, C].</summary>
    Nhwc,
}

/// <summary>
/// How an image file becomes a model input: resize the shorter side (bilinear), center crop,
/// value = (pixel · <see cref="Scale"/> − mean) / std per channel, in the given channel order and layout.
/// </summary>
public sealed record Preprocessing
{
    /// <summary>Target of the shorter side, or null to keep the decoded size.</summary>
    public int? ResizeShorter { get; init; }

    /// <summary>Side of the centered square crop, or null for no crop.</summary>
    public int? CenterCrop { get; init; }

    /// <summary>Factor applied to the 0..255 pixel values before normalization.</summary>
    public float Scale { get; init; } = 1f / 255f;

    /// <summary>Per-channel mean subtracted after scaling (one value for grey images).</summary>
    public float[] Mean { get; init; } = [0f, 0f, 0f];

    /// <summary>Per-channel standard deviation divided after the mean (one value for grey images).</summary>
    public float[] Std { get; init; } = [1f, 1f, 1f];

    /// <summary>Channel order of colour images.</summary>
    public ChannelOrder ChannelOrder { get; init; } = ChannelOrder.Rgb;

    /// <summary>Layout of the produced tensor.</summary>
    public TensorLayout Layout { get; init; } = TensorLayout.Nchw;

    /// <summary>Convert to one grey channel (luma) instead of three colour channels.</summary>
    public bool Grey { get; init; }

    /// <summary>Number of channels the produced tensor has.</summary>
    [JsonIgnore]
    public int Channels => Grey ? 1 : 3;

    /// <summary>CIFAR-10 models such as the shipped ResNet-20: 32×32 RGB, CIFAR mean/std, NCHW.</summary>
    public static Preprocessing Cifar10 { get; } = new()
    {
        Mean = [0.4914f, 0.4822f, 0.4465f],
        Std = [0.2023f, 0.1994f, 0.2010f],
    };

    /// <summary>torchvision ImageNet evaluation: shorter side 256 (bilinear), center crop 224, ImageNet mean/std, NCHW.</summary>
    public static Preprocessing ImageNet { get; } = new()
    {
        ResizeShorter = 256,
        CenterCrop = 224,
        Mean = [0.485f, 0.456f, 0.406f],
        Std = [0.229f, 0.224f, 0.225f],
    };

    /// <summary>The ONNX model zoo MNIST model: 28×28 grey, raw 0..255 values.</summary>
    public static Preprocessing Mnist { get; } = new()
    {
        Scale = 1f,
        Mean = [0f],
        Std = [1f],
        Grey = true,
    };

    /// <summary>The names accepted by <see cref="FromPreset"/>.</summary>
    public static IReadOnlyList<string> PresetNames { get; } = ["cifar10", "imagenet", "mnist"];

    /// <summary>A named preset: <c>cifar10</c>, <c>imagenet</c> or <c>mnist</c>.</summary>
    public static Preprocessing FromPreset(string name) => name.ToLowerInvariant() switch
    {
        "cifar10" or "cifar" => Cifar10,
        "imagenet" => ImageNet,
        "mnist" => Mnist,
        _ => throw Errors.InvalidInput(
            $"Unknown preprocessing preset '{name}'; expected one of {string.Join(", ", PresetNames)}."),
    };

    /// <summary>Reads a preprocessing description from JSON (snake_case names, e.g. <c>resize_shorter</c>); missing fields keep their defaults.</summary>
    public static Preprocessing FromJson(string json, string source = "(json)")
    {
        Preprocessing? result;
        try
        {
            // The source-generated reader sets every init-only property, so a field the file omits would become 0/null
            // instead of its default: lay the file's fields over the defaults' JSON and read the complete object.
            JsonNode? given = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
            if (given is JsonObject fields)
            {
                var merged = (JsonObject)JsonNode.Parse(new Preprocessing().ToJson())!;
                foreach ((string name, JsonNode? value) in fields.ToList())
                {
                    fields.Remove(name);
                    merged[name] = value;
                }
                json = merged.ToJsonString();
            }
            result = JsonSerializer.Deserialize(json, BitBudgetJson.Info<Preprocessing>(BitBudgetJson.Files));
        }
        catch (JsonException e)
        {
            throw Errors.InvalidInput($"Preprocessing file {source} is not valid: {e.Message.ReplaceLineEndings(" ")}");
        }
        return (result ?? throw Errors.InvalidInput($"Preprocessing file {source} is empty.")).Validated(source);
    }

    /// <summary>Loads <see cref="FromJson"/> from a file.</summary>
    public static Preprocessing Load(string path)
    {
        if (!File.Exists(path)) { throw Errors.FileNotFound($"Preprocessing file '{path}' does not exist."); }
        return FromJson(File.ReadAllText(path), path);
    }

    /// <summary>The description as JSON, readable by <see cref="FromJson"/>.</summary>
    public string ToJson() => BitBudgetJson.Serialize(this);

    /// <summary>Throws a one-line error when a field is out of range.</summary>
    public Preprocessing Validated(string source = "preprocessing")
    {
        if (ResizeShorter is <= 0) { Fail($"resize_shorter must be positive, got {ResizeShorter}"); }
        if (CenterCrop is <= 0) { Fail($"center_crop must be positive, got {CenterCrop}"); }
        if (Mean.Length != Channels || Std.Length != Channels)
        {
            Fail($"mean and std need {Channels} value(s) for {(Grey ? "grey" : "colour")} images, got {Mean.Length} and {Std.Length}");
        }
        foreach (float s in Std) { if (!(s > 0)) { Fail($"std values must be positive, got {s}"); } }
        if (!(Scale > 0)) { Fail($"scale must be positive, got {Scale}"); }
        return this;

        void Fail(string what) => throw Errors.InvalidInput($"Invalid {source}: {what}.");
    }

    /// <summary>A stable text of every field, used in cache keys and data hashes.</summary>
    internal string Fingerprint() => ToJson().ReplaceLineEndings("").Replace(" ", "", StringComparison.Ordinal);
}
