namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Plausibility of attributions: how similar they are to a standard analysis of the data. Thomas et al. compare
/// group-level attribution maps with the group-level GLM map of each mental state (Pearson r and mutual information
/// over the brain mask); for images the analogue of the GLM contrast is the class-contrast map, the mean image of a
/// class minus the mean image of the other classes.
/// </summary>
public static class Plausibility
{
    /// <summary>Per class c and feature j: mean over the rows of class c minus mean over the other rows.</summary>
    /// <param name="features">count × featureSize values, row-major.</param>
    /// <param name="count">The number of rows.</param>
    /// <param name="labels">The class of each row, 0 to <paramref name="classCount"/> − 1.</param>
    /// <param name="classCount">The number of classes; every class needs a row.</param>
    /// <returns>classCount × featureSize values, row-major.</returns>
    public static float[] ClassContrastMaps(ReadOnlySpan<float> features, int count, ReadOnlySpan<int> labels, int classCount)
    {
        var (sums, counts, d) = ClassSums(features, count, labels, classCount, nameof(features));
        var total = new double[d];
        for (int c = 0; c < classCount; c++)
            for (int j = 0; j < d; j++)
                total[j] += sums[c * d + j];
        var result = new float[classCount * d];
        for (int c = 0; c < classCount; c++)
        {
            int others = count - counts[c];
            if (others == 0)
                throw new ArgumentException($"Every row has label {c}; a class contrast needs rows of another class.", nameof(labels));
            for (int j = 0; j < d; j++)
                result[c * d + j] = (float)(sums[c * d + j] / counts[c] - (total[j] - sums[c * d + j]) / others);
        }

        return result;
    }

    /// <summary>Per class: the mean of the maps of its rows (the analogue of a group-level map of attributions).</summary>
    /// <param name="maps">count × featureSize values, row-major.</param>
    /// <param name="count">The number of rows.</param>
    /// <param name="labels">The class of each row, 0 to <paramref name="classCount"/> − 1.</param>
    /// <param name="classCount">The number of classes; every class needs a row.</param>
    /// <returns>classCount × featureSize values, row-major.</returns>
    public static float[] ClassMeanMaps(ReadOnlySpan<float> maps, int count, ReadOnlySpan<int> labels, int classCount)
    {
        var (sums, counts, d) = ClassSums(maps, count, labels, classCount, nameof(maps));
        var result = new float[classCount * d];
        for (int c = 0; c < classCount; c++)
            for (int j = 0; j < d; j++)
                result[c * d + j] = (float)(sums[c * d + j] / counts[c]);
        return result;
    }

    /// <summary>
    /// Compares each class's mean attribution map with its class-contrast map of the features: Pearson r and mutual
    /// information (<see cref="MapSimilarity"/>) per class.
    /// </summary>
    /// <param name="attributions">count × featureSize attributions, row-major.</param>
    /// <param name="features">count × featureSize values, row-major.</param>
    /// <param name="count">The number of rows.</param>
    /// <param name="labels">The class of each row, 0 to <paramref name="classCount"/> − 1.</param>
    /// <param name="classCount">The number of classes; every class needs a row.</param>
    /// <param name="mask">One flag per feature, or empty for all features.</param>
    /// <param name="seed">Seeds the tie-breaking noise of the mutual information.</param>
    public static PlausibilityMetrics Evaluate(ReadOnlySpan<float> attributions, ReadOnlySpan<float> features, int count, ReadOnlySpan<int> labels,
        int classCount, ReadOnlySpan<bool> mask = default, int seed = 0)
    {
        if (attributions.Length != features.Length)
            throw new ArgumentException($"'{nameof(attributions)}' holds {attributions.Length} values; expected as many as '{nameof(features)}' ({features.Length}).", nameof(attributions));
        var means = ClassMeanMaps(attributions, count, labels, classCount);
        var contrasts = ClassContrastMaps(features, count, labels, classCount);
        int d = features.Length / count;
        var pearson = new double[classCount];
        var mi = new double[classCount];
        for (int c = 0; c < classCount; c++)
        {
            pearson[c] = MapSimilarity.Pearson(means.AsSpan(c * d, d), contrasts.AsSpan(c * d, d), mask);
            mi[c] = MapSimilarity.MutualInformation(means.AsSpan(c * d, d), contrasts.AsSpan(c * d, d), mask, seed: seed);
        }

        return new PlausibilityMetrics(pearson, mi);
    }

    private static (double[] Sums, int[] Counts, int FeatureSize) ClassSums(ReadOnlySpan<float> values, int count, ReadOnlySpan<int> labels, int classCount, string name)
    {
        AttributionChecks.Positive(count, nameof(count));
        AttributionChecks.Positive(classCount, nameof(classCount));
        if (values.Length % count != 0)
            throw new ArgumentException($"'{name}' holds {values.Length} values, not a multiple of the row count {count}.", name);
        int d = values.Length / count;
        AttributionChecks.Targets(labels, count, classCount, nameof(labels));
        var sums = new double[classCount * d];
        var counts = new int[classCount];
        for (int r = 0; r < count; r++)
        {
            int c = labels[r];
            counts[c]++;
            var row = values.Slice(r * d, d);
            for (int j = 0; j < d; j++)
                sums[c * d + j] += row[j];
        }

        int empty = Array.IndexOf(counts, 0);
        if (empty >= 0)
            throw new ArgumentException($"No row has label {empty}; expected every class from 0 to {classCount - 1} to have a row.", nameof(labels));
        return (sums, counts, d);
    }
}

/// <summary>The result of <see cref="Plausibility.Evaluate"/>.</summary>
public sealed class PlausibilityMetrics
{
    internal PlausibilityMetrics(double[] pearson, double[] mutualInformation)
    {
        PerClassPearson = pearson;
        PerClassMutualInformation = mutualInformation;
        MeanPearson = pearson.Where(v => !double.IsNaN(v)).DefaultIfEmpty(double.NaN).Average();
        MeanMutualInformation = mutualInformation.Average();
    }

    /// <summary>Pearson r between each class's mean attribution map and its class-contrast map (NaN for a constant map).</summary>
    public IReadOnlyList<double> PerClassPearson { get; }

    /// <summary>Mutual information (nats) between each class's mean attribution map and its class-contrast map.</summary>
    public IReadOnlyList<double> PerClassMutualInformation { get; }

    /// <summary>The mean of <see cref="PerClassPearson"/> over the classes where it is defined.</summary>
    public double MeanPearson { get; }

    /// <summary>The mean of <see cref="PerClassMutualInformation"/>.</summary>
    public double MeanMutualInformation { get; }
}
