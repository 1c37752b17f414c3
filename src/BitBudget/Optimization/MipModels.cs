using System.Diagnostics;
using Google.OrTools.LinearSolver;

namespace BitBudget.Optimization;

/// <summary>What a MIP solve returned: the configuration (null when none), the solver's proven bound, and whether it proved optimality.</summary>
internal sealed record MipOutcome(int[]? Choice, double Bound, bool Optimal, bool Infeasible, string Solver);

/// <summary>The integer models, built with OR-Tools' MPSolver (HiGHS or SCIP).</summary>
internal static class MipModels
{
    /// <summary>Creates the MPSolver backend ("HIGHS" or "SCIP") with the shared parameters.</summary>
    static Solver Create(string backend, SearchOptions options, TimeSpan remaining)
    {
        Solver? solver = Solver.CreateSolver(backend) ?? throw Errors.Runtime(
            $"The OR-Tools build has no '{backend}' solver; use HiGHS or SCIP.");
        solver.SuppressOutput();
        // HiGHS prints its banner to stdout unless its own output flag is off; stdout belongs to --json.
        if (backend == "HIGHS") { solver.SetSolverSpecificParametersAsString("output_flag=false\nlog_to_console=false\n"); }
        solver.SetTimeLimit((long)Math.Max(1, remaining.TotalMilliseconds));
        if (options.Threads > 0) { solver.SetNumThreads(options.Threads); }
        return solver;
    }

    /// <summary>x_u binaries, one-hot rows per layer, the budget rows and one "not this one" row per excluded configuration.</summary>
    static Variable[] AddAssignment(Solver solver, Instance inst, IReadOnlyList<int[]>? excluded = null)
    {
        var x = new Variable[inst.N];
        for (int u = 0; u < inst.N; u++) { x[u] = solver.MakeBoolVar($"x{u}"); }
        for (int i = 0; i < inst.L; i++)
        {
            Constraint oneHot = solver.MakeConstraint(1, 1, $"layer{i}");
            for (int u = inst.Offsets[i]; u < inst.Offsets[i + 1]; u++) { oneHot.SetCoefficient(x[u], 1); }
        }
        for (int k = 0; k < inst.Rows.Length; k++)
        {
            Constraint row = solver.MakeConstraint(double.NegativeInfinity, inst.Rhs[k], $"budget{k}");
            for (int u = 0; u < inst.N; u++) { row.SetCoefficient(x[u], inst.Rows[k][u]); }
        }
        // No-good cut: at most L − 1 of an excluded configuration's choices, so at least one layer differs.
        foreach (int[] choice in excluded ?? [])
        {
            Constraint cut = solver.MakeConstraint(double.NegativeInfinity, inst.L - 1);
            for (int i = 0; i < inst.L; i++) { cut.SetCoefficient(x[inst.Offsets[i] + choice[i]], 1); }
        }
        return x;
    }

    static MipOutcome Finish(Solver solver, Instance inst, Variable[] x, MPSolverParameters parameters, string name)
    {
        Solver.ResultStatus status = solver.Solve(parameters);
        if (status == Solver.ResultStatus.INFEASIBLE) { return new MipOutcome(null, double.PositiveInfinity, false, true, name); }
        if (status is not (Solver.ResultStatus.OPTIMAL or Solver.ResultStatus.FEASIBLE))
        {
            return new MipOutcome(null, SafeBound(solver), false, false, name);
        }
        var values = new double[inst.N];
        for (int u = 0; u < inst.N; u++) { values[u] = x[u].SolutionValue(); }
        bool optimal = status == Solver.ResultStatus.OPTIMAL;
        double bound = optimal ? Math.Min(SafeBound(solver), solver.Objective().Value()) : SafeBound(solver);
        return new MipOutcome(inst.ChoiceFromVector(values), bound, optimal, false, name);
    }

    static double SafeBound(Solver solver)
    {
        double b = solver.Objective().BestBound();
        return double.IsFinite(b) ? b : double.NegativeInfinity;
    }

    static MPSolverParameters Parameters(SearchOptions options)
    {
        var p = new MPSolverParameters();
        p.SetDoubleParam(MPSolverParameters.DoubleParam.RELATIVE_MIP_GAP, options.RelativeGap);
        return p;
    }

    static void Hint(Solver solver, Instance inst, Variable[] x, int[]? start)
    {
        if (start is null) { return; }
        var values = new double[inst.N];
        for (int i = 0; i < inst.L; i++) { values[inst.Offsets[i] + start[i]] = 1; }
        solver.SetHint(x, values);
    }

