namespace BitBudget.Tests.Support;

/// <summary>Assertions xunit lacks.</summary>
public static class AssertEx
{
    /// <summary>Element-wise equality within an absolute tolerance, reporting the first index that differs.</summary>
    public static void Near(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double tolerance)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"index {i}: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tolerance})");
        }
    }
}
