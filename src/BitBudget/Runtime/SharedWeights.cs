using Microsoft.ML.OnnxRuntime;

namespace BitBudget.Runtime;

/// <summary>
/// Weights several sessions of one process read unchanged (CLADO's cone sessions all carry the model's float weights),
/// held once. Each weight is one pinned <see cref="OrtValue"/> handed to every session through
/// <see cref="SessionOptions.AddInitializer"/>, and the session's model refers to it as external data in <see cref="File"/>
/// instead of embedding a copy: ORT would otherwise keep the embedded copy in its graph for the session's lifetime (measured
/// on ResNet-18: 33 MB per cone session with AddInitializer alone, 53 MB without sharing). Kernels' pre-packed forms go into
/// one shared container. Must outlive every session built with it.
/// </summary>
internal sealed class SharedWeights : IDisposable
{
    readonly Dictionary<string, (OrtValue Value, long Offset, long Length)> _weights = new(StringComparer.Ordinal);
    readonly string _folder;

    /// <summary>Writes <paramref name="weights"/> to a temporary file and pins them for sharing.</summary>
    public SharedWeights(IEnumerable<(string Name, float[] Values, long[] Dims)> weights)
    {
        _folder = Directory.CreateTempSubdirectory("bitbudget-weights-").FullName;
        try
        {
            using var stream = new FileStream(System.IO.Path.Combine(_folder, FileName), FileMode.CreateNew, FileAccess.Write);
            foreach ((string name, float[] values, long[] dims) in weights)
            {
                long offset = (stream.Position + 63) / 64 * 64;   // aligned, as ORT prefers for external data
                stream.Position = offset;
                stream.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
                _weights[name] = (OrtValue.CreateTensorValueFromMemory(values, dims), offset, values.Length * (long)sizeof(float));   // pins the array
                Bytes += values.Length * (long)sizeof(float);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The external-data file name the sessions' models refer to (in the folder ORT is told about).</summary>
    public const string FileName = "shared-weights.bin";

    /// <summary>Pre-packed weights shared by the sessions (ORT keys them by the weight's content).</summary>
    public PrePackedWeightsContainer PrePacked { get; } = new();

    /// <summary>Bytes of the shared weights.</summary>
    public long Bytes { get; }

    /// <summary>How many weights are shared.</summary>
    public int Count => _weights.Count;

    /// <summary>Whether <paramref name="name"/> is one of the shared weights.</summary>
    public bool Contains(string name) => _weights.ContainsKey(name);

    /// <summary>Where weight <paramref name="name"/> lies in <see cref="FileName"/>.</summary>
    public (long Offset, long Length) Location(string name) => (_weights[name].Offset, _weights[name].Length);

    /// <summary>Hands the shared weights named in <paramref name="names"/> to a session's options.</summary>
    public void AddTo(SessionOptions options, IEnumerable<string> names)
    {
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", _folder);
        foreach (string name in names) { options.AddInitializer(name, _weights[name].Value); }
    }

    /// <summary>
    /// Deletes the external-data file once every session is built (the sessions hold the pinned values, not the file), so a
    /// process killed while measuring leaves nothing behind.
    /// </summary>
    public void SessionsBuilt()
    {
        try { Directory.Delete(_folder, recursive: true); }
        catch (IOException) { }                    // a temporary folder; nothing else depends on it
        catch (UnauthorizedAccessException) { }
    }

    public void Dispose()
    {
        foreach (var w in _weights.Values) { w.Value.Dispose(); }
        _weights.Clear();
        PrePacked.Dispose();
        SessionsBuilt();
    }
}
