using BitBudget.Rounding;
using BitBudget.Runtime;

namespace BitBudget.Quantization;

/// <summary>
/// GPTQ's per-layer factors (<see cref="Gptq.Factor"/>), computed on first use and kept only while their bytes stay within a cap,
/// least recently used dropped first. A factor holds U (K × K doubles per group) and shares the layer's H (a grouped layer's
/// factor copies it: <see cref="LayerStatistics.FactorBytes"/>); keeping every layer's (ResNet-18: 0.74 GB beside 0.74 GB of H)
/// is what pushed the default GPTQ command past its budget. Before a factor is built, garbage is collected when the new U would
/// bring the process near <paramref name="memoryBudget"/>: the factor just dropped from the cache is garbage of the same size. Layers
/// are rounded layer by layer (every bit-width of a layer in turn), so a cap of one large layer rarely computes a factor twice;
/// a dropped factor is recomputed from the same H, bit for bit.
/// </summary>
internal sealed class GptqFactorCache(IReadOnlyList<LayerStatistics> statistics, GptqOptions options, long capBytes, long memoryBudget = 0)
{
    readonly Dictionary<int, Lazy<GptqFactor[]>> _live = [];
    readonly LinkedList<int> _order = new();   // least recently used first
    readonly Lock _gate = new();
    int _computed;

    /// <summary>Factors computed so far, recomputations included (tests).</summary>
    public int Computed => Volatile.Read(ref _computed);

    /// <summary>Layers whose factors are held now.</summary>
    public int Held
    {
        get { lock (_gate) { return _live.Count; } }
    }

    /// <summary>The factors of layer <paramref name="layer"/>'s groups.</summary>
    /// <remarks>A computation stopped by <paramref name="cancel"/> is not kept: the next caller computes the factors again.</remarks>
    public GptqFactor[] Get(int layer, CancellationToken cancel = default)
    {
        Lazy<GptqFactor[]> factors;
        lock (_gate)
        {
            if (!_live.TryGetValue(layer, out factors!))
            {
                factors = new Lazy<GptqFactor[]>(() =>
                {
                    Interlocked.Increment(ref _computed);
                    ProcessMemory.CollectWhenNear(memoryBudget, incoming: Bytes(layer));
                    return LayerRounder.Factors(statistics[layer], options, cancel);
                });
                _live[layer] = factors;
            }
            _order.Remove(layer);
            _order.AddLast(layer);
            long held = _order.Sum(Bytes);
            // A caller still using a dropped factor keeps it alive until it is done; the cache just stops holding it.
            while (held > capBytes && _order.First!.Value != layer)
            {
                int oldest = _order.First.Value;
                _order.RemoveFirst();
                _live.Remove(oldest);
                held -= Bytes(oldest);
            }
        }
        try
        {
            return factors.Value;
        }
        catch (OperationCanceledException)
        {
            lock (_gate)
            {
                if (_live.TryGetValue(layer, out var held) && held == factors)
                {
                    _live.Remove(layer);
                    _order.Remove(layer);
                }
            }
            throw;
        }
    }

    /// <summary>
    /// Stops holding every factor (a caller still using one keeps it until it is done); a later <see cref="Get"/> computes it
    /// again, bit for bit. For a stage that has rounded all it needs and now wants the memory for something else.
    /// </summary>
    public void Clear()
    {
        lock (_gate)
        {
            _live.Clear();
            _order.Clear();
        }
    }

    long Bytes(int layer) => statistics[layer].FactorBytes;
}
