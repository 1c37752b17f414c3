using System.Diagnostics;
using System.Numerics.Tensors;

namespace BitBudget.Optimization;

/// <summary>
/// Exact branch-and-bound for min xᵀΩx over one-hot configurations under one budget row, with the convex QCR relaxation
/// (<see cref="ConvexRelaxation"/>) at every node: min ‖Gᵀx‖² + cᵀx over the product of the layers' simplices (with the
/// node's fixings) and the budget. Each node solves it by away-step Frank–Wolfe whose linear subproblem is the LP of a
/// multiple-choice knapsack (exact greedy over the layers' lower convex hulls); every iterate x gives the valid lower bound
/// φ(x) − ∇φ(x)ᵀ(x − s) (the Lagrangian dual at λ = 2Gᵀx), so a bound is never overstated even when a node stops early.
/// Branching fixes one layer to each of its schemes (the layer with the largest pseudocost estimate; a layer without one gets
/// its children evaluated once, strong-branching style, when it is first fractional); best-first; incumbents from rounding
/// every node's relaxation plus the 1/2-swap local search. Within a sweep, incumbents, looser budgets' bounds and the
/// pseudocosts come from <see cref="SweepMemory"/>.
/// </summary>
internal sealed class ConvexBranchAndBound
{
    /// <summary>A vertex of a node's polytope: one scheme per layer, except at most one layer split between two schemes.</summary>
    sealed class Vertex
    {
        public required int[] Choice;   // variable index per layer
        public int FracLayer = -1;
        public int FracTo;
        public double Theta;
        public required double[] Y;     // Gᵀx
        public double C;                // cᵀx

        public bool SameAs(Vertex o)
        {
            if (FracLayer != o.FracLayer || (FracLayer >= 0 && (FracTo != o.FracTo || Math.Abs(Theta - o.Theta) > 1e-12))) { return false; }
            return Choice.AsSpan().SequenceEqual(o.Choice);
        }

        /// <summary>Whether x_v puts all of layer i on variable u.</summary>
        public bool Puts(int layer, int u) => Choice[layer] == u && FracLayer != layer;

        /// <summary>Whether x_v puts any mass on an excluded variable.</summary>
        public bool Uses(bool[] excluded)
        {
            if (FracLayer >= 0 && excluded[FracTo]) { return true; }
            foreach (int u in Choice) { if (excluded[u]) { return true; } }
            return false;
        }
    }

    sealed class Node
    {
        public required int[] Fix;      // variable index per layer, −1 when free
        public double Bound;
        public double Value;
        public required List<Vertex> Active;
        public required List<double> Weights;
        public int BranchLayer = -1;
        public double[]? X;             // relaxation point (for the pseudocost update of the branching)
        /// <summary>Variables that no configuration below this node better than the pruning level uses (reduced-cost fixing);
        /// shared with the parent until this node excludes more (then copied), null when none.</summary>
        public bool[]? Excluded;
    }

    readonly Instance _inst;
    readonly ConvexRelaxation _relax;
    readonly int _n, _l, _r;
    readonly double[] _a;
    readonly double _b;
    readonly double[] _grad;
    readonly double[] _y;
    readonly double[] _dy;
    readonly double[] _step;
    readonly SearchOptions _options;
    readonly int _maxIterations;
    readonly bool _pseudocosts;
    readonly bool _strongInit;
    readonly bool _reducedCostFixing;
    readonly Comparison<(double Slope, int Layer, int From, int To)> _stepOrder;
    double _mu;                          // the last LMO's budget multiplier (the slope of the step the budget cut)
    double _excludedMin = double.PositiveInfinity;   // min lower bound of everything reduced-cost fixing removed
    readonly double[] _gainSum;
    readonly int[] _gainCount;
    int[] _best;
    double _upper;

    public int Nodes { get; private set; }
    public long Iterations { get; private set; }
    /// <summary>Variables excluded from a subtree by reduced-cost fixing, summed over nodes.</summary>
    public int FixedOut { get; private set; }

