using System.CommandLine;
using System.Globalization;
using BitBudget.Graph;
using BitBudget.Optimization;
using BitBudget.Sensitivity;
using SkiaSharp;
using Spectre.Console;

namespace BitBudget.Cli.Commands;

/// <summary>Temporary `bitbudget ompq` command until `bitbudget search --method ompq` exists.</summary>
static class OmpqCommand
{
    public static Command Create()
    {
        var model = new Argument<FileInfo>("model") { Description = "ONNX model file." };
        var data = new Option<string>("--data") { Description = "Images: an ERAN CIFAR CSV file, or a folder of JPEG/PNG images (searched recursively).", Required = true };
        var images = new Option<int>("--images") { Description = "Number of images N of the one forward pass.", DefaultValueFactory = _ => 32 };
        var budget = new Option<string>("--budget") { Description = "Size budget: '4bits' (average over all quantized layers), '3bits-searched', '300KB', '1.5MiB'.", Required = true };
        var beta = new Option<double>("--beta") { Description = "β of θ = exp(−βγ).", DefaultValueFactory = _ => 10 };
        var bits = new Option<string>("--bits") { Description = "Candidate bit-widths, comma separated.", DefaultValueFactory = _ => "2,4,8" };
        var uncentered = new Option<bool>("--uncentered") { Description = "Uncentered ORM (the paper's formula) instead of linear CKA." };
        var searchAll = new Option<bool>("--search-first-last") { Description = "Search the first and last layers too (default: fixed at 8 bits)." };
        var noGroup = new Option<bool>("--no-group") { Description = "Give residual shortcut convs their own unit instead of the bits of the conv closing their block." };
        var json = new Option<bool>("--json") { Description = "Print the result as JSON on stdout." };
        var command = new Command("ompq", "OMPQ search: orthogonality of layer features on one batch, then an exact LP and ILP bit allocation.")
        {
            model, data, images, budget, beta, bits, uncentered, searchAll, noGroup, json,
        };
        command.SetAction((parse, cancellationToken) =>
        {
            OmpqBudget parsedBudget = OmpqBudget.Parse(parse.GetRequiredValue(budget));
            var options = new OmpqOptions
            {
                Units = new OmpqUnitOptions { FixFirstAndLast = !parse.GetValue(searchAll), GroupShortcuts = !parse.GetValue(noGroup) },
                Proxy = new OrthogonalityOptions { Beta = parse.GetValue(beta), Centered = !parse.GetValue(uncentered) },
                CandidateBits = ParseBits(parse.GetRequiredValue(bits)),
            };
            OnnxModel loaded = OnnxModel.Load(parse.GetRequiredValue(model).FullName);
            (float[] batch, long[] shape) = OmpqImages.Load(parse.GetRequiredValue(data), parse.GetValue(images), loaded.InputShape);
            OmpqSearchResult result = OmpqSearch.Run(loaded, batch, shape, parsedBudget, options, cancellationToken);
            if (parse.GetValue(json))
            {
                Ui.WriteJson(new
                {
                    result.Summary.Source,
                    Budget = result.Budget.ToString(),
                    Layers = result.Summary.Layers.Select(l => new { l.Index, l.Name, l.WeightCount, Bits = result.LayerBits[l.Index] }),
                    Units = result.Units.Units,
                    result.Units.FixedLayers,
                    result.Proxy.Orm,
                    result.Proxy.Gamma,
                    result.Proxy.Theta,
                    result.Proxy.Log10RawTheta,
                    result.Proxy.Effect,
                    result.Proxy.Notes,
                    result.Allocation,
                    result.InspectSeconds,
                    result.Proxy.ForwardSeconds,
                    result.Proxy.GramSeconds,
                    result.TotalSeconds,
                });
                return Task.FromResult(ExitCodes.Ok);
            }
            Render(result);
            return Task.FromResult(ExitCodes.Ok);
        });
        return command;
    }

