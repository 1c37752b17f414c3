namespace BitBudget.Data;

/// <summary>
/// The one label rule for sources (<see cref="DataSource"/>) and loaded data (<see cref="Dataset"/>): data is labeled when it
/// has class names. An unlabeled flat folder has none (every label -1); every labeled kind has at least one class.
/// </summary>
internal static class LabelRule
{
    /// <summary>Whether data with these class names (in label order) has labels.</summary>
    internal static bool Present(IReadOnlyList<string> classNames) => classNames.Count > 0;

    /// <summary>
    /// The error for unlabeled data (<paramref name="where"/>: its folder or description) used where <paramref name="why"/>
    /// needs labels. The hint names how to add labels and, only when the caller has one, a label-free
    /// <paramref name="alternative"/> (evaluation has none).
    /// </summary>
    internal static BitBudgetException Missing(string where, string why, string? alternative) => Errors.InvalidInput(
        $"{why} needs labels, but {where} has none (an unlabeled flat folder: no '<class>_' file-name prefix); " +
        $"use class subfolders, '<class>_name' files or --class-list{(alternative is null ? "" : $", or {alternative}")}.");
}
