namespace BitBudget.Methods;

/// <summary>The one registry of search methods, shared by the CLI and <c>RunWorkflow</c>.</summary>
public static class SearchMethods
{
    /// <summary>Every method, in the order <c>run --method all</c> runs them.</summary>
    public static IReadOnlyList<ISearchMethod> All { get; } =
    [
        new BitSearchMethod("clado", Optimization.SearchMethod.Clado),
        new BitSearchMethod("independent", Optimization.SearchMethod.Independent),
        new BitSearchMethod("uniform", Optimization.SearchMethod.Uniform),
        new OmpqMethod(),
        new BestOfMethod(),
    ];

    /// <summary>The names of <see cref="All"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. All.Select(m => m.Name)];

    /// <summary>The method called <paramref name="name"/>.</summary>
    /// <exception cref="BitBudgetException">No such method (<see cref="ErrorKind.InvalidInput"/>).</exception>
    public static ISearchMethod Get(string name) =>
        All.FirstOrDefault(m => m.Name == name)
        ?? throw Errors.InvalidInput($"Unknown method '{name}'; expected {string.Join(", ", Names)} or all.");
}
