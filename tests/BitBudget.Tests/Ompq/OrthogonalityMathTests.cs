using BitBudget.Clado;
using BitBudget.Ompq;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Ompq;

public class OrthogonalityMathTests
{
    static float[] Random(int n, int d, int seed)
    {
        var random = new Random(seed);
        var x = new float[n * d];
        for (int i = 0; i < x.Length; i++) { x[i] = (float)(random.NextDouble() * 2 - 1 + (i % d % 7 == 0 ? 3 : 0)); }
        return x;
    }

    /// <summary>Naive double-precision reference: K = X Xᵀ, K̃ = H K H with an explicit H, CKA.</summary>
    static double NaiveCka(float[] x, float[] y, int n, bool centered)
    {
        double[,] kx = NaiveGram(x, n), ky = NaiveGram(y, n);
        if (centered) { kx = NaiveCenter(kx, n); ky = NaiveCenter(ky, n); }
        double xy = 0, xx = 0, yy = 0;
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < n; b++) { xy += kx[a, b] * ky[a, b]; xx += kx[a, b] * kx[a, b]; yy += ky[a, b] * ky[a, b]; }
        }
        return xy / Math.Sqrt(xx * yy);
    }

    static double[,] NaiveGram(float[] x, int n)
    {
        int d = x.Length / n;
        var k = new double[n, n];
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < n; b++)
            {
                double s = 0;
                for (int e = 0; e < d; e++) { s += (double)x[a * d + e] * x[b * d + e]; }
                k[a, b] = s;
            }
        }
        return k;
    }

    static double[,] NaiveCenter(double[,] k, int n)
    {
        var h = new double[n, n];
        for (int a = 0; a < n; a++) { for (int b = 0; b < n; b++) { h[a, b] = (a == b ? 1 : 0) - 1.0 / n; } }
        return Multiply(Multiply(h, k, n), h, n);
    }

    static double[,] Multiply(double[,] p, double[,] q, int n)
    {
        var r = new double[n, n];
        for (int a = 0; a < n; a++) { for (int b = 0; b < n; b++) { for (int c = 0; c < n; c++) { r[a, b] += p[a, c] * q[c, b]; } } }
        return r;
    }

    static double Cka(float[] x, float[] y, int n, bool centered = true)
    {
        double[] kx = OrthogonalityMath.Gram(x, n), ky = OrthogonalityMath.Gram(y, n);
        if (centered) { kx = OrthogonalityMath.Center(kx, n); ky = OrthogonalityMath.Center(ky, n); }
        return OrthogonalityMath.Orm([kx, ky], out _)[0, 1];
    }

    [Fact]
    public void Gram_LongFeatures_MatchesDoubleReference()
    {
        const int n = 6, d = 100_003;   // several blocks plus a ragged tail
        float[] x = Random(n, d, 1);
        double[] k = OrthogonalityMath.Gram(x, n);
        double[,] reference = NaiveGram(x, n);
        for (int a = 0; a < n; a++)
        {
            for (int b = 0; b < n; b++) { Assert.Equal(reference[a, b], k[a * n + b], Math.Abs(reference[a, b]) * 1e-6); }
        }
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Orm_MatchesNaiveReference(bool centered)
    {
        const int n = 8;
        float[] x = Random(n, 5000, 2), y = Random(n, 3000, 3);
        for (int i = 0; i < 3000 * n; i++) { y[i] += 0.5f * x[i]; }   // related features: CKA well inside (0, 1)
        double expected = NaiveCka(x, y, n, centered);
        Assert.InRange(expected, 0.05, 0.999);
        Assert.Equal(expected, Cka(x, y, n, centered), 1e-6);
    }

    [Fact]
    public void Orm_IsSymmetricWithUnitDiagonalAndInRange()
    {
        const int n = 10;
        var grams = Enumerable.Range(0, 4).Select(s => OrthogonalityMath.Center(OrthogonalityMath.Gram(Random(n, 400 + s * 50, s + 10), n), n)).ToList();
        var orm = OrthogonalityMath.Orm(grams, out List<int> constant);
        Assert.Empty(constant);
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(1.0, orm[i, i]);
            for (int j = 0; j < 4; j++)
            {
                Assert.Equal(orm[i, j], orm[j, i]);
                Assert.InRange(orm[i, j], 0, 1 + 1e-12);
            }
        }
    }

    [Fact]
    public void Cka_InvariantToScalingOrthogonalTransformAndTranslation()
    {
        const int n = 8, d = 64;
        float[] x = Random(n, d, 4), y = Random(n, d, 5);
        for (int i = 0; i < x.Length; i++) { y[i] += x[i]; }
        double baseline = Cka(x, y, n);

        float[] scaled = [.. x.Select(v => v * 7.5f)];
        Assert.Equal(baseline, Cka(scaled, y, n), 1e-6);

        // Householder reflection Q = I − 2vvᵀ/‖v‖² applied to every row: XQ has the same Gram matrix.
        double[] v = [.. Enumerable.Range(0, d).Select(i => Math.Sin(i + 1.0))];
        double vv = v.Sum(e => e * e);
        var rotated = new float[x.Length];
        for (int a = 0; a < n; a++)
        {
            double dot = 0;
            for (int e = 0; e < d; e++) { dot += x[a * d + e] * v[e]; }
            for (int e = 0; e < d; e++) { rotated[a * d + e] = (float)(x[a * d + e] - 2 * dot / vv * v[e]); }
        }
        Assert.Equal(baseline, Cka(rotated, y, n), 1e-5);

        // Centered CKA ignores a constant offset per feature.
        float[] shifted = [.. x.Select((value, i) => value + (i % d) * 0.3f)];
        Assert.Equal(baseline, Cka(shifted, y, n), 1e-5);
        Assert.Equal(1.0, Cka(x, scaled, n), 1e-9);
    }

    [Fact]
    public void Orm_ConstantFeature_IsReportedAndZeroOffDiagonal()
    {
        const int n = 4;
        double[] constant = OrthogonalityMath.Center(OrthogonalityMath.Gram(Enumerable.Repeat(2f, n * 10).ToArray(), n), n);
        double[] other = OrthogonalityMath.Center(OrthogonalityMath.Gram(Random(n, 10, 6), n), n);
        var orm = OrthogonalityMath.Orm([constant, other], out List<int> constants);
        Assert.Equal([0], constants);
        Assert.Equal(0, orm[0, 1]);
        Assert.Equal(1, orm[0, 0]);
    }

    [Fact]
    public void Theta_IsNormalizedInLogDomain()
    {
        double[] theta = OrthogonalityMath.Theta([3, 1, 2], 2, out double[] log);
        AssertEx.Near([Math.Exp(-4), 1, Math.Exp(-2)], theta, 1e-15);
        Assert.Equal([-6, -2, -4], log);
        // β γ far beyond double's range: raw θ would be 0 everywhere, the normalized θ keeps its maximum at 1.
        double[] huge = OrthogonalityMath.Theta([900, 800, 801], 10, out _);
        AssertEx.Near([0, 1, Math.Exp(-10)], huge, 1e-18);
    }
}
