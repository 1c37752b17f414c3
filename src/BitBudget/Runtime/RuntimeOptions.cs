using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Runtime;

/// <summary>Execution provider that ONNX Runtime runs the model on.</summary>
public enum Device
{
    /// <summary>The default CPU provider (MLAS).</summary>
    Cpu,
    /// <summary>NVIDIA CUDA; needs the GPU build (-p:OrtPackage=gpu: Microsoft.ML.OnnxRuntime.Gpu.Linux).</summary>
    Cuda,
    /// <summary>NVIDIA TensorRT; needs the GPU build (-p:OrtPackage=gpu: Microsoft.ML.OnnxRuntime.Gpu.Linux).</summary>
    TensorRT,
    /// <summary>DirectML on Windows; needs the Microsoft.ML.OnnxRuntime.DirectML package.</summary>
    Dml,
}

/// <summary>How ONNX Runtime sessions are created.</summary>
public sealed record RuntimeOptions
{
    /// <summary>Threads inside one operator; 0 lets ONNX Runtime use one per core.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Graph optimization level; exported models are always checked at <see cref="GraphOptimizationLevel.ORT_ENABLE_ALL"/>.</summary>
    public GraphOptimizationLevel Optimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;

    /// <summary>Execution provider.</summary>
    public Device Device { get; init; } = Device.Cpu;

    /// <summary>
    /// Let idle intra-op threads spin for more work. Right for one busy session; wrong when many sessions run one after
    /// another (CLADO's segments), where every session's pool would spin and steal the cores from the next.
    /// </summary>
    public bool AllowSpinning { get; init; } = true;

    /// <summary>
    /// Most bytes the process may hold (resident set); every pass sizes its micro-batches (images per ONNX Runtime run) so the
    /// measured per-image tensor footprint fits beside what is already resident. Default: the smaller of 3 GiB and half the
    /// physical memory.
    /// </summary>
    public long MaxMemory { get; init; } = ProcessMemory.DefaultBudget;

    /// <summary>Images per ONNX Runtime run when positive, instead of what <see cref="MaxMemory"/> allows (tests, benchmarks).</summary>
    public int ImagesPerRun { get; init; }

    /// <summary>
    /// ORT's per-session CPU arena and memory-pattern preallocation. Right for one long-lived session; with dozens of sessions
    /// (CLADO's cones) every arena keeps its own peak, so the measurement turns them off and freed tensors go back to the system.
    /// </summary>
    public bool MemoryArena { get; init; } = true;

    /// <summary>The defaults: all cores, all optimizations, CPU.</summary>
    public static RuntimeOptions Default { get; } = new();

    /// <summary>The most intra-op threads accepted: 4 × the logical cores. More only adds contention, and ORT allocates a stack
    /// and scratch per thread, so a typo like 99999 would exhaust memory instead of running.</summary>
    public static int MaxThreads => 4 * Environment.ProcessorCount;

    /// <summary>This record, or a one-line error naming <paramref name="option"/> when the thread count is negative or above <see cref="MaxThreads"/>.</summary>
    public RuntimeOptions Validated(string option = "IntraOpThreads") =>
        IntraOpThreads >= 0 && IntraOpThreads <= MaxThreads ? this
            : throw Errors.InvalidInput(
                $"{option} {IntraOpThreads} is out of range; expected 0 (one per core) to {MaxThreads} (4 × the {Environment.ProcessorCount} logical cores).");
}