    ConvexBranchAndBound(Instance inst, ConvexRelaxation relax, SearchOptions options, int[] start, double startValue, int maxIterations, bool pseudocosts, bool strongInit, bool reducedCostFixing, SweepMemory? memory)
    {
        (_inst, _relax, _options, _maxIterations, _pseudocosts, _strongInit, _reducedCostFixing) = (inst, relax, options, maxIterations, pseudocosts, strongInit, reducedCostFixing);
        (_gainSum, _gainCount) = memory?.Pseudocosts() ?? (new double[inst.L], new int[inst.L]);
        (_n, _l, _r) = (inst.N, inst.L, relax.Rank);
        _a = inst.Rows[0];
        double[] a = _a;
        _stepOrder = (p, q) => p.Slope != q.Slope ? p.Slope.CompareTo(q.Slope) : p.Layer != q.Layer ? p.Layer.CompareTo(q.Layer) : a[p.To].CompareTo(a[q.To]);
        _b = inst.Rhs[0];
        _grad = new double[_n];
        _y = new double[_r];
        _dy = new double[_r];
        _step = new double[_r];
        _best = (int[])start.Clone();
        _upper = startValue;
    }

    /// <summary>Runs the search from the incumbent <paramref name="start"/> (scheme index per layer); only one budget row is supported.</summary>
    public static (MipOutcome Outcome, Stats Stats) Solve(Instance inst, SearchOptions options, int[] start, double startValue, Stopwatch clock,
        CancellationToken cancellationToken, int qcrRounds = 30, int maxIterations = 100, bool blocks = true, double dropBelow = 1e-4, bool tangent = true, bool pseudocosts = true, bool reuseRelaxation = true,
        SweepMemory? memory = null, bool strongInit = true, bool reducedCostFixing = true)
    {
        if (inst.Rows.Length != 1) { throw new ArgumentException("The convex branch-and-bound handles exactly one budget row.", nameof(inst)); }
        long t0 = Stopwatch.GetTimestamp();
        var relax = reuseRelaxation ? ConvexRelaxation.Cached(inst, qcrRounds, blocks, dropBelow, tangent) : ConvexRelaxation.Build(inst, qcrRounds, blocks, dropBelow, tangent);
        double buildSeconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
        var bb = new ConvexBranchAndBound(inst, relax, options, start, startValue, maxIterations, pseudocosts, strongInit, reducedCostFixing, memory);
        double bound = bb.Run(clock, cancellationToken);
        memory?.KeepPseudocosts(bb._gainSum, bb._gainCount);
        bool optimal = MipModels.Gap(bb._upper, bound) <= options.RelativeGap;
        string name = $"convex QCR branch-and-bound (rank {relax.Rank}, {bb.Nodes} nodes)";
        return (new MipOutcome(bb._best, Math.Min(bound, bb._upper), optimal, false, name),
            new Stats(bb.Nodes, bb.Iterations, relax.Rank, relax.Rounds, buildSeconds, bb.RootBound, bb.FixedOut));
    }

    /// <summary>Search statistics for the benchmark.</summary>
    public sealed record Stats(int Nodes, long Iterations, int Rank, int QcrRounds, double BuildSeconds, double RootBound, int FixedOut);

    double RootBound { get; set; } = double.NegativeInfinity;

    double PruneAt => _upper - _options.RelativeGap * Math.Abs(_upper);