    /// <summary>Independent ILP: minimise diag(Q)ᵀx under the same constraints.</summary>
    public static MipOutcome Independent(Instance inst, SearchOptions options, string backend, TimeSpan remaining, IReadOnlyList<int[]>? excluded = null)
    {
        using Solver solver = Create(backend, options, remaining);
        Variable[] x = AddAssignment(solver, inst, excluded);
        Objective objective = solver.Objective();
        for (int u = 0; u < inst.N; u++) { objective.SetCoefficient(x[u], inst.Q[u * inst.N + u]); }
        objective.SetMinimization();
        using var parameters = Parameters(options);
        return Finish(solver, inst, x, parameters, $"{Display(backend)} ILP (diagonal of Ω)");
    }

    /// <summary>
    /// Exact MILP of xᵀQx: y_uv = x_u·x_v for u &lt; v in different layers. With <paramref name="rlt"/> the products are tied
    /// by Σ_{t ∈ layer j} y_{u,(j,t)} = x_u for every u and every other layer j (the one-hot rows multiplied by x_u),
    /// which is exact on binaries and much tighter than McCormick alone; without it, plain McCormick inequalities.
    /// </summary>
    public static MipOutcome Linearized(Instance inst, SearchOptions options, string backend, bool rlt, int[]? start, TimeSpan remaining,
        IReadOnlyList<int[]>? excluded = null)
    {
        int n = inst.N;
        using Solver solver = Create(backend, options, remaining);
        Variable[] x = AddAssignment(solver, inst, excluded);
        Objective objective = solver.Objective();
        for (int u = 0; u < n; u++) { objective.SetCoefficient(x[u], inst.Q[u * n + u]); }
        // y[u][j - layerOf(u) - 1 ...]: stored in a dictionary-free jagged layout indexed by v.
        var y = new Variable?[n][];
        for (int u = 0; u < n; u++)
        {
            y[u] = new Variable?[n];
            for (int v = inst.Offsets[inst.LayerOf[u] + 1]; v < n; v++)
            {
                Variable p = solver.MakeNumVar(0, 1, $"y{u}_{v}");
                y[u][v] = p;
                objective.SetCoefficient(p, 2 * inst.Q[u * n + v]);
                if (!rlt)
                {
                    Constraint a = solver.MakeConstraint(double.NegativeInfinity, 0);
                    a.SetCoefficient(p, 1); a.SetCoefficient(x[u], -1);
                    Constraint b = solver.MakeConstraint(double.NegativeInfinity, 0);
                    b.SetCoefficient(p, 1); b.SetCoefficient(x[v], -1);
                    Constraint c = solver.MakeConstraint(-1, double.PositiveInfinity);
                    c.SetCoefficient(p, 1); c.SetCoefficient(x[u], -1); c.SetCoefficient(x[v], -1);
                }
            }
        }
        if (rlt)
        {
            for (int u = 0; u < n; u++)
            {
                for (int j = 0; j < inst.L; j++)
                {
                    if (j == inst.LayerOf[u]) { continue; }
                    Constraint row = solver.MakeConstraint(0, 0);
                    row.SetCoefficient(x[u], -1);
                    for (int v = inst.Offsets[j]; v < inst.Offsets[j + 1]; v++) { row.SetCoefficient(u < v ? y[u][v]! : y[v][u]!, 1); }
                }
            }
        }
        objective.SetMinimization();
        // MPSolver's HiGHS interface crashes the process on SetHint (OR-Tools 9.15), so only SCIP gets the warm start.
        if (backend != "HIGHS") { Hint(solver, inst, x, start); }
        using var parameters = Parameters(options);
        return Finish(solver, inst, x, parameters, $"{Display(backend)} MILP ({(rlt ? "one-hot RLT linearization" : "McCormick linearization")})");
    }

