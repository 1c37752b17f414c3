using System.Buffers;
using System.Numerics.Tensors;
using BitBudget.Graph;

namespace BitBudget.Rounding;

/// <summary>
/// H of a stride-1 Conv from shifted channel products instead of im2col.
/// </summary>
/// <remarks>
/// Patch entry (c, i, j) at output position p is x̃_c(p + d), d = (i·dilH − padTop, j·dilW − padLeft), x̃ zero outside the image.
/// So the H block of kernel offsets (d1, d2) is Σ x_c(q)·x_c'(q + δ), δ = d2 − d1, over q in R = (P + d1) ∩ image ∩ (image − δ).
/// It depends on d1 only through R, which differs from V = image ∩ (image − δ) by a few border rows and columns. So each distinct δ
/// costs one Cg × Cg product over every position of every image (the cross-correlation on V), and every block is that product
/// minus the excluded rows and columns plus their crossings (inclusion–exclusion). Blocks with idx(d2) ≥ idx(d1) suffice (H is
/// symmetric), which needs only δ in the non-negative half: 13 products for a 3×3 kernel where im2col multiplies 81 blocks.
/// <para>
/// Layout: one group's channels position-major, rows of the chunk's images interleaved — [H][images][W + padW][Cg], padW = the
/// largest |δx| zero columns after each image row. A shift by δ is then the flat offset (δy·images·(W + padW) + δx)·Cg: a column
/// shifted past either edge of its row lands in zeros, a row shifted past the bottom leaves the buffer, so the product over V is
/// AᵀB of two contiguous M × Cg views of the same buffer: one Gemm per δ, no copies.
/// </para>
/// </remarks>
internal sealed class ShiftedConvGram
{
    /// <summary>Rows [Top, Bottom) × columns [Left, Right) of the image.</summary>
    readonly record struct Rect(int Top, int Bottom, int Left, int Right)
    {
        public int Area => Math.Max(0, Bottom - Top) * Math.Max(0, Right - Left);
        public bool IsEmpty => Bottom <= Top || Right <= Left;
        public Rect Intersect(Rect o) => new(Math.Max(Top, o.Top), Math.Min(Bottom, o.Bottom), Math.Max(Left, o.Left), Math.Min(Right, o.Right));
    }

    /// <summary>H block of kernel offsets t1 ≤ t2 (index i·kw + j): its shift's product plus Σ sign·piece.</summary>
    sealed record Block(int T1, int T2, (int Piece, int Sign)[] Corrections);

    /// <summary>One δ = (Dy, Dx) with the blocks it serves.</summary>
    sealed record Shift(int Dy, int Dx, Block[] Blocks);

    /// <summary>A border rectangle of positions q whose products x(q)·x(q + δ)ᵀ a block must remove or add back.</summary>
    readonly record struct Piece(int Shift, Rect Rect);

    readonly int _h, _w, _cg, _kernel, _padW;
    readonly Shift[] _shifts;
    readonly Piece[] _pieces;
    readonly int _maxPieceArea;
    /// <summary>Per kernel offset t: the image rectangle its patch entries read, (P + d_t) ∩ image (for the column sums).</summary>
    readonly Rect[] _reads;

    ShiftedConvGram(int h, int w, int cg, int kernel, int padW, Shift[] shifts, Piece[] pieces, Rect[] reads)
    {
        (_h, _w, _cg, _kernel, _padW, _shifts, _pieces, _reads) = (h, w, cg, kernel, padW, shifts, pieces, reads);
        _maxPieceArea = pieces.Length == 0 ? 0 : pieces.Max(p => p.Rect.Area);
    }

    /// <summary>Floats of one image of one group in the shifted layout.</summary>
    public int ImageFloats => _h * (_w + _padW) * _cg;

