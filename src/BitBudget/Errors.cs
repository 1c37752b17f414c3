namespace BitBudget;

/// <summary>
/// The one place a <see cref="BitBudgetException"/> is made: one factory per <see cref="ErrorKind"/>, used as
/// <c>throw Errors.InvalidInput($"…")</c>. They return the exception rather than throw it, so the <c>throw</c> stays at the
/// call site: the compiler's flow analysis still sees it, it works in expressions (<c>?? throw</c>, switch arms) and the
/// stack trace starts where the problem was found. Messages are one line (the CLI prints them after <c>error:</c>).
/// </summary>
internal static class Errors
{
    /// <summary><see cref="ErrorKind.InvalidInput"/>: an input file, option or configuration is invalid.</summary>
    public static BitBudgetException InvalidInput(string message, Exception? inner = null) => new(ErrorKind.InvalidInput, message, inner);

    /// <summary><see cref="ErrorKind.Infeasible"/>: no configuration meets the budget.</summary>
    public static BitBudgetException Infeasible(string message, Exception? inner = null) => new(ErrorKind.Infeasible, message, inner);

    /// <summary><see cref="ErrorKind.Runtime"/>: ONNX Runtime or a solver failed on a valid input.</summary>
    public static BitBudgetException Runtime(string message, Exception? inner = null) => new(ErrorKind.Runtime, message, inner);

    /// <summary><see cref="ErrorKind.FileNotFound"/>: a named file or folder does not exist.</summary>
    public static BitBudgetException FileNotFound(string message, Exception? inner = null) => new(ErrorKind.FileNotFound, message, inner);

    /// <summary><see cref="ErrorKind.NotOnnx"/>: a file is not an ONNX model.</summary>
    public static BitBudgetException NotOnnx(string message, Exception? inner = null) => new(ErrorKind.NotOnnx, message, inner);

    /// <summary><see cref="ErrorKind.TruncatedModel"/>: an ONNX file ends before the model does.</summary>
    public static BitBudgetException TruncatedModel(string message, Exception? inner = null) => new(ErrorKind.TruncatedModel, message, inner);

    /// <summary><see cref="ErrorKind.NoQuantizableLayers"/>: the model has no Conv, Gemm or MatMul with a constant weight.</summary>
    public static BitBudgetException NoQuantizableLayers(string message, Exception? inner = null) => new(ErrorKind.NoQuantizableLayers, message, inner);

    /// <summary><see cref="ErrorKind.ExternalData"/>: the model keeps tensors in external data files.</summary>
    public static BitBudgetException ExternalData(string message, Exception? inner = null) => new(ErrorKind.ExternalData, message, inner);

    /// <summary><see cref="ErrorKind.OutputExists"/>: an output file or folder exists and would be overwritten.</summary>
    public static BitBudgetException OutputExists(string message, Exception? inner = null) => new(ErrorKind.OutputExists, message, inner);
}
