namespace Microsoft.ML.Hazy.Slicing.Evaluation;

/// <summary>
/// Subsamples rows so that two binary attributes reach a target Pearson correlation while keeping given means, as the
/// Domino evaluation builds its correlation slices.
/// </summary>
public static class InducedCorrelation
{
    /// <summary>
    /// The cell counts of a sample of <paramref name="n"/> rows with means μ_a, μ_b and correlation ρ:
    /// n₁₁ = n μ_a μ_b + ρ √(μ_a(1−μ_a) μ_b(1−μ_b)) (n − 1), n₁₀ = n μ_a − n₁₁, n₀₁ = n μ_b − n₁₁, n₀₀ = n − (n μ_a + n μ_b − n₁₁),
    /// each rounded to the nearest row.
    /// </summary>
    /// <param name="n">Rows in the sample.</param>
    /// <param name="correlation">The target correlation ρ.</param>
    /// <param name="meanA">μ_a, the share of rows with attribute a.</param>
    /// <param name="meanB">μ_b, the share of rows with attribute b.</param>
    /// <returns>The counts (a, b) = (1, 1), (1, 0), (0, 1), (0, 0).</returns>
    public static (int N11, int N10, int N01, int N00) CellCounts(int n, double correlation, double meanA, double meanB)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 2);
        if (!(meanA > 0 && meanA < 1) || !(meanB > 0 && meanB < 1))
            throw new ArgumentOutOfRangeException(nameof(meanA), "Both means must lie strictly between 0 and 1.");
        if (!(correlation >= -1 && correlation <= 1))
            throw new ArgumentOutOfRangeException(nameof(correlation), correlation, "The correlation must lie in [−1, 1].");
        double n11 = n * meanA * meanB + correlation * Math.Sqrt(meanA * (1 - meanA) * meanB * (1 - meanB)) * (n - 1);
        double n10 = n * meanA - n11, n01 = n * meanB - n11, n00 = n - (n * meanA + n * meanB - n11);
        if (n11 < 0 || n10 < 0 || n01 < 0 || n00 < 0)
            throw new ArgumentOutOfRangeException(nameof(correlation), correlation, $"A correlation of {correlation} is not reachable with means {meanA} and {meanB}.");
        return ((int)Math.Round(n11), (int)Math.Round(n10), (int)Math.Round(n01), (int)Math.Round(n00));
    }

    /// <summary>Draws, without replacement, the rows of a sample with the cell counts of <see cref="CellCounts"/>.</summary>
    /// <param name="a">Attribute a of each candidate row.</param>
    /// <param name="b">Attribute b of each candidate row.</param>
    /// <param name="n">Rows in the sample.</param>
    /// <param name="correlation">The target correlation.</param>
    /// <param name="random">The random source.</param>
    /// <param name="meanA">μ_a; the candidates' share when null.</param>
    /// <param name="meanB">μ_b; the candidates' share when null.</param>
    /// <returns>Indices of the chosen rows, in increasing order.</returns>
    public static int[] Sample(IReadOnlyList<bool> a, IReadOnlyList<bool> b, int n, double correlation, Random random, double? meanA = null, double? meanB = null)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        ArgumentNullException.ThrowIfNull(random);
        if (a.Count != b.Count)
            throw new ArgumentException($"The attributes have {a.Count} and {b.Count} rows.", nameof(b));
        double ma = meanA ?? a.Count(v => v) / (double)a.Count;
        double mb = meanB ?? b.Count(v => v) / (double)b.Count;
        var (n11, n10, n01, n00) = CellCounts(n, correlation, ma, mb);
        var chosen = new List<int>();
        foreach (var (wantA, wantB, count) in new[] { (true, true, n11), (true, false, n10), (false, true, n01), (false, false, n00) })
        {
            var pool = Enumerable.Range(0, a.Count).Where(i => a[i] == wantA && b[i] == wantB).ToArray();
            if (pool.Length < count)
                throw new InvalidOperationException($"The cell (a = {wantA}, b = {wantB}) needs {count} rows but has {pool.Length}.");
            random.Shuffle(pool);
            chosen.AddRange(pool.Take(count));
        }
        chosen.Sort();
        return chosen.ToArray();
    }
}