    double Run(Stopwatch clock, CancellationToken cancellationToken)
    {
        double closedMin = double.PositiveInfinity;   // min bound over every node closed without branching
        var root = new Node { Fix = Enumerable.Repeat(-1, _l).ToArray(), Active = [], Weights = [] };
        if (!Evaluate(root)) { return double.PositiveInfinity; }
        RootBound = root.Bound;
        var open = new PriorityQueue<Node, double>();
        if (root.BranchLayer < 0) { closedMin = Math.Min(closedMin, root.Bound); }
        else { open.Enqueue(root, root.Bound); }
        while (open.Count > 0)
        {
            if (cancellationToken.IsCancellationRequested || clock.Elapsed >= _options.TimeLimit) { break; }
            Node node = open.Dequeue();
            if (node.Bound >= PruneAt) { closedMin = Math.Min(closedMin, node.Bound); continue; }
            int layer = node.BranchLayer;
            // Pseudocost initialisation: a layer never branched on gets its children evaluated once (strong branching), so its
            // first score is measured, not the mean of the others; the chosen layer's children are kept, not evaluated twice.
            Dictionary<int, List<Node?>>? tried = _strongInit && _pseudocosts ? InitialisePseudocosts(node) : null;
            if (tried is not null && ChooseBranch(node.Fix, node.X!) is int better and >= 0) { layer = better; }
            for (int u = _inst.Offsets[layer]; u < _inst.Offsets[layer + 1]; u++)
            {
                if (node.Excluded?[u] == true) { continue; }   // its subtree is bounded by _excludedMin
                Node? child = tried is not null && tried.TryGetValue(layer, out var done) ? done[u - _inst.Offsets[layer]] : Child(node, layer, u);
                if (child is null) { continue; }   // infeasible fixing
                if (child.BranchLayer < 0 || child.Bound >= PruneAt) { closedMin = Math.Min(closedMin, child.Bound); }
                else { open.Enqueue(child, child.Bound); }
            }
        }
        double openMin = double.PositiveInfinity;
        while (open.TryDequeue(out Node? left, out double b)) { openMin = Math.Min(openMin, b); }
        return Math.Min(Math.Min(closedMin, openMin), _excludedMin);
    }

    /// <summary>The child of <paramref name="node"/> with <paramref name="layer"/> fixed to variable <paramref name="u"/>, evaluated (warm-started
    /// from the parent's compatible vertices), its bound gain recorded in the pseudocosts; null when the fixing is infeasible.</summary>
    Node? Child(Node node, int layer, int u)
    {
        var fix = (int[])node.Fix.Clone();
        fix[layer] = u;
        var child = new Node { Fix = fix, Active = [], Weights = [], Excluded = node.Excluded };
        double total = 0;
        for (int k = 0; k < node.Active.Count; k++)
        {
            if (node.Active[k].Puts(layer, u) && (node.Excluded is null || !node.Active[k].Uses(node.Excluded))) { child.Active.Add(node.Active[k]); child.Weights.Add(node.Weights[k]); total += node.Weights[k]; }
        }
        for (int k = 0; k < child.Weights.Count; k++) { child.Weights[k] /= total; }
        if (!Evaluate(child)) { return null; }
        // A child's bound is at least its parent's (the relaxation only shrinks).
        child.Bound = Math.Max(child.Bound, node.Bound);
        double moved = 1 - node.X![u];
        if (moved > 1e-6 && double.IsFinite(child.Bound) && double.IsFinite(node.Bound))
        {
            _gainSum[layer] += (child.Bound - node.Bound) / moved;
            _gainCount[layer]++;
        }
        return child;
    }

    /// <summary>Evaluates the children of every fractional free layer of <paramref name="node"/> that has no pseudocost yet; the children by layer.</summary>
    Dictionary<int, List<Node?>>? InitialisePseudocosts(Node node)
    {
        Dictionary<int, List<Node?>>? tried = null;
        for (int i = 0; i < _l; i++)
        {
            if (node.Fix[i] >= 0 || _gainCount[i] > 0 || !Fractional(node.X!, i)) { continue; }
            var children = new List<Node?>();
            for (int u = _inst.Offsets[i]; u < _inst.Offsets[i + 1]; u++) { children.Add(node.Excluded?[u] == true ? null : Child(node, i, u)); }
            (tried ??= [])[i] = children;
        }
        return tried;
    }

    bool Fractional(double[] x, int layer)
    {
        double max = 0;
        for (int u = _inst.Offsets[layer]; u < _inst.Offsets[layer + 1]; u++) { max = Math.Max(max, x[u]); }
        return 1 - max > 1e-6;
    }

    /// <summary>
    /// The fractional free layer to branch on: the largest pseudocost estimate of the bound gain (ψ_i × (1 − max_u x_u), ψ_i the
    /// layer's mean bound gain per unit of moved mass in earlier branchings, the mean over layers until it has one), or the most
    /// fractional layer without pseudocosts; −1 when every free layer is integral.
    /// </summary>
    int ChooseBranch(int[] fix, double[] x)
    {
        int branch = -1;
        double bestScore = double.NegativeInfinity;
        double meanGain = _gainCount.Sum() > 0 ? _gainSum.Sum() / _gainCount.Sum() : 1;
        for (int i = 0; i < _l; i++)
        {
            if (fix[i] >= 0) { continue; }
            double max = 0;
            for (int u = _inst.Offsets[i]; u < _inst.Offsets[i + 1]; u++) { max = Math.Max(max, x[u]); }
            if (1 - max <= 1e-6) { continue; }
            double score = _pseudocosts ? (_gainCount[i] > 0 ? _gainSum[i] / _gainCount[i] : meanGain) * (1 - max) : 1 - max;
            if (score > bestScore) { (bestScore, branch) = (score, i); }
        }
        return branch;
    }

