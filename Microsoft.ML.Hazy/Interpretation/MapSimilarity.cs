namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Similarity of two maps over the same features (attribution maps, reference maps): Pearson and Spearman correlation
/// and mutual information. An optional mask restricts them to the features inside it (the paper's brain mask).
/// </summary>
public static class MapSimilarity
{
    /// <summary>Pearson correlation of <paramref name="a"/> and <paramref name="b"/>; NaN when either is constant.</summary>
    /// <param name="a">The first map.</param>
    /// <param name="b">The second map, as long as <paramref name="a"/>.</param>
    /// <param name="mask">One flag per feature, or empty for all features.</param>
    public static double Pearson(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<bool> mask = default)
    {
        var (x, y) = Select(a, b, mask);
        return Pearson(x, y);
    }

    /// <summary>Spearman rank correlation (Pearson of ranks, ties given their mean rank); NaN when either map is constant.</summary>
    /// <param name="a">The first map.</param>
    /// <param name="b">The second map, as long as <paramref name="a"/>.</param>
    /// <param name="mask">One flag per feature, or empty for all features.</param>
    public static double Spearman(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<bool> mask = default)
    {
        var (x, y) = Select(a, b, mask);
        return Pearson(Ranks(x), Ranks(y));
    }

    /// <summary>
    /// Mutual information in nats, by the Kraskov–Stögbauer–Grassberger k-nearest-neighbour estimator (their first
    /// estimator), as scikit-learn's <c>mutual_info_regression</c> computes it for one continuous feature:
    /// I = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩, with the k-th neighbour distance in the max-norm of the joint space
    /// and n_x, n_y the points strictly closer than it in each marginal; negative estimates are reported as 0.
    /// </summary>
    /// <remarks>
    /// As in scikit-learn, both maps are divided by their standard deviation (not centred) and receive Gaussian noise of
    /// standard deviation 1e-10 · max(1, mean |value|) to break ties. The noise comes from a generator seeded with
    /// <paramref name="seed"/> (scikit-learn's default is unseeded), so results on maps with many tied values match
    /// scikit-learn's only in distribution.
    /// </remarks>
    /// <param name="a">The first map.</param>
    /// <param name="b">The second map, as long as <paramref name="a"/>.</param>
    /// <param name="mask">One flag per feature, or empty for all features.</param>
    /// <param name="neighbors">k, the neighbour count (scikit-learn's default 3).</param>
    /// <param name="seed">Seeds the tie-breaking noise.</param>
    public static double MutualInformation(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<bool> mask = default, int neighbors = 3, int seed = 0)
    {
        var (x, y) = Select(a, b, mask);
        if (neighbors < 1 || neighbors >= x.Length)
            throw new ArgumentOutOfRangeException(nameof(neighbors), neighbors, $"'{nameof(neighbors)}' is {neighbors}; expected 1 to {x.Length - 1} (one less than the number of features compared).");
        var rng = new Random(seed);
        Standardize(x, rng);
        Standardize(y, rng);
        return Ksg(x, y, neighbors);
    }

    internal static (double[] X, double[] Y) Select(ReadOnlySpan<float> a, ReadOnlySpan<float> b, ReadOnlySpan<bool> mask)
    {
        if (a.Length != b.Length)
            throw new ArgumentException($"The maps hold {a.Length} and {b.Length} values; expected equal lengths.", nameof(b));
        AttributionChecks.Mask(mask, a.Length, nameof(mask));
        int n = 0;
        for (int i = 0; i < a.Length; i++)
            n += mask.IsEmpty || mask[i] ? 1 : 0;
        var x = new double[n];
        var y = new double[n];
        for (int i = 0, j = 0; i < a.Length; i++)
        {
            if (mask.IsEmpty || mask[i])
            {
                x[j] = a[i];
                y[j++] = b[i];
            }
        }

        return (x, y);
    }

    internal static double Pearson(double[] x, double[] y)
    {
        int n = x.Length;
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++)
        {
            mx += x[i];
            my += y[i];
        }

