using System.Runtime.CompilerServices;

namespace BitBudget.Tests.Support;

/// <summary>
/// The memory budget bounds the whole process, and the test host runs many pipelines in parallel (several GiB together), so
/// the default 3 GiB would refuse work that each test alone fits. Tests of the budget itself pass explicit budgets.
/// </summary>
static class TestHostMemory
{
    [ModuleInitializer]
    internal static void RaiseDefaultBudget()
    {
        if (Environment.GetEnvironmentVariable(BitBudget.Runtime.ProcessMemory.BudgetVariable) is null)
        {
            Environment.SetEnvironmentVariable(BitBudget.Runtime.ProcessMemory.BudgetVariable, "12GiB");
        }
    }
}
