using System.Globalization;

namespace BitBudget.Data;

/// <summary>What the model input shape says about the preprocessing: the layout, and a preset when none is given.</summary>
public static class InputLayout
{
    /// <summary>
    /// The layout of a 4-D image input when only one reading fits: [N,C,H,W] or [N,H,W,C] with C = 1 or 3 and
    /// H, W &gt; 4; null when the shape is not 4-D or both (or neither) readings fit.
    /// </summary>
    public static TensorLayout? Detect(IReadOnlyList<long> shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (shape.Count != 4) { return null; }
        bool nchw = shape[1] is 1 or 3 && shape[2] > 4 && shape[3] > 4;
        bool nhwc = shape[3] is 1 or 3 && shape[1] > 4 && shape[2] > 4;
        return nchw == nhwc ? null : nchw ? TensorLayout.Nchw : TensorLayout.Nhwc;
    }

    /// <summary>
    /// The preset an input shape suggests (1 channel: mnist; 3 channels up to 64 pixels: cifar10; 224: imagenet), in the
    /// detected layout, with the reason in words.
    /// </summary>
    /// <exception cref="BitBudgetException">The shape suggests no preset.</exception>
    public static (string Preset, Preprocessing Preprocessing, string Reason) Guess(IReadOnlyList<long> shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        TensorLayout? layout = Detect(shape);
        if (layout is TensorLayout l)
        {
            (long c, long h, long w) = l == TensorLayout.Nchw ? (shape[1], shape[2], shape[3]) : (shape[3], shape[1], shape[2]);
            string? preset = c == 1 ? "mnist" : h <= 64 && w <= 64 ? "cifar10" : h == 224 && w == 224 ? "imagenet" : null;
            if (preset is not null)
            {
                string what = c == 1 ? "1 channel" : $"3 channels, {h}×{w}";
                string reason = $"guessed from the model input {Text(shape)} ({what}{(l == TensorLayout.Nhwc ? ", channels-last" : "")})";
                return (preset, Preprocessing.FromPreset(preset) with { Layout = l }, reason);
            }
        }
        throw Errors.InvalidInput(
            $"Cannot guess the preprocessing for input shape {Text(shape)}; pass --preset or --preprocess.");
    }

    /// <summary>
    /// <paramref name="pre"/> in the layout the model input needs when the shape is unambiguous and says otherwise
    /// (a channels-last model with an NCHW preset), with a note saying so; unchanged with a null note otherwise.
    /// </summary>
    public static (Preprocessing Preprocessing, string? Note) Adapt(Preprocessing pre, IReadOnlyList<long> shape)
    {
        ArgumentNullException.ThrowIfNull(pre);
        ArgumentNullException.ThrowIfNull(shape);
        if (Detect(shape) is not TensorLayout detected || detected == pre.Layout) { return (pre, null); }
        long channels = detected == TensorLayout.Nchw ? shape[1] : shape[3];
        if (channels != pre.Channels) { return (pre, null); }   // another mismatch: the input check names it
        return (pre with { Layout = detected },
            $"layout {(detected == TensorLayout.Nhwc ? "NHWC (channels-last)" : "NCHW")} detected from the model input {Text(shape)}");
    }

    static string Text(IReadOnlyList<long> shape) =>
        "[" + string.Join(",", shape.Select(d => d <= 0 ? "N" : d.ToString(CultureInfo.InvariantCulture))) + "]";
}
