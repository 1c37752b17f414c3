using Microsoft.Data.Sqlite;

namespace BitBudget.Tests.Support;

/// <summary>Reads a measurement store another process is writing, for tests that stop that process part-way.</summary>
internal static class StoreProbe
{
    /// <summary>Work units committed to <paramref name="store"/> so far (0 before the file or its table exists).</summary>
    public static long Units(string store)
    {
        if (!File.Exists(store)) { return 0; }
        try
        {
            using var c = new SqliteConnection($"Data Source={store};Mode=ReadOnly;Pooling=False");
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "SELECT COUNT(*) FROM units";
            return (long)cmd.ExecuteScalar()!;
        }
        catch (SqliteException)
        {
            return 0;   // table not created yet
        }
    }
}
