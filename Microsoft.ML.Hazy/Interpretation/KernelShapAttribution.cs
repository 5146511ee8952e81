using System.Numerics;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Sampling KernelSHAP (Lundberg and Lee 2017): Shapley values of feature groups estimated by a weighted least-squares
/// fit of the model's outputs on coalitions, each coalition taking the row's values in its groups and the baseline's
/// elsewhere, weighted by the Shapley kernel π(z) = (M − 1) / (C(M, |z|) |z| (M − |z|)). The efficiency constraint
/// Σφ = f(x) − f(baseline) holds exactly (one group is eliminated, as in the shap library).
/// </summary>
/// <remarks>
/// Coalitions are chosen as shap's <c>KernelExplainer</c> does: coalition sizes from the extremes (1 and M − 1,
/// then 2 and M − 2, ...) are enumerated completely while the budget allows, the remaining budget is sampled
/// (sizes by kernel weight, members uniformly, each sample with its complement), and when the budget reaches
/// 2^M − 2 every coalition is used and the values are the exact Shapley values. Unlike shap, the coalitions are
/// drawn once, from <see cref="Options.Seed"/>, and shared by every row, so one factorisation serves all rows and
/// the result does not depend on the batching. Every feature of a group receives the group's value (as with
/// Captum's feature masks); <see cref="AttributeGroups"/> returns the group values themselves.
/// A row costs <see cref="CoalitionCount"/> + 1 model evaluations; the baseline is scored once per call.
/// </remarks>
public sealed class KernelShapAttribution : IAttributionMethod
{
    /// <summary>Options of <see cref="KernelShapAttribution"/>.</summary>
    public sealed class Options
    {
        /// <summary>Coalitions evaluated per row; null: 2M + 2048 (shap's "auto"), M the number of groups. Capped at 2^M − 2.</summary>
        public int? NumberOfEvaluations { get; set; }

        /// <summary>The values a feature takes when its group is absent; null: zeros.</summary>
        public float[]? Baseline { get; set; }

        /// <summary>The group of each feature (0 to M − 1, every group used), e.g. superpixels; null: one group per feature.</summary>
        public int[]? FeatureGroups { get; set; }

        /// <summary>Seeds the coalition sampling.</summary>
        public int Seed { get; set; }

        /// <summary>Perturbed rows per call to the score function.</summary>
        public int BatchSize { get; set; } = 1024;
    }

    private readonly IScoreFunction _model;
    private readonly float[] _baseline;
    private readonly int[] _groups;
    private readonly int _batchSize;
    private readonly byte[][] _coalitions;
    private readonly double[] _weights;
    private readonly double[,]? _cholesky;

    /// <summary>KernelSHAP of <paramref name="model"/>.</summary>
    /// <param name="model">The scores to explain.</param>
    /// <param name="options">Budget, baseline, groups and seed; null for the defaults.</param>
    public KernelShapAttribution(IScoreFunction model, Options? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new Options();
        _model = model;
        int d = model.FeatureSize;
        _baseline = options.Baseline?.ToArray() ?? new float[d];
        if (_baseline.Length != d)
            throw new ArgumentException($"Baseline holds {_baseline.Length} values; expected the model's feature size {d}.", nameof(options));
        _groups = options.FeatureGroups?.ToArray() ?? Enumerable.Range(0, d).ToArray();
        if (_groups.Length != d)
            throw new ArgumentException($"FeatureGroups holds {_groups.Length} values; expected the model's feature size {d}.", nameof(options));
        int m = _groups.Length == 0 ? 0 : _groups.Max() + 1;
        var used = new bool[m];
        foreach (int g in _groups)
        {
            if (g < 0)
                throw new ArgumentException($"FeatureGroups holds the group id {g}; expected 0 to M − 1.", nameof(options));
            used[g] = true;
        }

        int unused = Array.IndexOf(used, false);
        if (unused >= 0)
            throw new ArgumentException($"FeatureGroups uses ids up to {m - 1} but not {unused}; expected every id from 0 to M − 1.", nameof(options));
        GroupCount = m;
        AttributionChecks.Positive(options.BatchSize, nameof(options.BatchSize));
        _batchSize = options.BatchSize;
        long budget = options.NumberOfEvaluations ?? 2L * m + 2048;
        if (budget < m - 1 || budget < 1)
            throw new ArgumentOutOfRangeException(nameof(options), budget, $"NumberOfEvaluations is {budget}; expected at least M − 1 = {m - 1} coalitions to determine {m} group values.");
        if (m <= 30)
            budget = Math.Min(budget, (1L << m) - 2);
        (_coalitions, _weights) = m < 2 ? ([], []) : Coalitions(m, (int)Math.Min(budget, int.MaxValue), options.Seed);
        if (m >= 2)
            _cholesky = Factor(m);
    }

    /// <inheritdoc/>
    public string Name => "KernelSHAP";

    /// <inheritdoc/>
    public int FeatureSize => _model.FeatureSize;

    /// <summary>The number M of feature groups (players).</summary>
    public int GroupCount { get; }

    /// <summary>The distinct coalitions evaluated per row.</summary>
    public int CoalitionCount => _coalitions.Length;

