using System.Runtime.InteropServices;
using BitBudget.Graph.Onnx;
using Google.Protobuf;

namespace BitBudget.Graph;

/// <summary>Reads and writes the payload of ONNX tensors (raw_data or the typed repeated fields).</summary>
internal static class TensorData
{
    public static long ElementCount(TensorProto tensor)
    {
        long count = 1;
        foreach (long d in tensor.Dims) { count *= d; }
        return count;
    }

    public static long[] Shape(TensorProto tensor) => [.. tensor.Dims];

    public static bool IsExternal(TensorProto tensor) =>
        tensor.DataLocation == TensorProto.Types.DataLocation.External || tensor.ExternalData.Count > 0;

    public static float[] ReadFloats(TensorProto tensor)
    {
        long n = ElementCount(tensor);
        var result = new float[n];
        switch ((TensorProto.Types.DataType)tensor.DataType)
        {
            case TensorProto.Types.DataType.Float when tensor.HasRawData:
                MemoryMarshal.Cast<byte, float>(tensor.RawData.Span).CopyTo(result);
                break;
            case TensorProto.Types.DataType.Float:
                tensor.FloatData.CopyTo(result, 0);
                break;
            case TensorProto.Types.DataType.Double when tensor.HasRawData:
                ReadOnlySpan<double> raw = MemoryMarshal.Cast<byte, double>(tensor.RawData.Span);
                for (int i = 0; i < n; i++) { result[i] = (float)raw[i]; }
                break;
            case TensorProto.Types.DataType.Double:
                for (int i = 0; i < n; i++) { result[i] = (float)tensor.DoubleData[i]; }
                break;
            default:
                throw Errors.InvalidInput(
                    $"Tensor '{tensor.Name}' has element type {(TensorProto.Types.DataType)tensor.DataType}; a float weight was expected.");
        }
        return result;
    }

    public static long[] ReadInt64s(TensorProto tensor)
    {
        long n = ElementCount(tensor);
        var result = new long[n];
        switch ((TensorProto.Types.DataType)tensor.DataType)
        {
            case TensorProto.Types.DataType.Int64 when tensor.HasRawData:
                MemoryMarshal.Cast<byte, long>(tensor.RawData.Span).CopyTo(result);
                break;
            case TensorProto.Types.DataType.Int64:
                tensor.Int64Data.CopyTo(result, 0);
                break;
            case TensorProto.Types.DataType.Int32 when tensor.HasRawData:
                ReadOnlySpan<int> raw = MemoryMarshal.Cast<byte, int>(tensor.RawData.Span);
                for (int i = 0; i < n; i++) { result[i] = raw[i]; }
                break;
            case TensorProto.Types.DataType.Int32:
                for (int i = 0; i < n; i++) { result[i] = tensor.Int32Data[i]; }
                break;
            default:
                throw Errors.InvalidInput(
                    $"Tensor '{tensor.Name}' has element type {(TensorProto.Types.DataType)tensor.DataType}; an integer tensor was expected.");
        }
        return result;
    }

    public static TensorProto Float(string name, ReadOnlySpan<long> dims, ReadOnlySpan<float> values)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        foreach (long d in dims) { tensor.Dims.Add(d); }
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        return tensor;
    }

    public static TensorProto Int64(string name, ReadOnlySpan<long> dims, ReadOnlySpan<long> values)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Int64 };
        foreach (long d in dims) { tensor.Dims.Add(d); }
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
        return tensor;
    }

    /// <summary>A tensor of <paramref name="dataType"/> whose raw payload is <paramref name="raw"/> (already packed for sub-byte types).</summary>
    public static TensorProto Raw(string name, TensorProto.Types.DataType dataType, ReadOnlySpan<long> dims, ReadOnlySpan<byte> raw)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)dataType };
        foreach (long d in dims) { tensor.Dims.Add(d); }
        tensor.RawData = ByteString.CopyFrom(raw);
        return tensor;
    }

    /// <summary>Replaces the float payload of <paramref name="tensor"/> in place, keeping its name and shape.</summary>
    public static void SetFloats(TensorProto tensor, ReadOnlySpan<float> values)
    {
        tensor.FloatData.Clear();
        tensor.DoubleData.Clear();
        tensor.DataType = (int)TensorProto.Types.DataType.Float;
        tensor.RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values));
    }
}
