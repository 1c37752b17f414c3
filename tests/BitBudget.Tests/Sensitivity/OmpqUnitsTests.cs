using BitBudget.Graph;
using BitBudget.Sensitivity;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.Sensitivity;

public class OmpqUnitsTests(ITestOutputHelper output)
{
    static OmpqUnitMap Build(string path, OmpqUnitOptions? options = null)
    {
        (OnnxModel prepared, ModelSummary summary) = ModelInspector.Inspect(OnnxModel.Load(path));
        return OmpqUnits.Build(prepared, summary, options);
    }

    [Fact]
    public void Dump()
    {
        foreach (string p in new[] { Assets.ResNet20, Assets.SqueezeNet, Assets.Mnist8 })
        {
            output.WriteLine(Build(p).Format());
            output.WriteLine(Build(p, new OmpqUnitOptions { GroupShortcuts = false, FixFirstAndLast = false }).Format());
        }
    }
}
