using BitBudget.Quantization;

namespace BitBudget.Tests.Quantization;

public class ActivationObserverTests
{
    [Fact]
    public void MinMax_HandComputedScaleAndZeroPoint()
    {
        var observer = new ActivationObserver();
        observer.Observe([-1f, 0.5f]);
        observer.Observe([2f, 3f]);   // the second batch widens the range
        ActivationParams p = observer.Compute(8, ActivationCalibration.MinMax);
        Assert.Equal(4f / 255, p.Scale);
        Assert.Equal(64, p.ZeroPoint);   // round(1 / (4/255)) = round(63.75)
        Assert.Equal(-1f, observer.Min);
        Assert.Equal(3f, observer.Max);
        Assert.Equal(4, observer.Count);
    }

    [Fact]
    public void PositiveOnly_RangeIncludesZero()
    {
        var observer = new ActivationObserver();
        observer.Observe([1f, 2f, 5f]);
        ActivationParams p = observer.Compute(8);
        Assert.Equal(0, p.ZeroPoint);
        Assert.Equal(5f / 255, p.Scale);
    }

    [Fact]
    public void Percentile_IgnoresRareOutlier_StreamingOverBatches()
    {
        var observer = new ActivationObserver();
        var random = new Random(3);
        for (int batch = 0; batch < 20; batch++)
        {
            var values = new float[5000];
            for (int i = 0; i < values.Length; i++) { values[i] = (float)random.NextDouble(); }   // uniform [0, 1)
            if (batch == 7) { values[0] = 100f; }   // one outlier forces several histogram doublings
            observer.Observe(values);
        }
        ActivationParams minmax = observer.Compute(8, ActivationCalibration.MinMax);
        ActivationParams percentile = observer.Compute(8, ActivationCalibration.Percentile, 99.9);
        ActivationParams mse = observer.Compute(8, ActivationCalibration.Mse);
        Assert.Equal(100f / 255, minmax.Scale, 1e-6f);
        Assert.InRange(percentile.RangeMax, 0.98f, 1.05f);   // the 99.9th percentile of U(0,1), at histogram resolution
        // One outlier in 100k values: clipping it costs (100 − hi)², so MSE shrinks the range only part way.
        Assert.InRange(mse.RangeMax, 50f, 99.5f);
    }

    [Fact]
    public void AllZeros_ScaleOne()
    {
        var observer = new ActivationObserver();
        observer.Observe(new float[10]);
        Assert.Equal(new ActivationParams(1f, 0, 8), observer.Compute(8, ActivationCalibration.Percentile));
        observer.Observe([2f]);
        Assert.Equal(2f / 255, observer.Compute(8).Scale);
    }

    [Fact]
    public void BadBitsOrNoData_Throw()
    {
        var observer = new ActivationObserver();
        Assert.Equal("No activation values were observed; the calibration set is empty.", Assert.Throws<BitBudgetException>(() => observer.Compute(8)).Message);
        observer.Observe([1f]);
        Assert.Equal("Activation bits 3 are not supported; expected 4–16.", Assert.Throws<BitBudgetException>(() => observer.Compute(3)).Message);
        Assert.Throws<BitBudgetException>(() => observer.Observe([float.NaN]));
    }
}
