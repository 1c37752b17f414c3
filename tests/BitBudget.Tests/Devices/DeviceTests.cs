using System.Diagnostics;
using System.Text.Json;
using BitBudget.Evaluation;
using BitBudget.Graph;
using BitBudget.Quantization;
using BitBudget.Runtime;
using BitBudget.Clado;
using BitBudget.Tests.Support;
using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Tests.Devices;

/// <summary>
/// The GPU build switch and <c>--device cuda</c>. Tests that need CUDA run only in the GPU build (-p:OrtPackage=gpu) on a
/// machine with an NVIDIA device; anywhere else they are reported as skipped, never as passed.
/// </summary>
public class DeviceTests
{
    static bool HasCudaProvider => OrtEnv.Instance().GetAvailableProviders().Contains("CUDAExecutionProvider");

    static void RequireCudaDevice()
    {
        if (!HasCudaProvider) { Assert.Skip("not run: this build of ONNX Runtime has no CUDA provider (build the tests with -p:OrtPackage=gpu)."); }
        if (!File.Exists("/proc/driver/nvidia/version") && !File.Exists("/dev/nvidia0")) { Assert.Skip("not run: no NVIDIA device on this machine."); }
    }

    [Fact]
    public void CudaInTheCpuBuild_NamesTheRealBuildCommand()
    {
        if (HasCudaProvider) { Assert.Skip("not run: this is the GPU build."); }
        var e = Assert.Throws<BitBudgetException>(() => OrtSessions.CreateOptions(RuntimeOptions.Default with { Device = Device.Cuda }));
        Assert.Equal(ErrorKind.Runtime, e.Kind);
        Assert.Contains("dotnet build src/BitBudget.Cli -c Release -p:OrtPackage=gpu", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>The command the error gives really switches the package: MSBuild evaluation of the library with each value.</summary>
    [Theory]
    [InlineData("cpu", "Microsoft.ML.OnnxRuntime", "obj/")]
    [InlineData("gpu", "Microsoft.ML.OnnxRuntime.Gpu.Linux", "obj/gpu/")]
    public void OrtPackagePropertySwitchesThePackage(string value, string package, string intermediate)
    {
        string project = Path.Combine(Assets.RepoRoot, "src", "BitBudget", "BitBudget.csproj");
        var start = new ProcessStartInfo("dotnet", ["msbuild", project, $"-p:OrtPackage={value}", "-getItem:PackageReference", "-getProperty:BaseIntermediateOutputPath", "-getProperty:OrtVersion"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, output + process.StandardError.ReadToEnd());
        using var json = JsonDocument.Parse(output);
        string[] onnx = [.. json.RootElement.GetProperty("Items").GetProperty("PackageReference").EnumerateArray()
            .Select(i => i.GetProperty("Identity").GetString()!).Where(n => n.StartsWith("Microsoft.ML.OnnxRuntime", StringComparison.Ordinal))];
        Assert.Equal([package], onnx);
        Assert.EndsWith(intermediate, json.RootElement.GetProperty("Properties").GetProperty("BaseIntermediateOutputPath").GetString()!.Replace('\\', '/'), StringComparison.Ordinal);
        Assert.Equal("1.32.0", json.RootElement.GetProperty("Properties").GetProperty("OrtVersion").GetString());
    }

    [Fact]
    public void CudaEvaluationMatchesCpu()
    {
        RequireCudaDevice();
        OnnxModel model = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20)).Prepared;
        using var cpu = EvaluationEngine.Create(model);
        using var cuda = EvaluationEngine.Create(model, RuntimeOptions.Default with { Device = Device.Cuda });
        float[] a = cpu.Logits(SharedData.Eran100), b = cuda.Logits(SharedData.Eran100);
        float scale = a.Max(MathF.Abs);
        Assert.All(Enumerable.Range(0, a.Length), i => Assert.True(MathF.Abs(a[i] - b[i]) <= 1e-3f * scale, $"logit {i}: {a[i]} vs {b[i]}"));
        Assert.Equal(cpu.Evaluate(SharedData.Eran100).Top1, cuda.Evaluate(SharedData.Eran100).Top1);
    }

    [Fact]
    public void CudaCladoMeasurementMatchesCpu()
    {
        RequireCudaDevice();
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(Assets.ResNet20));
        var config = BitConfig.Uniform(8).Resolve(summary.Layers).Select(c => c with { ActivationBits = 0, Searchable = c.LayerIndex is >= 1 and < 5 }).ToArray();
        var input = new SensitivityInput(prepared, summary.Layers, config, new QuantizedWeights(prepared, summary.Layers), null, SharedData.CifarTrain(32, seed: 5));
        var options = new SensitivityOptions { Pairs = PairSelection.All, BatchSize = 32 };
        SensitivityResult onCpu = CladoSensitivity.Measure(input, options);
        SensitivityResult onCuda = CladoSensitivity.Measure(input, options with { Runtime = RuntimeOptions.Default with { Device = Device.Cuda } });
        double scale = onCpu.Omega.ToRowMajorArray().Max(Math.Abs);
        Assert.All(Enumerable.Range(0, onCpu.Omega.AsSpan().Length), i => Assert.True(Math.Abs(onCpu.Omega.AsSpan()[i] - onCuda.Omega.AsSpan()[i]) <= 1e-2 * scale, $"Ω[{i}]: {onCpu.Omega.AsSpan()[i]} vs {onCuda.Omega.AsSpan()[i]}"));
    }
}