    /// <summary>Solves the node's relaxation (bound, branching layer; BranchLayer −1 = closed: pruned or fully fixed); false when the fixings are infeasible.</summary>
    bool Evaluate(Node node)
    {
        Nodes++;
        int[] fix = node.Fix;
        List<Vertex> active = node.Active;
        List<double> w = node.Weights;
        Array.Clear(_y);
        double cx = 0;
        if (active.Count == 0)
        {
            Array.Copy(_relax.C, _grad, _n);
            Vertex? first = Lmo(_grad, fix, node.Excluded);
            if (first is null) { return false; }
            active.Add(first);
            w.Add(1);
        }
        for (int k = 0; k < active.Count; k++)
        {
            TensorPrimitives.MultiplyAdd(active[k].Y, w[k], _y, _y);
            cx += w[k] * active[k].C;
        }
        double bound = double.NegativeInfinity, phi = 0, gxLast = 0;
        double tolerance = 0.05 * _options.RelativeGap * Math.Max(Math.Abs(_upper), 1e-300);
        double[] g = _relax.G, c = _relax.C;
        Vertex? lastS = null;
        for (int it = 0; it < _maxIterations; it++)
        {
            Iterations++;
            for (int u = 0; u < _n; u++) { _grad[u] = c[u] + 2 * TensorPrimitives.Dot(g.AsSpan(u * _r, _r), _y); }
            Vertex s = Lmo(_grad, fix, node.Excluded)!;
            lastS = s;
            double yy = Dot(_y, _y);
            phi = yy + cx + _relax.Constant;
            double gx = 2 * yy + cx;
            gxLast = gx;
            double gs = 2 * Dot(_y, s.Y) + s.C;
            bound = Math.Max(bound, phi - (gx - gs));
            if (bound >= PruneAt || phi - bound <= tolerance) { break; }
            // Away vertex: the active vertex with the largest gradient product.
            int away = 0;
            double ga = double.NegativeInfinity;
            for (int k = 0; k < active.Count; k++)
            {
                double gv = 2 * Dot(_y, active[k].Y) + active[k].C;
                if (gv > ga) { (ga, away) = (gv, k); }
            }
            bool forward = gx - gs >= ga - gx || active.Count == 1;
            double dc, gammaMax;
            if (forward)
            {
                TensorPrimitives.Subtract(s.Y, _y, _dy);
                (dc, gammaMax) = (s.C - cx, 1.0);
            }
            else
            {
                Vertex v = active[away];
                TensorPrimitives.Subtract(_y, v.Y, _dy);
                (dc, gammaMax) = (cx - v.C, w[away] / (1 - w[away]));
            }
            double slope = 2 * Dot(_y, _dy) + dc, curvature = 2 * Dot(_dy, _dy);
            if (slope >= 0) { break; }   // no descent left (rounding level)
            double gamma = curvature > 0 ? Math.Min(gammaMax, -slope / curvature) : gammaMax;
            TensorPrimitives.MultiplyAdd(_dy, gamma, _y, _y);
            cx += gamma * dc;
            if (forward)
            {
                for (int k = 0; k < w.Count; k++) { w[k] *= 1 - gamma; }
                int at = -1;
                for (int k = 0; k < active.Count && at < 0; k++) { if (active[k].SameAs(s)) { at = k; } }
                if (at >= 0) { w[at] += gamma; }
                else { active.Add(s); w.Add(gamma); }
                if (gamma >= 1) { active.Clear(); w.Clear(); active.Add(s); w.Add(1); }
            }
            else
            {
                for (int k = 0; k < w.Count; k++) { w[k] *= 1 + gamma; }
                w[away] -= gamma;
            }
            for (int k = w.Count - 1; k >= 0; k--)
            {
                if (w[k] <= 1e-14) { active.RemoveAt(k); w.RemoveAt(k); }
            }
        }
        node.Bound = bound;
        node.Value = phi;
        if (_reducedCostFixing && lastS is not null && bound < PruneAt) { FixByReducedCosts(node, phi - gxLast); }

        // Incumbents: the last linear-subproblem vertex rounded down (always feasible) and the rounded relaxation.
        if (lastS is not null) { TryIncumbent(RoundDown(lastS)); }
        var x = new double[_n];
        for (int k = 0; k < active.Count; k++) { Accumulate(active[k], w[k], x); }
        int[] rounded = _inst.ChoiceFromVector(x);
        if (_inst.Feasible(rounded)) { TryIncumbent(rounded); }

        // Branch on a fractional free layer (ChooseBranch). A node whose relaxation is integral and converged is closed.
        int branch = ChooseBranch(fix, x), firstFree = Array.FindIndex(fix, f => f < 0);
        node.X = x;
        // An integral relaxation point is not a proof (the bound may still be short of its value, e.g. after dropped
        // eigen-directions): keep branching unless the bound already prunes the node.
        if (branch < 0 && firstFree >= 0 && bound < PruneAt) { branch = firstFree; }
        node.BranchLayer = branch;
        if (branch < 0 && firstFree < 0)
        {
            // Every layer fixed: the node is one configuration, its bound is its exact value.
            var only = new int[_l];
            for (int i = 0; i < _l; i++) { only[i] = fix[i] - _inst.Offsets[i]; }
            node.Bound = _inst.Quadratic(only);
        }
        return true;
    }

