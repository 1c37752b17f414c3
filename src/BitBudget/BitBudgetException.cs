namespace BitBudget;

/// <summary>What went wrong, in terms a user can act on; each kind maps to its own process exit code.</summary>
public enum ErrorKind
{
    /// <summary>An input file, option or configuration is invalid.</summary>
    InvalidInput = 2,
    /// <summary>The budget cannot be met by any configuration.</summary>
    Infeasible = 3,
    /// <summary>ONNX Runtime or a solver failed on a valid input.</summary>
    Runtime = 4,
    /// <summary>A named file or folder does not exist.</summary>
    FileNotFound = 10,
    /// <summary>A file is not an ONNX model.</summary>
    NotOnnx = 11,
    /// <summary>An ONNX file ends before the model does.</summary>
    TruncatedModel = 12,
    /// <summary>The model has no Conv, Gemm or MatMul with a constant weight.</summary>
    NoQuantizableLayers = 13,
    /// <summary>The model keeps tensors in external data files, which BitBudget does not read yet.</summary>
    ExternalData = 14,
    /// <summary>An output file or folder already exists and would be overwritten.</summary>
    OutputExists = 15,
}

/// <summary>A failure the user can act on; <see cref="Exception.Message"/> is one line.</summary>
public sealed class BitBudgetException(ErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    /// <summary>The kind of failure, which also selects the CLI exit code.</summary>
    public ErrorKind Kind { get; } = kind;
}
