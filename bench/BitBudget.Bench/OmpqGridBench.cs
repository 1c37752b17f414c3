using System.Globalization;
using BitBudget.Data;
using BitBudget.Ompq;
using BitBudget.Optimization;
using BitBudget.Pipeline;
using BitBudget.Quantization;

namespace BitBudget.Bench;

/// <summary>
/// Issue 21's OMPQ gap on ResNet-20: does a wider data-driven grid than the held-out rule's help? For one draw (the same calibration,
/// sensitivity and held-out images as `run --sens-images 512 --seed S`), every spread s of a wide grid (negative: θ increasing with γ;
/// finer near 0) and every candidate-bit set is allocated at each budget and judged by the rule's own measure, the held-out KL of the
/// simulated model. The winner of each grid is chosen by that KL only; with `export`, each distinct winner is then exported and
/// evaluated on the 10k test images (the test set never takes part in a choice).
/// Usage: ompq-grid [seed=0] [export] [candidate sets, e.g. "2,4,8 2,4"]
/// </summary>
static class OmpqGridBench
{
    static readonly double[] s_wideSpreads = [-8, -4, -2, -1, -0.5, -0.25, -0.1, 0, 0.1, 0.25, 0.5, 1, 2, 4, 8];
    static readonly string[] s_budgets = ["2.5bits", "3bits", "3.5bits", "4bits"];