    /// <summary>
    /// Reduced-cost fixing. φ is convex, so at the last iterate x, φ(z) ≥ ℓ(z) = φ(x) − ∇φ(x)ᵀx + ∇φ(x)ᵀz for every z. For any
    /// budget multiplier μ ≥ 0 and every z in the node's polytope, ∇φᵀz ≥ Σ_j min_t (∇φ_t + μa_t) − μb (weak duality); forcing
    /// layer i onto variable u raises that by r_u = ∇φ_u + μa_u − min_t (∇φ_t + μa_t). So every configuration below this node
    /// that uses u is worth at least <paramref name="offset"/> + D(μ) + r_u; when that reaches the pruning level, u is excluded
    /// from the node's subtree (the smallest such bound is kept in _excludedMin, so the final bound stays valid). μ is the
    /// LMO's own multiplier, for which D(μ) equals the node's linear bound.
    /// </summary>
    void FixByReducedCosts(Node node, double offset)
    {
        double mu = _mu, dual = -mu * _b;
        bool[]? ex = node.Excluded;
        for (int i = 0; i < _l; i++)
        {
            double min = double.PositiveInfinity;
            if (node.Fix[i] >= 0) { min = _grad[node.Fix[i]] + mu * _a[node.Fix[i]]; }
            else
            {
                for (int u = _inst.Offsets[i]; u < _inst.Offsets[i + 1]; u++)
                {
                    if (ex?[u] != true) { min = Math.Min(min, _grad[u] + mu * _a[u]); }
                }
            }
            dual += min;
        }
        if (!double.IsFinite(dual)) { return; }
        double prune = PruneAt;
        bool copied = false;
        for (int i = 0; i < _l; i++)
        {
            if (node.Fix[i] >= 0) { continue; }
            int lo = _inst.Offsets[i], hi = _inst.Offsets[i + 1];
            double min = double.PositiveInfinity;
            for (int u = lo; u < hi; u++) { if (ex?[u] != true) { min = Math.Min(min, _grad[u] + mu * _a[u]); } }
            for (int u = lo; u < hi; u++)
            {
                if (ex?[u] == true) { continue; }
                double bound = offset + dual + (_grad[u] + mu * _a[u] - min);
                if (bound < prune) { continue; }
                if (!copied) { ex = ex is null ? new bool[_n] : (bool[])ex.Clone(); copied = true; }
                ex![u] = true;
                _excludedMin = Math.Min(_excludedMin, bound);
                FixedOut++;
            }
        }
        node.Excluded = ex;
    }