    /// <inheritdoc/>
    public float[] Attribute(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> targets)
    {
        var phi = AttributeGroups(features, count, targets);
        int d = FeatureSize, m = GroupCount;
        var result = new float[(long)count * d];
        for (int r = 0; r < count; r++)
            for (int i = 0; i < d; i++)
                result[r * d + i] = phi[r * m + _groups[i]];
        return result;
    }

    /// <summary>The Shapley values of the groups: count × <see cref="GroupCount"/>, row-major; each row sums to f(x) − f(baseline).</summary>
    /// <param name="features">count × <see cref="FeatureSize"/> values, row-major.</param>
    /// <param name="count">The number of rows.</param>
    /// <param name="targets">The output explained for each row.</param>
    public float[] AttributeGroups(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> targets)
    {
        int d = FeatureSize, k = _model.OutputCount, m = GroupCount, s = _coalitions.Length;
        AttributionChecks.Rows(features.Length, count, d, nameof(features));
        AttributionChecks.Targets(targets, count, k, nameof(targets));
        var full = _model.Score(features, count);
        var empty = _model.Score(_baseline, 1);
        var y = new float[(long)count * s];
        long jobs = (long)count * s;
        int batch = (int)Math.Min(_batchSize, Math.Max(1, jobs));
        var buffer = new float[batch * d];
        for (long start = 0; start < jobs; start += batch)
        {
            int n = (int)Math.Min(batch, jobs - start);
            for (int j = 0; j < n; j++)
            {
                int row = (int)((start + j) / s);
                var z = _coalitions[(start + j) % s];
                var x = features.Slice(row * d, d);
                var h = buffer.AsSpan(j * d, d);
                for (int i = 0; i < d; i++)
                    h[i] = z[_groups[i]] != 0 ? x[i] : _baseline[i];
            }

            var scores = _model.Score(buffer.AsSpan(0, n * d), n);
            for (int j = 0; j < n; j++)
            {
                long job = start + j;
                y[job] = scores[j * k + targets[(int)(job / s)]];
            }
        }

        var phi = new float[(long)count * m];
        var rhs = new double[Math.Max(0, m - 1)];
        for (int r = 0; r < count; r++)
        {
            double f0 = empty[targets[r]], delta = full[r * k + targets[r]] - f0;
            if (m == 1)
            {
                phi[r] = (float)delta;
                continue;
            }

            // Efficiency eliminates φ_last: y − f0 − z_last Δ = Σ_{j<last} φ_j (z_j − z_last).
            Array.Clear(rhs);
            for (int c = 0; c < s; c++)
            {
                var z = _coalitions[c];
                int last = z[m - 1];
                double v = _weights[c] * (y[(long)r * s + c] - f0 - last * delta);
                for (int j = 0; j < m - 1; j++)
                    rhs[j] += (z[j] - last) * v;
            }

            Solve(_cholesky!, rhs);
            double sum = 0;
            for (int j = 0; j < m - 1; j++)
            {
                phi[r * m + j] = (float)rhs[j];
                sum += rhs[j];
            }

            phi[r * m + m - 1] = (float)(delta - sum);
        }

        return phi;
    }

    /// <summary>shap's coalition schedule: whole subset sizes from the extremes while the budget allows, then paired samples.</summary>
    private static (byte[][] Masks, double[] Weights) Coalitions(int m, int budget, int seed)
    {
        int sizes = (m - 1 + 1) / 2, pairedSizes = (m - 1) / 2;
        var weightOfSize = new double[sizes];
        for (int s = 1; s <= sizes; s++)
            weightOfSize[s - 1] = (m - 1.0) / (s * (double)(m - s)) * (s <= pairedSizes ? 2 : 1);
        double total = weightOfSize.Sum();
        for (int i = 0; i < sizes; i++)
            weightOfSize[i] /= total;

        var masks = new List<byte[]>();
        var weights = new List<double>();
        var remaining = (double[])weightOfSize.Clone();
        int left = budget, fullSizes = 0;
        for (int s = 1; s <= sizes; s++)
        {
            double subsets = Binomial(m, s) * (s <= pairedSizes ? 2 : 1);
            if (left * remaining[s - 1] / subsets < 1 - 1e-8)
                break;
            fullSizes++;
            left -= (int)subsets;
            if (remaining[s - 1] < 1)
            {
                double scale = 1 - remaining[s - 1];
                for (int i = 0; i < sizes; i++)
                    remaining[i] /= scale;
            }

            double w = weightOfSize[s - 1] / Binomial(m, s) / (s <= pairedSizes ? 2 : 1);
            var members = Enumerable.Range(0, s).ToArray();
            do
            {
                var mask = new byte[m];
                foreach (int i in members)
                    mask[i] = 1;
                masks.Add(mask);
                weights.Add(w);
                if (s <= pairedSizes)
                {
                    masks.Add(Complement(mask));
                    weights.Add(w);
                }
            }
            while (NextCombination(members, m));
        }

        if (fullSizes == sizes || left <= 0)
            return (masks.ToArray(), weights.ToArray());

        int fixedCount = masks.Count;
        var draw = new double[sizes - fullSizes];
        for (int i = 0; i < draw.Length; i++)
            draw[i] = weightOfSize[fullSizes + i] / (fullSizes + i + 1 <= pairedSizes ? 2 : 1);
        double drawTotal = draw.Sum();
        var rng = new Random(seed);
        var order = Enumerable.Range(0, m).ToArray();
        var seen = new Dictionary<byte[], int>(new MaskComparer());
        for (int attempt = 0; attempt < 4 * budget && left > 0; attempt++)
        {
            double u = rng.NextDouble() * drawTotal;
            int pick = 0;
            while (pick < draw.Length - 1 && (u -= draw[pick]) >= 0)
                pick++;
            int size = fullSizes + pick + 1;
            var mask = new byte[m];
            for (int i = 0; i < size; i++)
            {
                int j = rng.Next(i, m);
                (order[i], order[j]) = (order[j], order[i]);
                mask[order[i]] = 1;
            }

            bool isNew = !seen.TryGetValue(mask, out int at);
            if (isNew)
            {
                seen[mask] = at = masks.Count;
                masks.Add(mask);
                weights.Add(1);
                left--;
            }
            else
                weights[at]++;

            if (left > 0 && size <= pairedSizes)
            {
                if (isNew)
                {
                    masks.Add(Complement(mask));
                    weights.Add(1);
                    left--;
                }
                else
                    weights[at + 1]++;
            }
        }

        double sampled = 0, weightLeft = 0;
        for (int i = fixedCount; i < weights.Count; i++)
            sampled += weights[i];
        for (int i = fullSizes; i < sizes; i++)
            weightLeft += weightOfSize[i];
        for (int i = fixedCount; i < weights.Count; i++)
            weights[i] *= weightLeft / sampled;
        return (masks.ToArray(), weights.ToArray());
    }

