using System.Globalization;
using nietras.SeparatedValues;

namespace BitBudget.Reporting;

/// <summary>The one CSV writer of every report (Sep): comma-separated, RFC 4180 quoting where a cell needs it, invariant culture.</summary>
internal static class Csv
{
    /// <summary>The CSV text of a table: <paramref name="header"/> first (also when there is no row), then what <paramref name="rows"/> writes.</summary>
    internal static string Write(IReadOnlyList<string> header, Action<SepWriter> rows)
    {
        var text = new StringWriter(CultureInfo.InvariantCulture) { NewLine = "\n" };
        using (SepWriter writer = Sep.New(',').Writer(o => o with { Escape = true, CultureInfo = CultureInfo.InvariantCulture }).To(text))
        {
            writer.Header.Add(header);
            rows(writer);
        }
        return text.ToString();
    }
}
