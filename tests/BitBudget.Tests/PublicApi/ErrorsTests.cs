using System.Reflection;
using System.Text.RegularExpressions;
using BitBudget.Tests.Support;

namespace BitBudget.Tests.PublicApi;

/// <summary>Issue 20: every <see cref="BitBudgetException"/> is made by an <see cref="Errors"/> factory, one per <see cref="ErrorKind"/>.</summary>
public class ErrorsTests
{
    [Fact]
    public void EveryKind_HasAFactoryOfItsName_ThatKeepsKindMessageAndInner()
    {
        var inner = new IOException("disk");
        foreach (ErrorKind kind in Enum.GetValues<ErrorKind>())
        {
            MethodInfo factory = typeof(Errors).GetMethod(kind.ToString(), BindingFlags.Public | BindingFlags.Static, [typeof(string), typeof(Exception)])
                ?? throw new Xunit.Sdk.XunitException($"Errors has no factory {kind}(string, Exception?)");
            var e = (BitBudgetException)factory.Invoke(null, [$"{kind} happened.", inner])!;
            Assert.Equal(kind, e.Kind);
            Assert.Equal($"{kind} happened.", e.Message);
            Assert.Same(inner, e.InnerException);
            var bare = (BitBudgetException)factory.Invoke(null, ["no inner", null])!;
            Assert.Null(bare.InnerException);
        }
        // No factory without a kind: the two lists stay one to one.
        Assert.Equal(Enum.GetNames<ErrorKind>().Order(), typeof(Errors).GetMethods(BindingFlags.Public | BindingFlags.Static).Select(m => m.Name).Order());
    }

    /// <summary>
    /// The folders converted by tools/convert-throws.sh build their exceptions through <see cref="Errors"/> only (a kind computed at
    /// run time, as DatasetLoader's rethrow of a worker's failure, keeps the constructor). The script has run over all of src.
    /// </summary>
    [Fact]
    public void ConvertedFolders_MakeNoBitBudgetExceptionInline()
    {
        string[] folders = ["src"];
        // Both spellings of the constructor with a fixed kind; Errors.cs and the exception type itself are where it belongs.
        var inline = new Regex(@"new(\s+BitBudgetException)?\(ErrorKind\.");
        var found = folders.SelectMany(f => Directory.EnumerateFiles(Path.Combine(Assets.RepoRoot, f), "*.cs", SearchOption.AllDirectories))
            .Where(file => !file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !file.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && Path.GetFileName(file) is not ("Errors.cs" or "BitBudgetException.cs"))
            .SelectMany(file => File.ReadLines(file).Select((line, i) => (file, line, i)))
            .Where(x => inline.IsMatch(x.line))
            .Select(x => $"{Path.GetRelativePath(Assets.RepoRoot, x.file)}:{x.i + 1}")
            .ToList();
        Assert.True(found.Count == 0, "inline BitBudgetException (run tools/convert-throws.sh): " + string.Join(", ", found));
    }
}
