using BitBudget.Runtime;

namespace BitBudget.Tests.Evaluation;

/// <summary>
/// Issue 16: long stages (GPTQ rounding, CLADO units) collect managed garbage when the resident set comes within a sixteenth of
/// the budget; ResNet-18's default sensitivity went 0.1–0.3 GiB over 3 GiB on garbage alone without it.
/// </summary>
[Collection(ResidentSetCollection.Name)]
public class CollectWhenNearTests
{
    [Fact]
    public void CollectsOnlyWithinASixteenthOfTheBudget()
    {
        long resident = ProcessMemory.CurrentRss;
        Assert.False(ProcessMemory.CollectWhenNear(0));                       // no budget: no check
        Assert.False(ProcessMemory.CollectWhenNear(resident * 4));            // far below
        int before = GC.CollectionCount(2);
        Assert.True(ProcessMemory.CollectWhenNear(resident + resident / 64)); // resident > budget − budget/16
        Assert.True(GC.CollectionCount(2) > before);
        // What the caller is about to allocate counts: a GPTQ factor of the budget's size collects first.
        Assert.False(ProcessMemory.CollectWhenNear(resident * 4, incoming: resident));
        Assert.True(ProcessMemory.CollectWhenNear(resident * 4, incoming: resident * 3));
    }

    /// <summary>Garbage that pushes the resident set near the budget is given back by the collection.</summary>
    [Fact]
    public void GarbageNearTheBudgetIsCollected()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        long clean = ProcessMemory.CurrentRss;
        long dirty = Allocate256MiB();   // dead once it returns, still resident until collected
        Assert.True(ProcessMemory.CollectWhenNear(dirty));
        Assert.True(ProcessMemory.CurrentRss < dirty - (64L << 20), $"resident {ProcessMemory.CurrentRss >> 20} MiB after collecting, {dirty >> 20} MiB before, {clean >> 20} MiB clean");
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    static long Allocate256MiB()
    {
        var buffers = new List<byte[]>();
        for (int i = 0; i < 16; i++)
        {
            var b = new byte[16 << 20];
            for (int j = 0; j < b.Length; j += 4096) { b[j] = 1; }
            buffers.Add(b);
        }
        long resident = ProcessMemory.CurrentRss;
        GC.KeepAlive(buffers);
        return resident;
    }
}
