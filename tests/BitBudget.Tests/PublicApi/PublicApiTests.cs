using BitBudget.Pipeline;
using PublicApiGenerator;

namespace BitBudget.Tests.PublicApi;

/// <summary>
/// Pins the library's public surface: the listing PublicApiGenerator makes of BitBudget.Core must equal the approved file
/// beside this test. A change to the surface is deliberate: review BitBudget.Core.received.txt and copy it over the approved file.
/// </summary>
public class PublicApiTests
{
    [Fact]
    public void PublicApi_EqualsTheApprovedListing()
    {
        string api = typeof(MpqPipeline).Assembly.GeneratePublicApi(new ApiGeneratorOptions { IncludeAssemblyAttributes = false }).ReplaceLineEndings("\n");
        string folder = SourceFolder();
        string approvedPath = Path.Combine(folder, "BitBudget.Core.approved.txt");
        string receivedPath = Path.Combine(folder, "BitBudget.Core.received.txt");
        string approved = File.Exists(approvedPath) ? File.ReadAllText(approvedPath).ReplaceLineEndings("\n") : "";
        if (api == approved)
        {
            File.Delete(receivedPath);
            return;
        }
        File.WriteAllText(receivedPath, api);
        string[] now = api.Split('\n'), before = approved.Split('\n');
        var added = now.Except(before).Take(10);
        var removed = before.Except(now).Take(10);
        Assert.Fail($"The public API changed; if intended, copy {receivedPath} over {approvedPath}.\n" +
            $"Added:\n  {string.Join("\n  ", added)}\nRemoved:\n  {string.Join("\n  ", removed)}");
    }

    [Fact]
    public void PublicApi_IsSmall_AndHidesTheImplementation()
    {
        var exported = typeof(MpqPipeline).Assembly.GetExportedTypes().Select(t => t.FullName!).ToHashSet();
        // The writers, engines and helpers are internal; the library is used through MpqPipeline, RunWorkflow and the method registry.
        foreach (string hidden in new[]
        {
            "BitBudget.Internals.AtomicFile", "BitBudget.Optimization.SyntheticProblem", "BitBudget.Evaluation.EvaluationEngine",
            "BitBudget.Quantization.QuantizedWeights", "BitBudget.Clado.CladoSensitivity", "BitBudget.Export.QdqExporter",
            "BitBudget.Reporting.HtmlReport", "BitBudget.BestOf.BestOfSearch",
        })
        {
            Assert.DoesNotContain(hidden, exported);
        }
        foreach (string entry in new[] { "BitBudget.Pipeline.MpqPipeline", "BitBudget.Workflow.RunWorkflow", "BitBudget.Methods.SearchMethods", "BitBudget.Methods.ISearchMethod" })
        {
            Assert.Contains(entry, exported);
        }
    }

    // Not [CallerFilePath]: under CI=true the build is deterministic and maps source paths to /_/.
    static string SourceFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "BitBudget.slnx")))
            {
                return Path.Combine(dir.FullName, "tests", "BitBudget.Tests", "PublicApi");
            }
        }
        throw new InvalidOperationException($"No BitBudget.slnx above {AppContext.BaseDirectory}.");
    }
}
