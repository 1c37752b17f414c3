using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Runtime;

/// <summary>The one place where ONNX Runtime sessions are built and ORT failures become <see cref="BitBudgetException"/>s.</summary>
internal static class OrtSessions
{
    public static InferenceSession Create(byte[] model, RuntimeOptions options, string what) => Create(model, options, what, null, []);

    /// <summary>A session that takes the weights named in <paramref name="shared"/> from <paramref name="weights"/> instead of from the model.</summary>
    public static InferenceSession Create(byte[] model, RuntimeOptions options, string what, SharedWeights? weights, IEnumerable<string> shared)
    {
        SessionOptions sessionOptions = CreateOptions(options);
        try
        {
            if (weights is null) { return new InferenceSession(model, sessionOptions); }
            weights.AddTo(sessionOptions, shared);
            return new InferenceSession(model, sessionOptions, weights.PrePacked);
        }
        catch (OnnxRuntimeException e)
        {
            throw Errors.Runtime($"ONNX Runtime cannot load {what}: {OneLine(e.Message)}", e);
        }
        finally
        {
            sessionOptions.Dispose();   // the session keeps its own copy
        }
    }

    public static SessionOptions CreateOptions(RuntimeOptions options)
    {
        options.Validated();
        var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = options.Optimization,
            IntraOpNumThreads = options.IntraOpThreads,
            InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
            EnableCpuMemArena = options.MemoryArena,
            EnableMemoryPattern = options.MemoryArena,
        };
        try
        {
            if (!options.AllowSpinning) { sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); }
            AppendProvider(sessionOptions, options.Device);
            return sessionOptions;
        }
        catch
        {
            sessionOptions.Dispose();
            throw;
        }
    }

    static void AppendProvider(SessionOptions sessionOptions, Device device)
    {
        if (device == Device.Cpu) { return; }
        string provider = device switch
        {
            Device.Cuda => "CUDAExecutionProvider",
            Device.TensorRT => "TensorrtExecutionProvider",
            _ => "DmlExecutionProvider",
        };
        if (!OrtEnv.Instance().GetAvailableProviders().Contains(provider))
        {
            // The advice names the real build switch (Directory.Build.props reads OrtPackage; BitBudget.csproj picks the package).
            string advice = device == Device.Dml
                ? "DirectML is the Windows package Microsoft.ML.OnnxRuntime.DirectML, which this build does not offer"
                : $"build the CUDA one: {GpuBuildCommand}";
            throw Errors.Runtime(
                $"Device '{device.ToString().ToLowerInvariant()}' needs {provider}, which this build of ONNX Runtime (CPU) lacks; {advice}.");
        }
        try
        {
            switch (device)
            {
                case Device.Cuda: sessionOptions.AppendExecutionProvider_CUDA(0); break;
                case Device.TensorRT: sessionOptions.AppendExecutionProvider_Tensorrt(0); break;
                default: sessionOptions.AppendExecutionProvider_DML(0); break;
            }
        }
        catch (OnnxRuntimeException e)
        {
            // Measured on 1.32.0 without a GPU: the provider library fails to load libcublasLt.so.13 (ldd lists CUDA 13's cudart, cublas, cublasLt, curand and the driver's libcuda).
            string needs = device == Device.Dml ? "" : $" (the CUDA provider of ONNX Runtime {OrtVersion} needs an NVIDIA driver and the CUDA libraries `ldd libonnxruntime_providers_cuda.so` lists; 1.32 links CUDA 13)";
            throw Errors.Runtime($"Cannot start {provider}: {OneLine(e.Message)}{needs}", e);
        }
    }

    /// <summary>How to build the CLI with the CUDA/TensorRT build of ONNX Runtime (Microsoft.ML.OnnxRuntime.Gpu.Linux).</summary>
    public const string GpuBuildCommand = "dotnet build src/BitBudget.Cli -c Release -p:OrtPackage=gpu (binary in src/BitBudget.Cli/bin/gpu/Release/net10.0/), or BITBUDGET_ORT=gpu ./bitbudget";

    /// <summary>Version of the loaded ONNX Runtime managed assembly.</summary>
    public static string OrtVersion => typeof(InferenceSession).Assembly.GetName().Version?.ToString(3) ?? "?";

    public static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