    /// <summary>
    /// The shifted plan for a stride-1 conv on <paramref name="h"/> × <paramref name="w"/> inputs with <paramref name="cg"/> channels
    /// per group, or null when im2col should do it: strided; a 1×1 kernel (im2col is then a plain copy and its Gram the channel Gram,
    /// with no kernel offsets to share work between, while this layout would add a transposition); negative pads; image positions no
    /// patch reads (their products would only cancel); an image that does not fit the buffer; or more multiply-adds than im2col
    /// (small outputs of large images).
    /// </summary>
    public static ShiftedConvGram? TryCreate(ConvGeometry p, ConvOutput g, int h, int w, int cg)
    {
        if (p.StrideH != 1 || p.StrideW != 1 || p.Kh * p.Kw == 1 || g.OutH <= 0 || g.OutW <= 0) { return null; }
        int spanH = (p.Kh - 1) * p.DilationH, spanW = (p.Kw - 1) * p.DilationW;
        // Pads ≥ 0 on every side (bottom = outH + spanH − h − top), and for stride 1 the kernel rows' read ranges overlap (outH ≥ dilation),
        // so every image position is read by some patch.
        bool padsNonNegative = g.PadTop >= 0 && g.PadLeft >= 0 && g.OutH + spanH - h - g.PadTop >= 0 && g.OutW + spanW - w - g.PadLeft >= 0;
        bool everyPositionRead = (p.Kh == 1 || g.OutH >= p.DilationH) && (p.Kw == 1 || g.OutW >= p.DilationW);
        if (!padsNonNegative || !everyPositionRead || (long)h * (w + spanW) * cg > LayerInputStatistics.ChunkFloats) { return null; }

        var image = new Rect(0, h, 0, w);
        int kernel = p.Kh * p.Kw;
        var reads = new Rect[kernel];
        for (int t = 0; t < kernel; t++)
        {
            int dy = t / p.Kw * p.DilationH - g.PadTop, dx = t % p.Kw * p.DilationW - g.PadLeft;
            reads[t] = new Rect(dy, dy + g.OutH, dx, dx + g.OutW).Intersect(image);
        }
        var shifts = new List<Shift>();
        var pieces = new List<Piece>();
        var pieceIndex = new Dictionary<Piece, int>();
        int Add(Piece piece)
        {
            if (!pieceIndex.TryGetValue(piece, out int index)) { pieceIndex[piece] = index = pieces.Count; pieces.Add(piece); }
            return index;
        }
        // δ = (di·dilH, dj·dilW) over the non-negative half: di > 0, or di = 0 and dj ≥ 0.
        for (int di = 0; di < p.Kh; di++)
        {
            for (int dj = di == 0 ? 0 : 1 - p.Kw; dj < p.Kw; dj++)
            {
                int dy = di * p.DilationH, dx = dj * p.DilationW;
                var valid = image.Intersect(new Rect(-dy, h - dy, -dx, w - dx));
                if (valid.IsEmpty) { continue; }   // no position pairs: every block of this δ is zero
                int shift = shifts.Count;
                var blocks = new List<Block>();
                for (int i1 = 0; i1 + di < p.Kh; i1++)
                {
                    for (int j1 = Math.Max(0, -dj); j1 < p.Kw && j1 + dj < p.Kw; j1++)
                    {
                        int t1 = i1 * p.Kw + j1;
                        int y1 = i1 * p.DilationH - g.PadTop, x1 = j1 * p.DilationW - g.PadLeft;
                        Rect r = valid.Intersect(new Rect(y1, y1 + g.OutH, x1, x1 + g.OutW));
                        if (r.IsEmpty) { continue; }   // exactly zero; leave it out rather than cancel the whole product
                        var excludedRows = Enumerable.Range(valid.Top, r.Top - valid.Top).Concat(Enumerable.Range(r.Bottom, valid.Bottom - r.Bottom)).ToArray();
                        var excludedColumns = Enumerable.Range(valid.Left, r.Left - valid.Left).Concat(Enumerable.Range(r.Right, valid.Right - r.Right)).ToArray();
                        var corrections = new List<(int, int)>();
                        foreach (int y in excludedRows) { corrections.Add((Add(new Piece(shift, valid with { Top = y, Bottom = y + 1 })), -1)); }
                        foreach (int x in excludedColumns) { corrections.Add((Add(new Piece(shift, valid with { Left = x, Right = x + 1 })), -1)); }
                        foreach (int y in excludedRows)
                        {
                            foreach (int x in excludedColumns) { corrections.Add((Add(new Piece(shift, new Rect(y, y + 1, x, x + 1))), +1)); }
                        }
                        blocks.Add(new Block(t1, t1 + di * p.Kw + dj, [.. corrections]));
                    }
                }
                if (blocks.Count > 0) { shifts.Add(new Shift(dy, dx, [.. blocks])); }
            }
        }
        var plan = new ShiftedConvGram(h, w, cg, kernel, spanW, [.. shifts], [.. pieces], reads);
        // Multiply-adds per image over cg²: one product over the padded image per δ and the border pieces, against im2col's K² per output.
        long shifted = (long)shifts.Count * h * (w + spanW) + (long)pieces.Count * plan._maxPieceArea;
        long im2col = (long)kernel * kernel * g.OutH * g.OutW;
        return shifted <= im2col ? plan : null;
    }