    /// <summary>Cholesky factor of AᵀWA, A[c, j] = z_cj − z_c,last (the normal matrix of the constrained fit).</summary>
    private double[,] Factor(int m)
    {
        int p = m - 1;
        var a = new double[p, p];
        var row = new double[p];
        int lanes = Vector<double>.Count;
        foreach (var (z, w) in _coalitions.Zip(_weights))
        {
            int last = z[m - 1];
            for (int j = 0; j < p; j++)
                row[j] = z[j] - last;
            for (int i = 0; i < p; i++)
            {
                if (row[i] == 0)
                    continue;
                double wi = w * row[i];
                var target = System.Runtime.InteropServices.MemoryMarshal.CreateSpan(ref a[i, 0], p);
                int j = 0;
                var vw = new Vector<double>(wi);
                for (; j <= p - lanes; j += lanes)
                    (new Vector<double>(target[j..]) + vw * new Vector<double>(row, j)).CopyTo(target[j..]);
                for (; j < p; j++)
                    target[j] += wi * row[j];
            }
        }

        double scale = 0;
        for (int i = 0; i < p; i++)
            scale = Math.Max(scale, a[i, i]);
        for (int j = 0; j < p; j++)
        {
            double diag = a[j, j];
            for (int q = 0; q < j; q++)
                diag -= a[j, q] * a[j, q];
            if (diag <= 1e-12 * scale)
                throw new InvalidOperationException($"The {_coalitions.Length} coalitions do not determine the {m} group values; raise NumberOfEvaluations.");
            a[j, j] = Math.Sqrt(diag);
            for (int i = j + 1; i < p; i++)
            {
                double v = a[i, j];
                for (int q = 0; q < j; q++)
                    v -= a[i, q] * a[j, q];
                a[i, j] = v / a[j, j];
            }
        }

        return a;
    }

    private static void Solve(double[,] l, double[] b)
    {
        int p = b.Length;
        for (int i = 0; i < p; i++)
        {
            double v = b[i];
            for (int q = 0; q < i; q++)
                v -= l[i, q] * b[q];
            b[i] = v / l[i, i];
        }

        for (int i = p - 1; i >= 0; i--)
        {
            double v = b[i];
            for (int q = i + 1; q < p; q++)
                v -= l[q, i] * b[q];
            b[i] = v / l[i, i];
        }
    }

    private static byte[] Complement(byte[] mask)
    {
        var c = new byte[mask.Length];
        for (int i = 0; i < c.Length; i++)
            c[i] = (byte)(1 - mask[i]);
        return c;
    }

    private static double Binomial(int n, int k)
    {
        double r = 1;
        for (int i = 1; i <= k; i++)
            r = r * (n - k + i) / i;
        return Math.Round(r);
    }

    private static bool NextCombination(int[] c, int n)
    {
        int k = c.Length, i = k - 1;
        while (i >= 0 && c[i] == n - k + i)
            i--;
        if (i < 0)
            return false;
        c[i]++;
        for (int j = i + 1; j < k; j++)
            c[j] = c[j - 1] + 1;
        return true;
    }

    private sealed class MaskComparer : IEqualityComparer<byte[]>
    {
        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj)
        {
            var hash = new HashCode();
            hash.AddBytes(obj);
            return hash.ToHashCode();
        }
    }
}