    void TryIncumbent(int[] choice)
    {
        double value = _inst.Quadratic(choice);
        if (value >= _upper) { return; }
        value = LocalSearch.Improve(_inst, choice);
        if (value < _upper) { (_best, _upper) = (choice, value); }
    }

    int[] RoundDown(Vertex v)
    {
        var choice = new int[_l];
        for (int i = 0; i < _l; i++) { choice[i] = v.Choice[i] - _inst.Offsets[i]; }
        return choice;
    }

    void Accumulate(Vertex v, double weight, double[] x)
    {
        for (int i = 0; i < _l; i++) { x[v.Choice[i]] += weight; }
        if (v.FracLayer >= 0)
        {
            x[v.Choice[v.FracLayer]] -= weight * v.Theta;
            x[v.FracTo] += weight * v.Theta;
        }
    }

    static double Dot(double[] p, double[] q) => TensorPrimitives.Dot<double>(p, q);

    readonly List<(double Slope, int Layer, int From, int To)> _steps = [];

    /// <summary>
    /// min gᵀs over the node's polytope (one-hot simplices with fixings, budget row): the LP of a multiple-choice knapsack,
    /// solved exactly by the greedy over each layer's lower convex hull of (cost, g) points; null when infeasible.
    /// </summary>
    Vertex? Lmo(double[] grad, int[] fix, bool[]? excluded)
    {
        var choice = new int[_l];
        double use = 0;
        _steps.Clear();
        for (int i = 0; i < _l; i++)
        {
            int lo = _inst.Offsets[i], hi = _inst.Offsets[i + 1];
            if (fix[i] >= 0) { choice[i] = fix[i]; use += _a[fix[i]]; continue; }
            int cur = -1;
            for (int u = lo; u < hi; u++)
            {
                if (excluded?[u] == true) { continue; }
                if (cur < 0 || _a[u] < _a[cur] || (_a[u] == _a[cur] && grad[u] < grad[cur])) { cur = u; }
            }
            if (cur < 0) { return null; }   // every scheme of the layer excluded
            choice[i] = cur;
            use += _a[cur];
            while (true)
            {
                int next = -1;
                double bestSlope = 0;
                for (int u = lo; u < hi; u++)
                {
                    if (_a[u] <= _a[cur] || grad[u] >= grad[cur] || excluded?[u] == true) { continue; }
                    double slope = (grad[u] - grad[cur]) / (_a[u] - _a[cur]);
                    if (next < 0 || slope < bestSlope || (slope == bestSlope && _a[u] > _a[next])) { (next, bestSlope) = (u, slope); }
                }
                if (next < 0) { break; }
                _steps.Add((bestSlope, i, cur, next));
                cur = next;
            }
        }
        double left = _b - use;
        if (left < 0) { return null; }
        _steps.Sort(_stepOrder);
        int fracLayer = -1, fracTo = 0;
        double theta = 0;
        _mu = 0;
        foreach (var (slope, layer, from, to) in _steps)
        {
            if (choice[layer] != from) { continue; }   // an earlier step of this layer was cut short
            double cost = _a[to] - _a[from];
            if (cost <= left) { choice[layer] = to; left -= cost; continue; }
            if (left > 0) { (fracLayer, fracTo, theta) = (layer, to, left / cost); }
            _mu = Math.Max(0, -slope);   // the LP's budget multiplier: the exchange rate of the step the budget cuts
            break;
        }
        var y = new double[_r];
        double cv = 0;
        double[] g = _relax.G;
        for (int i = 0; i < _l; i++)
        {
            int u = choice[i];
            cv += _relax.C[u];
            TensorPrimitives.Add(y, g.AsSpan(u * _r, _r), y);
        }
        if (fracLayer >= 0)
        {
            int from = choice[fracLayer];
            cv += theta * (_relax.C[fracTo] - _relax.C[from]);
            // y += θ(G_to − G_from): the vertex moves θ of the layer's mass from one scheme to the next.
            TensorPrimitives.Subtract(g.AsSpan(fracTo * _r, _r), g.AsSpan(from * _r, _r), _step);
            TensorPrimitives.MultiplyAdd(_step, theta, y, y);
        }
        return new Vertex { Choice = choice, FracLayer = fracLayer, FracTo = fracTo, Theta = theta, Y = y, C = cv };
    }
}
