using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Runtime;

/// <summary>The one place where ONNX Runtime sessions are built and ORT failures become <see cref="BitBudgetException"/>s.</summary>
internal static class OrtSessions
{
    public static InferenceSession Create(byte[] model, RuntimeOptions options, string what)
    {
        SessionOptions sessionOptions = CreateOptions(options);
        try
        {
            return new InferenceSession(model, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new BitBudgetException(ErrorKind.Runtime, $"ONNX Runtime cannot load {what}: {OneLine(e.Message)}", e);
        }
        finally
        {
            sessionOptions.Dispose();   // the session keeps its own copy
        }
    }

    public static SessionOptions CreateOptions(RuntimeOptions options)
    {
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
        string package = device == Device.Dml ? "Microsoft.ML.OnnxRuntime.DirectML" : "Microsoft.ML.OnnxRuntime.Gpu";
        if (!OrtEnv.Instance().GetAvailableProviders().Contains(provider))
        {
            throw new BitBudgetException(ErrorKind.Runtime,
                $"Device '{device.ToString().ToLowerInvariant()}' needs {provider}, which the installed ONNX Runtime lacks; build with -p:OrtPackage={package}.");
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
            throw new BitBudgetException(ErrorKind.Runtime, $"Cannot start {provider}: {OneLine(e.Message)}", e);
        }
    }

    public static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
