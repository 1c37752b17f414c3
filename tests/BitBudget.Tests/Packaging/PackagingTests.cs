using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Packaging;

/// <summary>
/// Issue 20, packaging: the library packs as the NuGet package "BitBudget" and the CLI as the .NET tool "BitBudget.Cli"
/// (command <c>bitbudget</c>); both are installed from a local folder and used as a user would. Slow (a pack, a tool
/// install, a small console build): they run in ./test.sh and CI; BITBUDGET_PACKAGE_TEST=0 skips them outside CI.
/// Each run packs a unique prerelease version, so NuGet's cache never hands back an earlier run's package, and removes it
/// from the cache afterwards. Fast by construction: both packages are packed once per test run (the library from the
/// build under test, without building or restoring again), and every install and restore reads only the local folder
/// and NuGet's global cache (a nuget.config that clears the user's sources), so nothing waits on the network.
/// </summary>
public sealed class PackagingTests
{
    static readonly Lazy<Feed> s_feed = new(Feed.Pack);

    static Feed Packed()
    {
        string? value = Environment.GetEnvironmentVariable("BITBUDGET_PACKAGE_TEST");
        bool ci = string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);
        if (value == "0" && !ci) { Assert.Skip("BITBUDGET_PACKAGE_TEST=0: packaging tests not run."); }
        return s_feed.Value;
    }

    [Fact]
    public void Tool_InstallsFromTheLocalFolder_AndRunsVersionAndInspect()
    {
        string mnist = Assets.Mnist8;
        Feed feed = Packed();
        using var dir = new Assets.TempDir();
        string tools = dir.File("tools");
        Run out1 = Exec(dir.Path, "dotnet", "tool", "install", "BitBudget.Cli", "--tool-path", tools, "--configfile", feed.Config, "--version", feed.Version);
        Assert.True(out1.Code == 0, out1.ToString());
        try
        {
            string bitbudget = Path.Combine(tools, "bitbudget");
            Assert.True(File.Exists(bitbudget), $"the tool has no 'bitbudget' command in {tools}");

            Run version = Exec(dir.Path, bitbudget, "--version");
            Assert.True(version.Code == 0, version.ToString());
            Assert.Matches(@"^\d+\.\d+\.\d+", version.Out.Trim());

            Run inspect = Exec(dir.Path, bitbudget, "inspect", mnist);
            Assert.True(inspect.Code == 0, inspect.ToString());
            Assert.Contains("3 quantizable layers", inspect.Out, StringComparison.Ordinal);

            Run json = Exec(dir.Path, bitbudget, "inspect", mnist, "--json");
            Assert.True(json.Code == 0, json.ToString());
            using var doc = System.Text.Json.JsonDocument.Parse(json.Out);
            Assert.Equal(5960, doc.RootElement.GetProperty("total_weights").GetInt64());   // README: mnist-8 has 5,960 weights

            Run missing = Exec(dir.Path, bitbudget, "inspect", dir.File("missing.onnx"));
            Assert.Equal(10, missing.Code);
            Assert.StartsWith("error:", missing.Err.Trim(), StringComparison.Ordinal);
        }
        finally
        {
            Feed.ForgetCached("bitbudget.cli", feed.Version);
            Feed.ForgetCached($"bitbudget.cli.{RuntimeInformation.RuntimeIdentifier}", feed.Version);
        }
    }

    /// <summary>
    /// The README's "From C#" block, extracted from README.md at test time, compiled against the package and run on
    /// ResNet-20. Only the samples are cut, calibration from 512 to 64 images and sensitivity from 256 to 16 (CLADO's 1,770
    /// evaluations on 256 images take minutes), and the test folder holds 10 images per class; everything else runs as written.
    /// </summary>
    [Fact]
    public void Library_ReadmeExample_CompilesAgainstThePackageAndRuns()
    {
        string resnet = Assets.ResNet20, train = Assets.Require("cifar10/train-5k"), test = Assets.Require("cifar10/test");
        Feed feed = Packed();
        using var dir = new Assets.TempDir();
        string code = ReadmeExample();
        code = Regex.Replace(code, @"(MeasureSensitivity\(\s*\w+\.Sample\()\s*\d+", "${1}16");
        code = Regex.Replace(code, @"(Calibrate\(\s*\w+\.Sample\()\s*\d+", "${1}64");
        Assert.Contains("Sample(16", code, StringComparison.Ordinal);
        Assert.Contains("Sample(64", code, StringComparison.Ordinal);

        string app = dir.File("app");
        Directory.CreateDirectory(app);
        File.WriteAllText(Path.Combine(app, "Program.cs"), code);
        File.WriteAllText(Path.Combine(app, "ReadmeExample.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <ImplicitUsings>enable</ImplicitUsings>
                <Nullable>enable</Nullable>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="BitBudget" Version="{feed.Version}" />
              </ItemGroup>
            </Project>
            """);
        File.Copy(feed.Config, Path.Combine(app, "nuget.config"));
        // The example's relative paths: the model, the training images, and a small test folder (10 images per class).
        File.CreateSymbolicLink(Path.Combine(app, "resnet20.onnx"), resnet);
        Directory.CreateSymbolicLink(Path.Combine(app, "train-5k"), train);
        foreach (string cls in Directory.GetDirectories(test))
        {
            string target = Path.Combine(app, "test", Path.GetFileName(cls));
            Directory.CreateDirectory(target);
            foreach (string image in Directory.GetFiles(cls).Order(StringComparer.Ordinal).Take(10))
            {
                File.CreateSymbolicLink(Path.Combine(target, Path.GetFileName(image)), image);
            }
        }
        try
        {
            Run run = Exec(app, "dotnet", "run", "-c", "Release");
            Assert.True(run.Code == 0, run.ToString());
            string last = run.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
            double top1 = double.Parse(last, CultureInfo.InvariantCulture);
            Assert.InRange(top1, 50, 100);   // ResNet-20 at 3.5 bits, 100 test images (81 % on all 10k with 256 sensitivity images)
            Assert.True(File.Exists(Path.Combine(app, "resnet20-3.5bits.onnx")));
        }
        finally
        {
            Feed.ForgetCached("bitbudget", feed.Version);
        }
    }

    [Fact]
    public void LibraryPackage_HasDocsReadmeAndDependencies()
    {
        Feed feed = Packed();
        using var zip = System.IO.Compression.ZipFile.OpenRead(Path.Combine(feed.Folder, $"BitBudget.{feed.Version}.nupkg"));
        string[] entries = [.. zip.Entries.Select(e => e.FullName)];
        Assert.Contains("lib/net10.0/BitBudget.Core.dll", entries);
        Assert.Contains("lib/net10.0/BitBudget.Core.xml", entries);
        Assert.Contains("README.md", entries);
        using var nuspec = new StreamReader(zip.GetEntry("BitBudget.nuspec")!.Open());
        string text = nuspec.ReadToEnd();
        Assert.Contains("<readme>README.md</readme>", text, StringComparison.Ordinal);
        Assert.Contains("id=\"Microsoft.ML.OnnxRuntime\"", text, StringComparison.Ordinal);
        Assert.Contains("<repository type=\"git\"", text, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(feed.Folder, $"BitBudget.{feed.Version}.snupkg")), "no symbols package");
    }

    /// <summary>The C# block under the README's "### From C#" heading.</summary>
    internal static string ReadmeExample()
    {
        string readme = File.ReadAllText(Path.Combine(Assets.RepoRoot, "README.md"));
        Match m = Regex.Match(readme, @"### From C#\s*\n+```csharp\n(?<code>.*?)\n```", RegexOptions.Singleline);
        Assert.True(m.Success, "README.md has no ```csharp block under '### From C#'");
        return m.Groups["code"].Value + "\n";
    }

    sealed record Feed(string Folder, string Version)
    {
        /// <summary>A nuget.config that reads only the local folder (packages already in NuGet's global cache need no source).</summary>
        public string Config => Path.Combine(Folder, "nuget.config");

        /// <summary>Packs the library (from the build the tests run on) and the tool for this platform into one folder.</summary>
        public static Feed Pack()
        {
            string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
            string version = "1.0.0-test." + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);
            // Feeds of earlier runs (tens of MB each) go once a day has passed; a run still going would be younger.
            foreach (string old in Directory.GetDirectories(Path.GetTempPath(), "bitbudget-feed-*"))
            {
                try { if (Directory.GetCreationTimeUtc(old) < DateTime.UtcNow.AddDays(-1)) { Directory.Delete(old, recursive: true); } } catch (IOException) { }
            }
            string folder = Path.Combine(Path.GetTempPath(), "bitbudget-feed-" + version);
            Directory.CreateDirectory(folder);
            string root = Assets.RepoRoot;
            // The library as built for the tests (--no-build implies --no-restore).
            Run library = Exec(root, "dotnet", "pack", "src/BitBudget/BitBudget.csproj", "-c", configuration, "--no-build", "-o", folder, $"-p:PackageVersion={version}");
            Assert.True(library.Code == 0, library.ToString());
            // The tool builds its per-platform package (a publish for the RID, which --no-build cannot give). On linux-x64, the
            // project's default platform, the solution's restore already holds that RID, so no restore runs again.
            string rid = RuntimeInformation.RuntimeIdentifier;
            string[] tool = rid == "linux-x64"
                ? ["pack", "src/BitBudget.Cli/BitBudget.Cli.csproj", "-c", configuration, "--no-restore", "-o", folder, $"-p:PackageVersion={version}"]
                : ["pack", "src/BitBudget.Cli/BitBudget.Cli.csproj", "-c", configuration, "-o", folder, $"-p:PackageVersion={version}", $"-p:RuntimeIdentifiers={rid}"];
            Run packed = Exec(root, "dotnet", tool);
            Assert.True(packed.Code == 0, packed.ToString());
            File.WriteAllText(Path.Combine(folder, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local" value="{folder}" />
                  </packageSources>
                </configuration>
                """);
            return new Feed(folder, version);
        }

        /// <summary>Removes one test version of a package from NuGet's global cache (hundreds of MB for the tool).</summary>
        public static void ForgetCached(string id, string version)
        {
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } env
                ? env : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            string path = Path.Combine(cache, id.ToLowerInvariant(), version.ToLowerInvariant());
            try { if (Directory.Exists(path)) { Directory.Delete(path, recursive: true); } } catch (IOException) { }
        }
    }

    sealed record Run(int Code, string Out, string Err)
    {
        public override string ToString() => $"exit {Code}\n--- stdout\n{Out}\n--- stderr\n{Err}";
    }

    static Run Exec(string workingDirectory, string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) { info.ArgumentList.Add(a); }
        info.Environment["NO_COLOR"] = "1";
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        info.Environment["NUGET_XMLDOC_MODE"] = "skip";   // extracting a package skips the XML docs of its dependencies
        using Process process = Process.Start(info)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in 10 minutes");
        }
        process.WaitForExit();
        return new Run(process.ExitCode, stdout.Result, stderr.Result);
    }
}
