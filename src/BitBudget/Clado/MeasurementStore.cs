using Microsoft.Data.Sqlite;

namespace BitBudget.Clado;

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
            throw Errors.FileNotFound($"Folder of the measurement store '{path}' does not exist.");
        }
        Path = path;
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Pooling = false }.ToString());
        try
        {
            _connection.Open();
            // Several workers may share one store: wait for each other's write transactions instead of failing.
            Execute("PRAGMA busy_timeout=60000; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;");
            Execute("""
                CREATE TABLE IF NOT EXISTS contexts (context TEXT PRIMARY KEY, description TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS losses (
                    context TEXT NOT NULL, batch INTEGER NOT NULL, u INTEGER NOT NULL, su INTEGER NOT NULL, v INTEGER NOT NULL, sv INTEGER NOT NULL,
                    loss REAL NOT NULL, PRIMARY KEY (context, batch, u, su, v, sv)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS units (context TEXT NOT NULL, batch INTEGER NOT NULL, u INTEGER NOT NULL, su INTEGER NOT NULL,
                    PRIMARY KEY (context, batch, u, su)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS claims (context TEXT NOT NULL, batch INTEGER NOT NULL, u INTEGER NOT NULL, su INTEGER NOT NULL,
                    owner TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (context, batch, u, su)) WITHOUT ROWID;
                """);
        }
        catch (SqliteException e)
        {
            _connection.Dispose();
            throw Errors.InvalidInput($"'{path}' is not a usable measurement store: {e.Message}", e);
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
            mark.CommandText = "INSERT OR REPLACE INTO units VALUES ($c, $b, $u, $su); DELETE FROM claims WHERE context = $c AND batch = $b AND u = $u AND su = $su";
            mark.Parameters.AddWithValue("$c", context);
            mark.Parameters.AddWithValue("$b", batch);
            mark.Parameters.AddWithValue("$u", u);
            mark.Parameters.AddWithValue("$su", su);
            mark.ExecuteNonQuery();
        }
        transaction.Commit();
    }

    /// <summary>
    /// Claims unit (batch, u, su) of <paramref name="context"/> for <paramref name="owner"/> until now + <paramref name="lease"/>, so
    /// that workers sharing the store split the work: <see cref="ClaimResult.Done"/> when it is already measured,
    /// <see cref="ClaimResult.Taken"/> while another live worker holds it. A claim whose lease ran out, or whose owner is a
    /// process of this machine that no longer runs, is taken over.
    /// </summary>
    public ClaimResult TryClaim(string context, int batch, int u, int su, string owner, TimeSpan lease)
    {
        using var transaction = _connection.BeginTransaction(deferred: false);   // BEGIN IMMEDIATE: one claimer at a time
        using var command = _connection.CreateCommand();
        command.Transaction = transaction;
        command.Parameters.AddWithValue("$c", context);
        command.Parameters.AddWithValue("$b", batch);
        command.Parameters.AddWithValue("$u", u);
        command.Parameters.AddWithValue("$su", su);
        command.CommandText = "SELECT COUNT(*) FROM units WHERE context = $c AND batch = $b AND u = $u AND su = $su";
        if ((long)command.ExecuteScalar()! > 0) { return ClaimResult.Done; }
        double now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;
        command.CommandText = "SELECT owner, expires FROM claims WHERE context = $c AND batch = $b AND u = $u AND su = $su";
        using (var reader = command.ExecuteReader())
        {
            if (reader.Read() && reader.GetString(0) != owner && reader.GetDouble(1) > now && WorkerId.MayBeAlive(reader.GetString(0)))
            {
                return ClaimResult.Taken;
            }
        }
        command.CommandText = "INSERT OR REPLACE INTO claims VALUES ($c, $b, $u, $su, $o, $e)";
        command.Parameters.AddWithValue("$o", owner);
        command.Parameters.AddWithValue("$e", now + lease.TotalSeconds);
        command.ExecuteNonQuery();
        transaction.Commit();
        return ClaimResult.Claimed;
    }

    /// <summary>Drops every claim of <paramref name="owner"/> (a worker that stops hands its unfinished units back at once).</summary>
    public void Release(string owner)
    {
        using var command = _connection.CreateCommand();
        command.CommandText = "DELETE FROM claims WHERE owner = $o";
        command.Parameters.AddWithValue("$o", owner);
        command.ExecuteNonQuery();
    }

    /// <summary>Throws a one-line error unless <paramref name="path"/> is a measurement store; opens it read-only, so nothing is changed.</summary>
    public static void Validate(string path)
    {
        if (!File.Exists(path)) { throw Errors.FileNotFound($"Measurement store '{path}' does not exist."); }
        try
        {
            using var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadOnly, Pooling = false }.ToString());
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('contexts', 'losses', 'units')";
            if ((long)command.ExecuteScalar()! != 3)
            {
                throw Errors.InvalidInput($"'{path}' is an SQLite database but not a measurement store (no contexts, losses and units tables).");
            }
        }
        catch (SqliteException e)
        {
            throw Errors.InvalidInput($"'{path}' is not a usable measurement store: {e.Message.ReplaceLineEndings(" ")}", e);
        }
    }

    /// <summary>Copies the store at <paramref name="source"/> (its write-ahead log folded in first) to <paramref name="destination"/>.</summary>
    public static void CopyTo(string source, string destination)
    {
        Validate(source);
        try
        {
            using (var connection = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = source, Pooling = false }.ToString()))
            {
                connection.Open();
                using var command = connection.CreateCommand();
                command.CommandText = "PRAGMA busy_timeout=60000; PRAGMA wal_checkpoint(TRUNCATE);";
                command.ExecuteNonQuery();
            }
            File.Copy(source, destination, overwrite: true);
        }
        catch (SqliteException e)
        {
            throw Errors.InvalidInput($"'{source}' is not a usable measurement store: {e.Message.ReplaceLineEndings(" ")}", e);
        }
    }

    /// <summary>Copies every context, loss and unit of <paramref name="other"/> into this store; returns the rows added.</summary>
    public long MergeFrom(string other)
    {
        Validate(other);   // read-only: a file that is not a store is named and left as it was
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

/// <summary>What <see cref="MeasurementStore.TryClaim"/> found.</summary>
internal enum ClaimResult
{
    /// <summary>The unit is this worker's to measure.</summary>
    Claimed,
    /// <summary>Another live worker is measuring it.</summary>
    Taken,
    /// <summary>It is already in the store.</summary>
    Done,
}

/// <summary>Names a measuring worker "host/pid/random", so a worker of the same host can tell that the owner of a claim has died.</summary>
internal static class WorkerId
{
    public static string New() => $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid():N}";

    /// <summary>False only when the owner is a process of this host that no longer runs.</summary>
    public static bool MayBeAlive(string owner)
    {
        string[] parts = owner.Split('/');
        if (parts.Length != 3 || parts[0] != Environment.MachineName
            || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid))
        {
            return true;
        }
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }
}