    public static int Run(string[] args)
    {
        int seed = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 0;
        bool export = args.Contains("export");
        string sets = args.FirstOrDefault(a => a.Contains(',', StringComparison.Ordinal)) ?? "2,4,8 2,4";
        int[][] candidateSets = [.. sets.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(s => s.Split(',').Select(b => int.Parse(b, CultureInfo.InvariantCulture)).ToArray())];
        string modelPath = Measure.Assets("cifar10/resnet20.onnx");
        Dataset source = DatasetLoader.Load(new DataOptions { Path = Measure.Assets("cifar10/train-5k"), Preprocessing = Preprocessing.Cifar10 });
        // The draws of PipelineArguments.LoadCalibrationWithHeldOut with --sens-images 512 --seed seed.
        Dataset calibration = source.Sample(PipelineOptions.Default.CalibrationImages, seed);
        Dataset sensitivity = source.Sample(512, seed + 1);
        var used = sensitivity.Ids.Concat(calibration.Ids).ToHashSet(StringComparer.Ordinal);
        Dataset heldOut = source.Subset([.. Enumerable.Range(0, source.Count).Where(i => !used.Contains(source.Ids[i]))]).Sample(512, seed + 2);
        Dataset? test = export ? DatasetLoader.Load(new DataOptions { Path = Measure.Assets("cifar10/test"), Preprocessing = Preprocessing.Cifar10 }) : null;
        Console.WriteLine($"ResNet-20, seed {seed}: calibration {calibration.Count}, sensitivity {sensitivity.Count} (OMPQ features: first 32), held out {heldOut.Count}");

        // budget → rule → (KL, bits); the rules are compared by held-out KL only.
        var winners = new Dictionary<string, Dictionary<string, (double Kl, IReadOnlyList<LayerBits> Config, double Avg, CalibratedPipeline Pipeline)>>();
        foreach (int[] candidates in candidateSets)
        {
            string set = string.Join(",", candidates);
            CalibratedPipeline p = MpqPipeline.Open(modelPath, PipelineOptions.Default with { CandidateBits = candidates }).Calibrate(calibration);
            float[] reference = p.Logits(p.Original, heldOut);
            var kls = new Dictionary<string, double>(StringComparer.Ordinal);
            double Judge(IReadOnlyList<LayerBits> config)
            {
                string key = BitConfig.Describe(config);
                if (!kls.TryGetValue(key, out double kl)) { kls[key] = kl = p.EvaluateAgainst(p.Simulate(config), heldOut, reference).KlDivergence!.Value; }
                return kl;
            }
            foreach (string label in s_budgets)
            {
                Budget budget = Budget.Parse(label);
                // The shipped rule (its grid and the paper's β), which also gives the proxy (γ does not depend on β).
                OmpqSearchResult rule = p.SearchOmpq(sensitivity, budget, heldOut: heldOut, heldOutFloatLogits: reference);
                OrthogonalityResult proxy = rule.Proxy;
                double min = proxy.Gamma.Min(), max = proxy.Gamma.Max(), range = max - min;
                Console.WriteLine($"\n{label}, candidates {{{set}}}: γ ∈ [{min:F3}, {max:F3}]; shipped rule: {rule.Describe()}, avg bits {rule.Allocation.AverageBits:F3}");
                Console.WriteLine("  spread        β   θ entropy/ln L   avg bits   held-out KL   bits per unit");
                var rows = new List<(double Spread, double Kl, IReadOnlyList<LayerBits> Config, double Avg)>();
                foreach (double s in s_wideSpreads)
                {
                    double beta = range > 0 ? s / range : 0;
                    // θ = exp(−β γ) divided by its maximum in the log domain; a negative β makes θ grow with γ.
                    double top = beta >= 0 ? min : max;
                    double[] theta = [.. proxy.Gamma.Select(g => Math.Exp(-beta * (g - top)))];
                    var input = new OmpqAllocationInput([.. rule.Units.Units.Select(u => u.WeightCount)], theta,
                        [.. rule.Units.FixedLayers.Select(l => rule.Summary.Layers[l].WeightCount)], rule.Units.FixedBits, budget) { CandidateBits = candidates };
                    OmpqAllocationResult a = OmpqAllocation.Solve(input);
                    var bitsByLayer = new int[rule.Summary.Layers.Count];
                    foreach (int l in rule.Units.FixedLayers) { bitsByLayer[l] = rule.Units.FixedBits; }
                    foreach (OmpqUnit u in rule.Units.Units) { foreach (int l in u.Layers) { bitsByLayer[l] = a.Bits[u.Index]; } }
                    IReadOnlyList<LayerBits> config = p.Configuration(bitsByLayer);
                    double kl = Judge(config);
                    double sum = theta.Sum();
                    double entropy = -theta.Select(t => t / sum).Where(q => q > 0).Sum(q => q * Math.Log(q)) / Math.Log(theta.Length);
                    rows.Add((s, kl, config, a.AverageBits));
                    Console.WriteLine(FormattableString.Invariant($"  {s,6:G3} {beta,8:G4}   {entropy,14:F3}   {a.AverageBits,8:F3}   {kl,11:F4}   {string.Join("", a.Bits)}"));
                }
                var ruleConfig = p.Configuration(rule.LayerBits);
                double ruleKl = Judge(ruleConfig);
                Console.WriteLine(FormattableString.Invariant($"  shipped rule's choice: KL {ruleKl:F4} (β = {rule.Proxy.Beta:G4})"));
                var best = rows.MinBy(r => r.Kl);   // first of the grid among equal KL
                var bestNonNegative = rows.Where(r => r.Spread >= 0).MinBy(r => r.Kl);
                if (!winners.TryGetValue(label, out var perRule)) { winners[label] = perRule = []; }
                perRule[$"{{{set}}} shipped grid"] = (ruleKl, ruleConfig, rule.Allocation.AverageBits, p);
                perRule[$"{{{set}}} wide grid (s = {best.Spread:G3})"] = (best.Kl, best.Config, best.Avg, p);
                perRule[$"{{{set}}} s ≥ 0 fine grid (s = {bestNonNegative.Spread:G3})"] = (bestNonNegative.Kl, bestNonNegative.Config, bestNonNegative.Avg, p);
            }
        }

        Console.WriteLine("\nWinners by held-out KL (lower is better)" + (export ? "; exported top-1 on the 10k test images" : ""));
        var top1 = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (string label in s_budgets)
        {
            foreach (var (rule, (kl, config, avg, pipeline)) in winners[label])
            {
                string text = FormattableString.Invariant($"  {label,-8} {rule,-36} KL {kl:F4}  avg bits {avg:F3}");
                if (export && test is not null)
                {
                    string key = BitConfig.Describe(config);
                    if (!top1.TryGetValue(key, out double t))
                    {
                        string path = Path.Combine(Path.GetTempPath(), $"ompq-grid-{Environment.ProcessId}.onnx");
                        var exported = pipeline.Export(config, path, force: true);
                        top1[key] = t = pipeline.Evaluate(exported.Model, test).Top1;
                        File.Delete(path);
                    }
                    text += FormattableString.Invariant($"  top-1 {t:F4}");
                }
                Console.WriteLine(text);
            }
        }
        return 0;
    }
}