    /// <summary>
    /// Adds one group's H (K × K, K = Cg·kh·kw, rows (c, i, j)) and column sums over the <paramref name="n"/> images of
    /// <paramref name="x"/> (NCHW, <paramref name="channels"/> channels), in chunks of as many images as fit <paramref name="buffer"/>
    /// (at least <see cref="ImageFloats"/>): float products per chunk, summed in double.
    /// </summary>
    public void Accumulate(ReadOnlySpan<float> x, int n, int channels, int group, Span<double> hessian, Span<double> sum,
        float[] buffer, GramSessions gram)
    {
        int cg = _cg, cc = cg * cg, plane = _h * _w;
        int imagesPerChunk = Math.Min(LayerInputStatistics.ChunkImages(ImageFloats), Math.Max(1, buffer.Length / ImageFloats));
        int chunkImages = Math.Min(imagesPerChunk, n);
        float[] products = ArrayPool<float>.Shared.Rent(_shifts.Length * cc);
        float[] pieceProducts = ArrayPool<float>.Shared.Rent(Math.Max(1, _pieces.Length * cc));
        int pieceFloats = Math.Max(1, _pieces.Length * cg * _maxPieceArea * chunkImages);
        float[] pieceA = ArrayPool<float>.Shared.Rent(pieceFloats), pieceB = ArrayPool<float>.Shared.Rent(pieceFloats);
        float[] planeSums = ArrayPool<float>.Shared.Rent(cg * plane);
        double[] block = ArrayPool<double>.Shared.Rent(cc);
        try
        {
            Span<float> totals = planeSums.AsSpan(0, cg * plane);
            for (int n0 = 0; n0 < n; n0 += imagesPerChunk)
            {
                int images = Math.Min(imagesPerChunk, n - n0);
                totals.Clear();   // summed per chunk like the products, so the sums do not depend on the micro-batch either
                for (int image = 0; image < images; image++)
                {
                    ReadOnlySpan<float> source = x.Slice(((n0 + image) * channels + group * cg) * plane, cg * plane);
                    Fill(source, image, images, buffer);
                    TensorPrimitives.Add(totals, source, totals);   // the cg planes of this image, summed over images
                }
                Products(buffer, images, products, pieceA, pieceB, pieceProducts, gram);
                Scatter(products, pieceProducts, hessian, block.AsSpan(0, cc));
                AddColumnSums(totals, sum);
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(products);
            ArrayPool<float>.Shared.Return(pieceProducts);
            ArrayPool<float>.Shared.Return(pieceA);
            ArrayPool<float>.Shared.Return(pieceB);
            ArrayPool<float>.Shared.Return(planeSums);
            ArrayPool<double>.Shared.Return(block);
        }
    }

    /// <summary>Writes one image (Cg planes) into the layout [H][images][W + padW][Cg] as image number <paramref name="image"/> of the chunk.</summary>
    void Fill(ReadOnlySpan<float> source, int image, int images, float[] buffer)
    {
        int cg = _cg, wp = _w + _padW, plane = _h * _w;
        for (int y = 0; y < _h; y++)
        {
            Span<float> segment = buffer.AsSpan((y * images + image) * wp * cg, wp * cg);
            if (cg == 1)
            {
                source.Slice(y * _w, _w).CopyTo(segment);
            }
            else
            {
                for (int ch = 0; ch < cg; ch++)
                {
                    ReadOnlySpan<float> row = source.Slice(ch * plane + y * _w, _w);
                    for (int x = 0, o = ch; x < row.Length; x++, o += cg) { segment[o] = row[x]; }
                }
            }
            segment[(_w * cg)..].Clear();
        }
    }

    /// <summary>
    /// The cross-correlation of every δ (one AᵀB of two views of the buffer each) and the border pieces (gathered, one batched
    /// product), spread over the cores with single-threaded sessions: MLAS splits these C × C outputs poorly across threads.
    /// </summary>
    void Products(float[] buffer, int images, float[] products, float[] pieceA, float[] pieceB, float[] pieceProducts, GramSessions gram)
    {
        int cg = _cg, cc = cg * cg, rowFloats = images * (_w + _padW);
        int length = _h * rowFloats;   // positions in the buffer
        // Item 0 gathers and multiplies the pieces (first, so this serial gather does not end up last); item 1 + s is the product of shift s.
        Parallel.For(_pieces.Length > 0 ? 0 : 1, 1 + _shifts.Length, new ParallelOptions { MaxDegreeOfParallelism = gram.Parallelism }, item =>
        {
            if (item == 0)
            {
                PieceProducts(buffer, images, pieceA, pieceB, pieceProducts, gram);
                return;
            }
            Shift shift = _shifts[item - 1];
            int offset = shift.Dy * rowFloats + shift.Dx, m = length - offset;
            Span<float> result = products.AsSpan((item - 1) * cc, cc);
            if (cg == 1) { result[0] = TensorPrimitives.Dot(buffer.AsSpan(0, m), buffer.AsSpan(offset, m)); }
            else { gram.Cross(buffer, 0, offset * cg, m, cg, result); }
        });
    }

    /// <summary>Gathers every piece's x(q) (as Cg × T) and x(q + δ) (as T × Cg), zero-padded to a common T, and multiplies them in one batch.</summary>
    void PieceProducts(float[] buffer, int images, float[] pieceA, float[] pieceB, float[] pieceProducts, GramSessions gram)
    {
        int cg = _cg, wp = _w + _padW, rowFloats = images * wp;
        int t = _maxPieceArea * images;
        for (int pi = 0; pi < _pieces.Length; pi++)
        {
            (int s, Rect r) = _pieces[pi];
            int offset = _shifts[s].Dy * rowFloats + _shifts[s].Dx;
            Span<float> a = pieceA.AsSpan(pi * cg * t, cg * t), b = pieceB.AsSpan(pi * t * cg, t * cg);
            int column = 0, width = r.Right - r.Left;
            for (int y = r.Top; y < r.Bottom; y++)
            {
                for (int image = 0; image < images; image++, column += width)
                {
                    int q = (y * images + image) * wp + r.Left;
                    buffer.AsSpan((q + offset) * cg, width * cg).CopyTo(b[(column * cg)..]);
                    ReadOnlySpan<float> from = buffer.AsSpan(q * cg, width * cg);
                    for (int ch = 0; ch < cg; ch++)
                    {
                        Span<float> to = a.Slice(ch * t + column, width);
                        for (int x = 0; x < width; x++) { to[x] = from[x * cg + ch]; }
                    }
                }
            }
            for (int ch = 0; ch < cg; ch++) { a.Slice(ch * t + column, t - column).Clear(); }
            b[(column * cg)..].Clear();
        }
        if (cg == 1)
        {
            for (int pi = 0; pi < _pieces.Length; pi++) { pieceProducts[pi] = TensorPrimitives.Dot(pieceA.AsSpan(pi * t, t), pieceB.AsSpan(pi * t, t)); }
        }
        else
        {
            gram.CrossPieces(pieceA, pieceB, _pieces.Length, cg, t, pieceProducts);
        }
    }

    /// <summary>Adds every block (product + corrections, in double) into H at rows (c, t1), columns (c', t2), and its mirror.</summary>
    void Scatter(float[] products, float[] pieceProducts, Span<double> hessian, Span<double> block)
    {
        int cg = _cg, cc = cg * cg, kernel = _kernel, k = cg * kernel;
        for (int s = 0; s < _shifts.Length; s++)
        {
            ReadOnlySpan<float> full = products.AsSpan(s * cc, cc);
            foreach (Block b in _shifts[s].Blocks)
            {
                for (int i = 0; i < cc; i++) { block[i] = full[i]; }
                foreach ((int piece, int sign) in b.Corrections)
                {
                    ReadOnlySpan<float> correction = pieceProducts.AsSpan(piece * cc, cc);
                    for (int i = 0; i < cc; i++) { block[i] += sign * (double)correction[i]; }
                }
                for (int c1 = 0; c1 < cg; c1++)
                {
                    int row = (c1 * kernel + b.T1) * k;
                    for (int c2 = 0; c2 < cg; c2++)
                    {
                        double v = block[c1 * cg + c2];
                        hessian[row + c2 * kernel + b.T2] += v;
                        if (b.T1 != b.T2) { hessian[(c2 * kernel + b.T2) * k + c1 * kernel + b.T1] += v; }
                    }
                }
            }
        }
    }

    /// <summary>Σ_p x̃_c(p + d_t) = the sum of channel c over the image rectangle offset t reads.</summary>
    void AddColumnSums(ReadOnlySpan<float> totals, Span<double> sum)
    {
        int plane = _h * _w;
        for (int ch = 0; ch < _cg; ch++)
        {
            ReadOnlySpan<float> channel = totals.Slice(ch * plane, plane);
            for (int t = 0; t < _kernel; t++)
            {
                Rect r = _reads[t];
                double total = 0;
                for (int y = r.Top; y < r.Bottom; y++)
                {
                    ReadOnlySpan<float> row = channel.Slice(y * _w + r.Left, Math.Max(0, r.Right - r.Left));
                    for (int x = 0; x < row.Length; x++) { total += row[x]; }
                }
                sum[ch * _kernel + t] += total;
            }
        }
    }
}