    static int[] ParseBits(string text)
    {
        var result = new List<int>();
        foreach (string part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int b) || b is < 1 or > 16)
            {
                throw new BitBudgetException(ErrorKind.InvalidInput, $"Candidate bits '{text}' are invalid; expected comma-separated integers between 1 and 16, such as '2,4,8'.");
            }
            result.Add(b);
        }
        return [.. result];
    }

    static void Render(OmpqSearchResult r)
    {
        Ui.Err.WriteLine(r.Units.Format());
        var table = new Table().Border(TableBorder.Rounded)
            .Title($"[bold]OMPQ[/] {Markup.Escape(Path.GetFileName(r.Summary.Source))}, budget {Markup.Escape(r.Budget.ToString())}, N = {r.Proxy.Images}, β = {r.Proxy.Beta.ToString(CultureInfo.InvariantCulture)}, {(r.Proxy.Centered ? "centered" : "uncentered")}");
        table.AddColumns("unit", "layers", "weights", "γ", "θ (norm.)", "log10 θ raw", "c", "LP bits", "bits");
        foreach (var c in table.Columns.Skip(2)) { c.RightAligned(); }
        foreach (OmpqUnit u in r.Units.Units)
        {
            int i = u.Index;
            table.AddRow(
                i.ToString(CultureInfo.InvariantCulture),
                Markup.Escape(string.Join(" + ", u.Layers.Select(l => r.Summary.Layers[l].Name))),
                Ui.Count(u.WeightCount),
                r.Proxy.Gamma[i].ToString("F3", CultureInfo.InvariantCulture),
                r.Proxy.Theta[i].ToString("G3", CultureInfo.InvariantCulture),
                r.Proxy.Log10RawTheta[i].ToString("F1", CultureInfo.InvariantCulture),
                r.Allocation.Coefficients[i].ToString("G3", CultureInfo.InvariantCulture),
                r.Allocation.LpBits[i].ToString("0.##", CultureInfo.InvariantCulture),
                r.Allocation.Bits[i].ToString(CultureInfo.InvariantCulture));
        }
        Ui.Out.Write(table);
        OmpqAllocationResult a = r.Allocation;
        Ui.Out.MarkupLine($"θ effect: [bold]{r.Proxy.Effect}[/] ({r.Proxy.EffectiveUnits} of {r.Units.Units.Count} units with θ ≥ 1e-6). " +
            $"LP {a.LpStatus} objective {a.LpObjective:F4}; ILP {a.IlpStatus} objective {a.IlpObjective:F4}. " +
            $"Size {Ui.Count(a.UsedBits)} of {Ui.Count(a.CapacityBits)} weight bits: {a.AverageBits:F3} avg bits (all layers), {a.AverageBitsSearched:F3} (searched).");
        foreach (string note in r.Proxy.Notes) { Ui.Out.MarkupLine($"[yellow]note:[/] {Markup.Escape(note)}"); }
        Ui.Out.MarkupLine($"time: inspect {r.InspectSeconds:F2} s, forward {r.Proxy.ForwardSeconds:F2} s ({r.Proxy.Passes} pass), Gram/ORM {r.Proxy.GramSeconds:F2} s, " +
            $"LP {a.LpSeconds:F3} s, ILP {a.IlpSeconds:F3} s, total {r.TotalSeconds:F2} s.");
    }
}

