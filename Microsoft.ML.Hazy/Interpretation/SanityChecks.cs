namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// The sanity checks of Adebayo et al. (2018) as Thomas et al. use them: attributions of a model with randomised
/// weights, or of a model trained on permuted labels, should differ from the original attributions. The caller
/// computes both sets of maps; <see cref="Compare"/> measures how similar they are (low is good).
/// </summary>
public static class SanityChecks
{
    /// <summary>Row-by-row similarity of two sets of attribution maps, averaged over the rows.</summary>
    /// <param name="original">count × featureSize attributions of the trained model, row-major.</param>
    /// <param name="randomized">count × featureSize attributions of the randomised model, same layout.</param>
    /// <param name="count">The number of rows.</param>
    /// <param name="mask">One flag per feature, or empty for all features.</param>
    /// <param name="seed">Seeds the tie-breaking noise of the mutual information.</param>
    public static AttributionSimilarity Compare(ReadOnlySpan<float> original, ReadOnlySpan<float> randomized, int count,
        ReadOnlySpan<bool> mask = default, int seed = 0)
    {
        AttributionChecks.Positive(count, nameof(count));
        if (original.Length % count != 0)
            throw new ArgumentException($"'{nameof(original)}' holds {original.Length} values, not a multiple of the row count {count}.", nameof(original));
        int d = original.Length / count;
        AttributionChecks.Rows(randomized.Length, count, d, nameof(randomized));
        AttributionChecks.Mask(mask, d, nameof(mask));
        double pearson = 0, spearman = 0, mi = 0;
        int undefined = 0;
        for (int r = 0; r < count; r++)
        {
            var a = original.Slice(r * d, d);
            var b = randomized.Slice(r * d, d);
            var (x, y) = MapSimilarity.Select(a, b, mask);
            for (int i = 0; i < x.Length; i++)
            {
                x[i] = Math.Abs(x[i]);
                y[i] = Math.Abs(y[i]);
            }

            double p = MapSimilarity.Pearson(x, y);
            if (double.IsNaN(p))
                undefined++;
            else
            {
                pearson += p;
                spearman += MapSimilarity.Pearson(MapSimilarity.Ranks(x), MapSimilarity.Ranks(y));
            }

            mi += MapSimilarity.MutualInformation(a, b, mask, seed: seed + r);
        }

        int defined = count - undefined;
        return new AttributionSimilarity(defined == 0 ? double.NaN : pearson / defined, defined == 0 ? double.NaN : spearman / defined, mi / count, count, undefined);
    }
}

/// <summary>The result of <see cref="SanityChecks.Compare"/>.</summary>
public sealed class AttributionSimilarity
{
    internal AttributionSimilarity(double pearson, double spearman, double mi, int count, int undefined)
    {
        PearsonOfAbsolute = pearson;
        SpearmanOfAbsolute = spearman;
        MutualInformation = mi;
        RowCount = count;
        UndefinedCorrelationCount = undefined;
    }

    /// <summary>Mean over rows of the Pearson r of the absolute maps (rows where a map is constant are left out).</summary>
    public double PearsonOfAbsolute { get; }

    /// <summary>Mean over rows of the Spearman rank correlation of the absolute maps (same rows as <see cref="PearsonOfAbsolute"/>).</summary>
    public double SpearmanOfAbsolute { get; }

    /// <summary>Mean over rows of the mutual information (nats) of the signed maps, as the paper's sanity-check script computes it.</summary>
    public double MutualInformation { get; }

    /// <summary>The rows compared.</summary>
    public int RowCount { get; }

    /// <summary>Rows where either absolute map is constant, so the correlations are undefined.</summary>
    public int UndefinedCorrelationCount { get; }
}
