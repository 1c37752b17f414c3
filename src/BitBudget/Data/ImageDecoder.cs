using SkiaSharp;

namespace BitBudget.Data;

/// <summary>Turns one item of a <see cref="DataSource"/> into a normalized tensor, following a <see cref="Preprocessing"/>.</summary>
internal sealed class ImageDecoder(DataSource source, Preprocessing pre)
{
    // Skia's bilinear filter with linear mipmaps approximates PIL's antialiased bilinear downscale
    // (plain bilinear aliases badly when shrinking ImageNet photos by 2× or more).
    static readonly SKSamplingOptions s_sampling = new(SKFilterMode.Linear, SKMipmapMode.Linear);

    /// <summary>Height and width of the produced image, or null when they depend on the file (no crop).</summary>
    public (int Height, int Width)? FixedSize =>
        pre.CenterCrop is int crop ? (crop, crop)
        : source.RawPixels is not null && pre.ResizeShorter is null ? (source.RawHeight, source.RawWidth)
        : null;

    /// <summary>Decodes the item; returns its pixels as RGBA (or grey expanded) bytes with their size, or null when the file cannot be decoded.</summary>
    public (byte[] Rgba, int Height, int Width)? Decode(DataItem item)
    {
        using SKBitmap? bitmap = LoadBitmap(item);
        if (bitmap is null) { return null; }
        using SKBitmap resized = Resize(bitmap);
        int h = resized.Height, w = resized.Width;
        int top = 0, left = 0;
        if (pre.CenterCrop is int crop)
        {
            if (crop > h || crop > w)
            {
                throw Errors.InvalidInput($"Image '{item.Id}' is {w}×{h} after resizing, smaller than the {crop}×{crop} crop.");
            }
            // torchvision: top = round((h - crop) / 2)
            top = (int)Math.Round((h - crop) / 2.0, MidpointRounding.ToEven);
            left = (int)Math.Round((w - crop) / 2.0, MidpointRounding.ToEven);
            h = w = crop;
        }
        var rgba = new byte[h * w * 4];
        ReadOnlySpan<byte> pixels = resized.GetPixelSpan();
        int rowBytes = resized.RowBytes;
        for (int y = 0; y < h; y++)
        {
            pixels.Slice((top + y) * rowBytes + left * 4, w * 4).CopyTo(rgba.AsSpan(y * w * 4, w * 4));
        }
        return (rgba, h, w);
    }

    /// <summary>Writes the normalized tensor of RGBA pixels into <paramref name="destination"/> (C·H·W values).</summary>
    public void Normalize(ReadOnlySpan<byte> rgba, int height, int width, Span<float> destination)
    {
        int plane = height * width, channels = pre.Channels;
        Span<float> mul = stackalloc float[channels], add = stackalloc float[channels];
        for (int c = 0; c < channels; c++)
        {
            mul[c] = pre.Scale / pre.Std[c];
            add[c] = -pre.Mean[c] / pre.Std[c];
        }
        bool nchw = pre.Layout == TensorLayout.Nchw;
        for (int p = 0; p < plane; p++)
        {
            byte r = rgba[p * 4], g = rgba[p * 4 + 1], b = rgba[p * 4 + 2];
            if (channels == 1)
            {
                // ITU-R 601-2 luma, as PIL's "L" mode; exact for grey sources (r = g = b).
                float luma = r == g && g == b ? r : (r * 299 + g * 587 + b * 114) / 1000f;
                destination[p] = luma * mul[0] + add[0];
                continue;
            }
            byte c0 = pre.ChannelOrder == ChannelOrder.Rgb ? r : b, c2 = pre.ChannelOrder == ChannelOrder.Rgb ? b : r;
            if (nchw)
            {
                destination[p] = c0 * mul[0] + add[0];
                destination[plane + p] = g * mul[1] + add[1];
                destination[2 * plane + p] = c2 * mul[2] + add[2];
            }
            else
            {
                destination[p * 3] = c0 * mul[0] + add[0];
                destination[p * 3 + 1] = g * mul[1] + add[1];
                destination[p * 3 + 2] = c2 * mul[2] + add[2];
            }
        }
    }

    SKBitmap? LoadBitmap(DataItem item)
    {
        var info = new SKImageInfo(0, 0, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        if (source.RawPixels is byte[] raw)
        {
            int h = source.RawHeight, w = source.RawWidth, ch = source.RawChannels;
            var bitmap = new SKBitmap(info.WithSize(w, h));
            Span<byte> dst = bitmap.GetPixelSpan();
            ReadOnlySpan<byte> src = raw.AsSpan(item.Row * h * w * ch, h * w * ch);
            for (int p = 0; p < h * w; p++)
            {
                byte r = src[p * ch], g = src[p * ch + (ch == 3 ? 1 : 0)], b = src[p * ch + (ch == 3 ? 2 : 0)];
                dst[p * 4] = r; dst[p * 4 + 1] = g; dst[p * 4 + 2] = b; dst[p * 4 + 3] = 255;
            }
            return bitmap;
        }
        using var codec = SKCodec.Create(item.Id);
        if (codec is null) { return null; }
        var decoded = SKBitmap.Decode(codec, info.WithSize(codec.Info.Width, codec.Info.Height));
        return decoded;
    }

    SKBitmap Resize(SKBitmap bitmap)
    {
        if (pre.ResizeShorter is not int target) { return bitmap.Copy(); }
        int h = bitmap.Height, w = bitmap.Width;
        // torchvision Resize(int): the shorter side becomes target, the longer int(target * long / short).
        (int nh, int nw) = h <= w ? (target, (int)((long)target * w / h)) : ((int)((long)target * h / w), target);
        if (nh == h && nw == w) { return bitmap.Copy(); }
        return bitmap.Resize(new SKImageInfo(nw, nh, SKColorType.Rgba8888, SKAlphaType.Unpremul), s_sampling)
            ?? throw Errors.Runtime($"SkiaSharp could not resize an image of {w}×{h} to {nw}×{nh}.");
    }
}