/// <summary>
/// Minimal image loading for `bitbudget ompq` until the data stage lands: ERAN CIFAR CSV rows, or image files with the
/// preprocessing of the shipped models chosen by input shape (3×32×32 CIFAR, 3×224×224 ImageNet, 1×28×28 raw MNIST).
/// </summary>
internal static class OmpqImages
{
    public static (float[] Images, long[] Shape) Load(string path, int count, IReadOnlyList<long> modelShape)
    {
        if (count < 2) { throw new BitBudgetException(ErrorKind.InvalidInput, $"--images must be at least 2, got {count}."); }
        if (modelShape.Count != 4 || modelShape.Skip(1).Any(d => d <= 0))
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"The model input shape [{string.Join(",", modelShape)}] is not an image batch [N,C,H,W].");
        }
        int c = (int)modelShape[1], h = (int)modelShape[2], w = (int)modelShape[3];
        if (File.Exists(path) && path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase))
        {
            return (EranCsv(path, count, c, h, w), [count, c, h, w]);
        }
        if (!Directory.Exists(path)) { throw new BitBudgetException(ErrorKind.FileNotFound, $"Image source '{path}' is neither a .csv file nor a folder."); }
        string[] files = [.. Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
            .Where(f => f.EndsWith(".jpg", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".jpeg", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            .Order(StringComparer.Ordinal)];
        if (files.Length < count)
        {
            throw new BitBudgetException(ErrorKind.InvalidInput, $"Folder '{path}' has {files.Length} images; --images asked for {count}.");
        }
        var images = new float[(long)count * c * h * w];
        for (int n = 0; n < count; n++)
        {
            // Evenly spaced files, so a class-per-folder tree contributes every class.
            string file = files[(int)((long)n * files.Length / count)];
            Decode(file, c, h, w, images.AsSpan(n * c * h * w, c * h * w));
        }
        return (images, [count, c, h, w]);
    }

    static (float[] Mean, float[] Std, float Scale) Normalization(int c, int h) => (c, h) switch
    {
        (3, 32) => ([0.4914f, 0.4822f, 0.4465f], [0.2023f, 0.1994f, 0.2010f], 1 / 255f),
        (3, _) => ([0.485f, 0.456f, 0.406f], [0.229f, 0.224f, 0.225f], 1 / 255f),
        _ => ([0f], [1f], 1f),   // mnist-8 takes raw 0..255
    };

    static float[] EranCsv(string path, int count, int c, int h, int w)
    {
        if (c != 3 || h * w != 1024) { throw new BitBudgetException(ErrorKind.InvalidInput, $"ERAN CSV rows are 3×32×32 images; the model expects {c}×{h}×{w}."); }
        string[] lines = File.ReadAllLines(path);
        if (lines.Length < count) { throw new BitBudgetException(ErrorKind.InvalidInput, $"'{path}' has {lines.Length} rows; --images asked for {count}."); }
        (float[] mean, float[] std, float scale) = Normalization(3, 32);
        var images = new float[count * 3072];
        for (int n = 0; n < count; n++)
        {
            string[] cells = lines[n].Split(',');
            if (cells.Length != 3073) { throw new BitBudgetException(ErrorKind.InvalidInput, $"'{path}' row {n + 1} has {cells.Length} values; 3073 (label + 3072 pixels) were expected."); }
            for (int p = 0; p < 1024; p++)
            {
                for (int k = 0; k < 3; k++)
                {
                    images[n * 3072 + k * 1024 + p] = (float.Parse(cells[1 + p * 3 + k], CultureInfo.InvariantCulture) * scale - mean[k]) / std[k];
                }
            }
        }
        return images;
    }

    /// <summary>Decodes one image: shorter side resized to 256/224 of the input size (bilinear), center crop, normalized, CHW.</summary>
    static void Decode(string file, int c, int h, int w, Span<float> target)
    {
        using SKBitmap? original = SKBitmap.Decode(file);
        if (original is null) { throw new BitBudgetException(ErrorKind.InvalidInput, $"'{file}' is not a readable image."); }
        double resizeTo = h == 224 ? 256 : Math.Max(h, w);   // ImageNet protocol; small inputs are resized to size
        double factor = resizeTo / Math.Min(original.Width, original.Height);
        int rw = Math.Max(w, (int)Math.Round(original.Width * factor)), rh = Math.Max(h, (int)Math.Round(original.Height * factor));
        using SKBitmap resized = original.Resize(new SKImageInfo(rw, rh, SKColorType.Rgba8888, SKAlphaType.Unpremul), new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.None));
        int x0 = (rw - w) / 2, y0 = (rh - h) / 2;
        (float[] mean, float[] std, float scale) = Normalization(c, h);
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                SKColor p = resized.GetPixel(x0 + x, y0 + y);
                if (c == 1)
                {
                    target[y * w + x] = ((p.Red + p.Green + p.Blue) / 3f * scale - mean[0]) / std[0];
                    continue;
                }
                target[0 * h * w + y * w + x] = (p.Red * scale - mean[0]) / std[0];
                target[1 * h * w + y * w + x] = (p.Green * scale - mean[1]) / std[1];
                target[2 * h * w + y * w + x] = (p.Blue * scale - mean[2]) / std[2];
            }
        }
    }
}
