using System.Text;
using System.Text.Json;

namespace BitBudget.Optimization;

/// <summary>How a search ended.</summary>
public enum SearchStatus
{
    /// <summary>Proven optimal within the relative gap asked for (<see cref="SearchOptions.RelativeGap"/>).</summary>
    Optimal,
    /// <summary>A feasible configuration without a proof of optimality (a heuristic or a stopped solver).</summary>
    Feasible,
    /// <summary>No configuration meets the budgets.</summary>
    Infeasible,
    /// <summary>The time limit stopped the solver; the result is its best configuration, with the bound reached so far.</summary>
    TimeLimit,
}

/// <summary>The chosen bit-width per layer and what the solver proved about it.</summary>
/// <param name="Method">Search method.</param>
/// <param name="Bits">Bit-width of every layer (fixed ones included), in the problem's layer order.</param>
/// <param name="Objective">Value of the method's own objective at <paramref name="Bits"/>: xᵀΩx for CLADO and uniform, diag(Ω)ᵀx for the independent ILP.</param>
/// <param name="BestBound">Proven lower bound on the method's objective (−∞ when none was proven).</param>
/// <param name="Gap">(Objective − BestBound) / max(|Objective|, |BestBound|); 0 when proven optimal exactly.</param>
/// <param name="QuadraticObjective">xᵀΩx at <paramref name="Bits"/> (twice the predicted loss increase), comparable across methods.</param>
/// <param name="Status">How the search ended.</param>
/// <param name="SolveTime">Wall time of the search.</param>
/// <param name="SizeBytes">Weight bytes of all quantized layers.</param>
/// <param name="AverageBits">Average weight bits over all quantized layers.</param>
/// <param name="AverageBitsSearched">Average weight bits over the searched layers only.</param>
/// <param name="BitOps">Bit operations per image over all quantized layers.</param>
/// <param name="Solver">What produced the result, e.g. "HiGHS MILP (one-hot linearization)".</param>
public sealed record SearchResult(
    SearchMethod Method,
    IReadOnlyDictionary<string, int> Bits,
    double Objective,
    double BestBound,
    double Gap,
    double QuadraticObjective,
    SearchStatus Status,
    TimeSpan SolveTime,
    double SizeBytes,
    double AverageBits,
    double AverageBitsSearched,
    double BitOps,
    string Solver)
{
    /// <summary>
    /// JSON with every field, layers as an ordered array of {"name","bits"}; non-finite numbers are written as null.
    /// Shape: {"method","status","solver","objective","bestBound","gap","quadraticObjective","solveSeconds",
    /// "sizeBytes","averageBits","averageBitsSearched","bitOps","layers":[{"name","bits"}]}.
    /// </summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            WriteTo(w);
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>Writes this result's properties into the JSON object the caller has opened (so a report can add its own fields).</summary>
    public void WriteTo(Utf8JsonWriter w)
    {
        ArgumentNullException.ThrowIfNull(w);
        w.WriteString("method", Method.ToString().ToLowerInvariant());
        w.WriteString("status", Status.ToString());
        w.WriteString("solver", Solver);
        Number(w, "objective", Objective);
        Number(w, "bestBound", BestBound);
        Number(w, "gap", Gap);
        Number(w, "quadraticObjective", QuadraticObjective);
        w.WriteNumber("solveSeconds", Math.Round(SolveTime.TotalSeconds, 4));
        Number(w, "sizeBytes", SizeBytes);
        Number(w, "averageBits", AverageBits);
        Number(w, "averageBitsSearched", AverageBitsSearched);
        Number(w, "bitOps", BitOps);
        w.WriteStartArray("layers");
        foreach (var (name, bits) in Bits)
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteNumber("bits", bits);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value)) { w.WriteNumber(name, value); }
        else { w.WriteNull(name); }
    }
}
