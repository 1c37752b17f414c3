using BitBudget.Graph.Onnx;

namespace BitBudget.Export;

/// <summary>
/// ONNX storage of quantized integers. INT4 packs two values per byte and INT2 four, first element in the least
/// significant bits (onnx.ai/onnx/technical/int4.html, int2.html); a partial last byte is zero-padded.
/// </summary>
internal static class SubBytePacking
{
    /// <summary>The element type and raw bytes for <paramref name="bits"/>-bit integers: int8 for 5–8, INT4 for 3–4, INT2 for 2.</summary>
    public static (TensorProto.Types.DataType Type, byte[] Payload) Pack(ReadOnlySpan<sbyte> values, int bits) => bits switch
    {
        2 => (TensorProto.Types.DataType.Int2, PackFields(values, 2)),
        3 or 4 => (TensorProto.Types.DataType.Int4, PackFields(values, 4)),
        >= 5 and <= 8 => (TensorProto.Types.DataType.Int8, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values).ToArray()),
        _ => throw new ArgumentOutOfRangeException(nameof(bits), bits, "Weight bits must be 2–8."),
    };

    public static byte[] PackFields(ReadOnlySpan<sbyte> values, int width)
    {
        int perByte = 8 / width, mask = (1 << width) - 1;
        var packed = new byte[(values.Length + perByte - 1) / perByte];
        for (int i = 0; i < values.Length; i++)
        {
            packed[i / perByte] |= (byte)((values[i] & mask) << (i % perByte * width));
        }
        return packed;
    }

    /// <summary>Inverse of <see cref="PackFields"/> for tests: sign-extends each field.</summary>
    public static sbyte[] Unpack(ReadOnlySpan<byte> packed, int width, int count)
    {
        int perByte = 8 / width, mask = (1 << width) - 1, shift = 32 - width;
        var values = new sbyte[count];
        for (int i = 0; i < count; i++)
        {
            int field = (packed[i / perByte] >> (i % perByte * width)) & mask;
            values[i] = (sbyte)((field << shift) >> shift);
        }
        return values;
    }
}
