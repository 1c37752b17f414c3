using BitBudget.Graph;

namespace BitBudget.Rounding;

/// <summary>A Conv input's patches as the columns of a matrix (the path for strided and 1×1 convs, and the reference for the shifted one).</summary>
internal static class Im2Col
{
    /// <summary>Writes one image's patches of one group as rows k = (c, i, j) of a K × <paramref name="m"/> matrix, from column <paramref name="column0"/>; padding is zeros.</summary>
    public static void Write(ReadOnlySpan<float> image, int channels, int h, int w, ConvGeometry p, ConvOutput g, Span<float> destination, int m, int column0)
    {
        int row = 0;
        for (int ch = 0; ch < channels; ch++)
        {
            ReadOnlySpan<float> plane = image.Slice(ch * h * w, h * w);
            for (int i = 0; i < p.Kh; i++)
            {
                for (int j = 0; j < p.Kw; j++, row++)
                {
                    Span<float> target = destination.Slice(row * m + column0, g.OutH * g.OutW);
                    int dx = j * p.DilationW - g.PadLeft;
                    // Output columns whose input x = ox·stride + dx lies inside the image.
                    int oxLo = dx >= 0 ? 0 : (-dx + p.StrideW - 1) / p.StrideW;
                    int oxHi = Math.Min(g.OutW, w - dx <= 0 ? 0 : (w - dx - 1) / p.StrideW + 1);
                    for (int oy = 0; oy < g.OutH; oy++)
                    {
                        Span<float> outRow = target.Slice(oy * g.OutW, g.OutW);
                        int iy = oy * p.StrideH + i * p.DilationH - g.PadTop;
                        if (iy < 0 || iy >= h || oxLo >= oxHi)
                        {
                            outRow.Clear();
                            continue;
                        }
                        outRow[..oxLo].Clear();
                        outRow[oxHi..].Clear();
                        ReadOnlySpan<float> inRow = plane.Slice(iy * w, w);
                        if (p.StrideW == 1)
                        {
                            inRow.Slice(oxLo + dx, oxHi - oxLo).CopyTo(outRow[oxLo..oxHi]);
                        }
                        else
                        {
                            for (int ox = oxLo, ix = oxLo * p.StrideW + dx; ox < oxHi; ox++, ix += p.StrideW) { outRow[ox] = inRow[ix]; }
                        }
                    }
                }
            }
        }
    }
}