        mx /= n;
        my /= n;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy;
            sxx += dx * dx;
            syy += dy * dy;
        }

        return sxx == 0 || syy == 0 ? double.NaN : Math.Clamp(sxy / Math.Sqrt(sxx * syy), -1, 1);
    }

    internal static double[] Ranks(double[] v)
    {
        var order = Enumerable.Range(0, v.Length).ToArray();
        Array.Sort((double[])v.Clone(), order);
        var ranks = new double[v.Length];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]])
                j++;
            double mean = (i + j) / 2.0 + 1;
            for (int q = i; q <= j; q++)
                ranks[order[q]] = mean;
            i = j + 1;
        }

        return ranks;
    }

    private static void Standardize(double[] v, Random rng)
    {
        int n = v.Length;
        double mean = v.Average(), variance = 0;
        foreach (double t in v)
            variance += (t - mean) * (t - mean);
        double sd = Math.Sqrt(variance / n);
        double meanAbs = 0;
        for (int i = 0; i < n; i++)
        {
            if (sd > 0)
                v[i] /= sd;
            meanAbs += Math.Abs(v[i]);
        }

        double noise = 1e-10 * Math.Max(1, meanAbs / n);
        for (int i = 0; i < n; i++)
            v[i] += noise * Gaussian(rng);
    }

    private static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    // KSG estimator 1: I = ψ(N) + ψ(k) − ⟨ψ(n_x + 1)⟩ − ⟨ψ(n_y + 1)⟩.
    private static double Ksg(double[] x, double[] y, int k)
    {
        int n = x.Length;
        var byX = Enumerable.Range(0, n).ToArray();
        Array.Sort((double[])x.Clone(), byX);
        var byY = Enumerable.Range(0, n).ToArray();
        Array.Sort((double[])y.Clone(), byY);
        var xs = byX.Select(i => x[i]).ToArray();
        var ysByX = byX.Select(i => y[i]).ToArray();
        var ys = byY.Select(i => y[i]).ToArray();
        var rankY = new int[n];
        for (int i = 0; i < n; i++)
            rankY[byY[i]] = i;
        var harmonic = new double[n + 1];
        for (int i = 1; i <= n; i++)
            harmonic[i] = harmonic[i - 1] + 1.0 / i;
        double Digamma(int m) => harmonic[m - 1] - 0.57721566490153286;

        var best = new double[k];
        double sum = 0;
        for (int p = 0; p < n; p++)
        {
            Array.Fill(best, double.PositiveInfinity);
            int left = p - 1, right = p + 1;
            while (true)
            {
                double dl = left >= 0 ? xs[p] - xs[left] : double.PositiveInfinity;
                double dr = right < n ? xs[right] - xs[p] : double.PositiveInfinity;
                int q;
                double dx;
                if (dl <= dr) { q = left--; dx = dl; }
                else { q = right++; dx = dr; }
                if (dx >= best[k - 1])
                    break;
                double dist = Math.Max(dx, Math.Abs(ysByX[q] - ysByX[p]));
                if (dist < best[k - 1])
                {
                    int at = k - 1;
                    while (at > 0 && best[at - 1] > dist)
                    {
                        best[at] = best[at - 1];
                        at--;
                    }

                    best[at] = dist;
                }
            }

            double radius = best[k - 1] > 0 ? Math.BitDecrement(best[k - 1]) : 0;
            sum += Digamma(CountWithin(xs, p, radius) + 1) + Digamma(CountWithin(ys, rankY[byX[p]], radius) + 1);
        }

        return Math.Max(0, Digamma(n) + Digamma(k) - sum / n);
    }

    /// <summary>Points other than <paramref name="p"/> within <paramref name="radius"/> of sorted[p].</summary>
    private static int CountWithin(double[] sorted, int p, double radius)
    {
        int count = 0;
        for (int i = p - 1; i >= 0 && sorted[p] - sorted[i] <= radius; i--)
            count++;
        for (int i = p + 1; i < sorted.Length && sorted[i] - sorted[p] <= radius; i++)
            count++;
        return count;
    }
}