    /// <summary>
    /// Outer approximation of the convex form: with Ω = Σ_k λ_k v_k v_kᵀ (PSD), xᵀΩx = Σ_k t_k where t_k ≥ λ_k (v_kᵀx)²;
    /// each round solves the MILP with the tangent cuts so far (its optimum is a valid lower bound), evaluates the true
    /// objective at its solution (an upper bound), and adds the tangents at that point, until the gap closes.
    /// </summary>
    public static (MipOutcome Outcome, int Rounds) OuterApproximation(Instance inst, SearchOptions options, string backend,
        int[] start, double startValue, Stopwatch clock, CancellationToken cancellationToken)
    {
        int n = inst.N;
        var (lambda, vectors) = PsdProjection.Eigen(inst.Problem.Omega);
        double maxLambda = lambda.Max();
        if (lambda.Min() < -1e-8 * Math.Max(maxLambda, 1e-300))
        {
            throw Errors.InvalidInput(FormattableString.Invariant(
                $"Outer approximation needs a positive semidefinite Ω but its smallest eigenvalue is {lambda.Min():G4}; project it first (PsdProjection)."));
        }
        var directions = new List<int>();
        for (int k = 0; k < lambda.Length; k++) { if (lambda[k] > 1e-12 * maxLambda) { directions.Add(k); } }

        using Solver solver = Create(backend, options, options.TimeLimit);
        Variable[] x = AddAssignment(solver, inst);
        var z = new Variable[directions.Count];
        var t = new Variable[directions.Count];
        Objective objective = solver.Objective();
        for (int d = 0; d < directions.Count; d++)
        {
            int k = directions[d];
            z[d] = solver.MakeNumVar(double.NegativeInfinity, double.PositiveInfinity, $"z{k}");
            t[d] = solver.MakeNumVar(0, double.PositiveInfinity, $"t{k}");
            Constraint link = solver.MakeConstraint(0, 0);
            link.SetCoefficient(z[d], -1);
            for (int u = 0; u < n; u++) { link.SetCoefficient(x[u], vectors[u, k]); }
            objective.SetCoefficient(t[d], 1);
        }
        objective.SetMinimization();

        void AddCuts(int[] choice)
        {
            for (int d = 0; d < directions.Count; d++)
            {
                int k = directions[d];
                double z0 = 0;
                for (int i = 0; i < inst.L; i++) { z0 += vectors[inst.Offsets[i] + choice[i], k]; }
                // t ≥ λ(2·z0·z − z0²), the tangent of λz² at z0.
                Constraint cut = solver.MakeConstraint(-lambda[k] * z0 * z0, double.PositiveInfinity);
                cut.SetCoefficient(t[d], 1);
                cut.SetCoefficient(z[d], -2 * lambda[k] * z0);
            }
        }

        int[] best = start;
        double upper = startValue, lower = double.NegativeInfinity;
        AddCuts(start);
        int rounds = 0;
        bool optimal = false;
        using var parameters = Parameters(options);
        while (!cancellationToken.IsCancellationRequested)
        {
            TimeSpan remaining = options.TimeLimit - clock.Elapsed;
            if (remaining <= TimeSpan.Zero) { break; }
            solver.SetTimeLimit((long)Math.Max(1, remaining.TotalMilliseconds));
            Solver.ResultStatus status = solver.Solve(parameters);
            rounds++;
            if (status is not (Solver.ResultStatus.OPTIMAL or Solver.ResultStatus.FEASIBLE)) { break; }
            double roundBound = SafeBound(solver);
            if (status == Solver.ResultStatus.OPTIMAL) { roundBound = Math.Min(roundBound, solver.Objective().Value()); }
            // The relaxation only gains cuts, so its optimum never decreases; keep the best proven value.
            lower = Math.Max(lower, roundBound);
            var values = new double[n];
            for (int u = 0; u < n; u++) { values[u] = x[u].SolutionValue(); }
            int[] choice = inst.ChoiceFromVector(values);
            double value = inst.Quadratic(choice);
            if (value < upper) { (best, upper) = (choice, value); }
            if (Gap(upper, lower) <= options.RelativeGap) { optimal = true; break; }
            if (status != Solver.ResultStatus.OPTIMAL) { break; }   // a time-limited round gives no new point worth cutting
            AddCuts(choice);
        }
        return (new MipOutcome(best, lower, optimal, false, $"{Display(backend)} outer approximation ({directions.Count} eigen-directions)"), rounds);
    }

    internal static double Gap(double objective, double bound)
    {
        if (!double.IsFinite(bound)) { return double.PositiveInfinity; }
        double diff = Math.Max(0, objective - bound);
        double scale = Math.Max(Math.Abs(objective), Math.Abs(bound));
        return diff == 0 ? 0 : diff / Math.Max(scale, 1e-300);
    }

    static string Display(string backend) => backend == "HIGHS" ? "HiGHS" : backend;
}
