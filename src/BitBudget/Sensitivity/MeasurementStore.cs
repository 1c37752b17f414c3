using Microsoft.Data.Sqlite;

namespace BitBudget.Sensitivity;

/// <summary>
/// Durable store of measured losses in SQLite, keyed by the measurement context (model, data, quantization settings) and by
/// (batch, layer u, scheme, layer v, scheme). A unit of work — one batch's single (u, s) and every pair (u, s; v, t) with v
/// after u — is committed in one transaction, so a killed run loses at most the unit in flight.
/// </summary>
internal sealed class MeasurementStore : IDisposable
{
    readonly SqliteConnection _connection;

    public MeasurementStore(string path)
    {
        string? dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
        if (dir is not null && !Directory.Exists(dir))
        {
            throw new BitBudgetException(ErrorKind.FileNotFound, $"Folder of the measurement store '{path}' does not exist.");
        }
        Path = path;
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        try
        {
            _connection.Open();
            Execute("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
            Execute("""
                CREATE TABLE IF NOT EXISTS contexts (context TEXT PRIMARY KEY, description TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS losses (
                    context TEXT NOT NULL, batch INTEGER NOT NULL, u INTEGER NOT NULL, su INTEGER NOT NULL, v INTEGER NOT NULL, sv INTEGER NOT NULL,
                    loss REAL NOT NULL, PRIMARY KEY (context, batch, u, su, v, sv)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS units (context TEXT NOT NULL, batch INTEGER NOT NULL, u INTEGER NOT NULL, su INTEGER NOT NULL,
                    PRIMARY KEY (context, batch, u, su)) WITHOUT ROWID;
                """);
        }
        catch (SqliteException e)
        {
            _connection.Dispose();
            throw new BitBudgetException(ErrorKind.InvalidInput, $"'{path}' is not a usable measurement store: {e.Message}", e);
        }
    }

    public string Path { get; }

    public void Register(string context, string description)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "INSERT OR IGNORE INTO contexts VALUES ($c, $d)";
        command.Parameters.AddWithValue("$c", context);
        command.Parameters.AddWithValue("$d", description);
        command.ExecuteNonQuery();
    }

    public IReadOnlyList<(string Context, string Description)> Contexts()
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT context, description FROM contexts ORDER BY context";
        using var reader = command.ExecuteReader();
        var list = new List<(string, string)>();
        while (reader.Read()) { list.Add((reader.GetString(0), reader.GetString(1))); }
        return list;
    }

    /// <summary>Units already complete for <paramref name="context"/>: (batch, u, su); u = −1 is the batch's reference loss.</summary>
    public HashSet<(int Batch, int U, int Su)> CompletedUnits(string context)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT batch, u, su FROM units WHERE context = $c";
        command.Parameters.AddWithValue("$c", context);
        using var reader = command.ExecuteReader();
        var set = new HashSet<(int, int, int)>();
        while (reader.Read()) { set.Add((reader.GetInt32(0), reader.GetInt32(1), reader.GetInt32(2))); }
        return set;
    }

    /// <summary>Every stored loss of <paramref name="context"/>.</summary>
    public Dictionary<(int Batch, int U, int Su, int V, int Sv), double> Losses(string context)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "SELECT batch, u, su, v, sv, loss FROM losses WHERE context = $c";
        command.Parameters.AddWithValue("$c", context);
        using var reader = command.ExecuteReader();
        var map = new Dictionary<(int, int, int, int, int), double>();
        while (reader.Read())
        {
            map[(reader.GetInt32(0), reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3), reader.GetInt32(4))] = reader.GetDouble(5);
        }
        return map;
    }

    /// <summary>Stores one unit's losses and marks it complete, atomically.</summary>
    public void CommitUnit(string context, int batch, int u, int su, IReadOnlyList<(int U, int Su, int V, int Sv, double Loss)> losses)
    {
        using var transaction = _connection.BeginTransaction();
        using (var insert = _connection.CreateCommand())
        {
            insert.Transaction = transaction;
            insert.CommandText = "INSERT OR REPLACE INTO losses VALUES ($c, $b, $u, $su, $v, $sv, $l)";
            var pc = insert.Parameters.Add("$c", SqliteType.Text);
            var pb = insert.Parameters.Add("$b", SqliteType.Integer);
            var pu = insert.Parameters.Add("$u", SqliteType.Integer);
            var psu = insert.Parameters.Add("$su", SqliteType.Integer);
            var pv = insert.Parameters.Add("$v", SqliteType.Integer);
            var psv = insert.Parameters.Add("$sv", SqliteType.Integer);
            var pl = insert.Parameters.Add("$l", SqliteType.Real);
            insert.Prepare();
            pc.Value = context;
            pb.Value = batch;
            foreach (var row in losses)
            {
                pu.Value = row.U; psu.Value = row.Su; pv.Value = row.V; psv.Value = row.Sv; pl.Value = row.Loss;
                insert.ExecuteNonQuery();
            }
        }
        using (var mark = _connection.CreateCommand())
        {
            mark.Transaction = transaction;
            mark.CommandText = "INSERT OR REPLACE INTO units VALUES ($c, $b, $u, $su)";
            mark.Parameters.AddWithValue("$c", context);
            mark.Parameters.AddWithValue("$b", batch);
            mark.Parameters.AddWithValue("$u", u);
            mark.Parameters.AddWithValue("$su", su);
            mark.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    /// <summary>Copies every context, loss and unit of <paramref name="other"/> into this store; returns the rows added.</summary>
    public long MergeFrom(string other)
    {
        if (!File.Exists(other)) { throw new BitBudgetException(ErrorKind.FileNotFound, $"Measurement store '{other}' does not exist."); }
        using (var check = new MeasurementStore(other)) { _ = check.Contexts(); }   // validates the schema with a one-line error
        Execute($"ATTACH DATABASE '{other.Replace("'", "''", StringComparison.Ordinal)}' AS other");
        try
        {
            using var transaction = _connection.BeginTransaction();
            long before = Count();
            foreach (string sql in new[]
            {
                "INSERT OR IGNORE INTO contexts SELECT * FROM other.contexts",
                "INSERT OR IGNORE INTO losses SELECT * FROM other.losses",
                "INSERT OR IGNORE INTO units SELECT * FROM other.units",
            })
            {
                using var command = _connection.CreateCommand();
                command.Transaction = transaction;
                command.CommandText = sql;
                command.ExecuteNonQuery();
            }
            long added = Count() - before;
            transaction.Commit();
            return added;
        }
        finally
        {
            Execute("DETACH DATABASE other");
        }

        long Count()
        {
            using var command = _connection.CreateCommand();
            command.CommandText = "SELECT COUNT(*) FROM losses";
            return (long)command.ExecuteScalar()!;
        }
    }

    void Execute(string sql)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        _connection.Dispose();
        SqliteConnection.ClearAllPools();
    }
}
