namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// The faithfulness test of Thomas, Ré and Poldrack (NeurIPS 2022): keep the rows the model classifies correctly,
/// replace the fraction φ of each row's features with the highest attribution by an occlusion value, re-classify,
/// and record accuracy as φ grows. The faster accuracy falls to chance, the more faithful the attributions.
/// </summary>
/// <remarks>
/// The predicted class is the argmax of the scores when the model has several outputs, and score &gt; 0 (class 1)
/// for a single margin. Per φ, each row occludes its ⌊φ n⌋ highest-attributed features, n the number of features
/// inside <see cref="Options.BackgroundMask"/> (the reference's <c>int(fraction * n)</c>); ties in attribution go to
/// the lower feature index.
/// </remarks>
public static class Faithfulness
{
    /// <summary>The paper's φ grid, as fractions: 0–1.8 % step 0.2, 2–4.5 % step 0.5, 5–9 % step 1, 10–28 % step 2, 30–50 % step 5.</summary>
    public static IReadOnlyList<double> DefaultFractions { get; } = Grid();

    /// <summary>Options of <see cref="Evaluate"/>.</summary>
    public sealed class Options
    {
        /// <summary>The φ values, as fractions in [0, 1], strictly increasing; null: <see cref="DefaultFractions"/>.</summary>
        public double[]? Fractions { get; set; }

        /// <summary>One flag per feature: only features inside the mask may be occluded; null: all features.</summary>
        public bool[]? BackgroundMask { get; set; }

        /// <summary>The value occluded features take.</summary>
        public float OcclusionValue { get; set; }

        /// <summary>
        /// Reproduces the reference script's indexing quirk (<c>occluded_data[:, occlusion_idx] = 0</c> with a 2-D index):
        /// every row gets the union of all kept rows' top-φ features occluded, instead of its own.
        /// </summary>
        public bool UnionOcclusion { get; set; }

        /// <summary>Rows per call to the score function.</summary>
        public int BatchSize { get; set; } = 256;
    }

    /// <summary>Runs the faithfulness test.</summary>
    /// <param name="model">The classifier.</param>
    /// <param name="features">count × <see cref="IScoreFunction.FeatureSize"/> values, row-major.</param>
    /// <param name="count">The number of rows.</param>
    /// <param name="labels">The true class of each row: 0 to <see cref="IScoreFunction.OutputCount"/> − 1, or 0/1 for a single margin.</param>
    /// <param name="attributions">count × <see cref="IScoreFunction.FeatureSize"/> attributions, in the features' layout.</param>
    /// <param name="options">The φ grid, mask, occlusion value and mode; null for the paper's settings.</param>
    /// <exception cref="InvalidOperationException">The model classifies no row correctly.</exception>
    public static FaithfulnessMetrics Evaluate(IScoreFunction model, ReadOnlySpan<float> features, int count, ReadOnlySpan<int> labels,
        ReadOnlySpan<float> attributions, Options? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new Options();
        int d = model.FeatureSize, k = model.OutputCount;
        AttributionChecks.Rows(features.Length, count, d, nameof(features));
        AttributionChecks.Rows(attributions.Length, count, d, nameof(attributions));
        AttributionChecks.Targets(labels, count, Math.Max(k, 2), nameof(labels));
        AttributionChecks.Mask(options.BackgroundMask, d, nameof(options.BackgroundMask));
        AttributionChecks.Positive(options.BatchSize, nameof(options.BatchSize));
        var fractions = options.Fractions?.ToArray() ?? DefaultFractions.ToArray();
        for (int i = 0; i < fractions.Length; i++)
        {
            if (!(fractions[i] >= 0 && fractions[i] <= 1) || (i > 0 && fractions[i] <= fractions[i - 1]))
                throw new ArgumentException($"Fractions[{i}] is {fractions[i]}; expected strictly increasing values in [0, 1].", nameof(options));
        }

        var scores = model.Score(features, count);
        var keptList = new List<int>();
        for (int r = 0; r < count; r++)
            if (Predict(scores.AsSpan(r * k, k)) == labels[r])
                keptList.Add(r);
        var kept = keptList.ToArray();
        if (kept.Length == 0)
            throw new InvalidOperationException($"The model classifies none of the {count} rows correctly; the faithfulness test needs correctly classified rows.");
        int n = kept.Length;
        var keptFeatures = new float[n * d];
        var keptLabels = new int[n];
        for (int i = 0; i < n; i++)
        {
            features.Slice(kept[i] * d, d).CopyTo(keptFeatures.AsSpan(i * d, d));
            keptLabels[i] = labels[kept[i]];
        }

        var candidates = Enumerable.Range(0, d).Where(f => options.BackgroundMask is null || options.BackgroundMask[f]).ToArray();
        var orders = new int[n][];
        for (int i = 0; i < n; i++)
        {
            var a = attributions.Slice(kept[i] * d, d).ToArray();
            var order = (int[])candidates.Clone();
            Array.Sort(order, (p, q) => a[q] != a[p] ? a[q].CompareTo(a[p]) : p.CompareTo(q));
            orders[i] = order;
        }

        var accuracies = new double[fractions.Length];
        var meanScores = new double[fractions.Length];
        var occluded = new float[n * d];
        var union = new bool[d];
        for (int f = 0; f < fractions.Length; f++)
        {
            int top = (int)Math.Floor(fractions[f] * candidates.Length + 1e-9);
            keptFeatures.CopyTo(occluded, 0);
            if (options.UnionOcclusion)
            {
                Array.Clear(union);
                foreach (var order in orders)
                    for (int j = 0; j < top; j++)
                        union[order[j]] = true;
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < d; j++)
                        if (union[j])
                            occluded[i * d + j] = options.OcclusionValue;
            }
            else
            {
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < top; j++)
                        occluded[i * d + orders[i][j]] = options.OcclusionValue;
            }

            int correct = 0;
            double scoreSum = 0;
            for (int start = 0; start < n; start += options.BatchSize)
            {
                int b = Math.Min(options.BatchSize, n - start);
                var s = model.Score(occluded.AsSpan(start * d, b * d), b);
                for (int i = 0; i < b; i++)
                {
                    var row = s.AsSpan(i * k, k);
                    int label = keptLabels[start + i];
                    correct += Predict(row) == label ? 1 : 0;
                    scoreSum += k > 1 ? row[label] : label == 1 ? row[0] : -row[0];
                }
            }

            accuracies[f] = (double)correct / n;
            meanScores[f] = scoreSum / n;
        }

        double chance = (double)keptLabels.GroupBy(l => l).Max(g => g.Count()) / n;
        double area = 0;
        for (int f = 1; f < fractions.Length; f++)
            area += (fractions[f] - fractions[f - 1]) * (accuracies[f] + accuracies[f - 1]) / 2;
        int first = Array.FindIndex(accuracies, a => a <= chance + 1e-12);
        return new FaithfulnessMetrics(count, n, fractions, accuracies, meanScores, area, chance, first < 0 ? null : fractions[first]);
    }

    /// <summary>The predicted class: argmax of the scores (first on ties), or score &gt; 0 for a single margin.</summary>
    internal static int Predict(ReadOnlySpan<float> scores)
    {
        if (scores.Length == 1)
            return scores[0] > 0 ? 1 : 0;
        int best = 0;
        for (int i = 1; i < scores.Length; i++)
            if (scores[i] > scores[best])
                best = i;
        return best;
    }

    private static double[] Grid()
    {
        var percent = new List<double>();
        for (int i = 0; i < 10; i++) percent.Add(0.2 * i);
        for (int i = 0; i < 6; i++) percent.Add(2 + 0.5 * i);
        for (int i = 0; i < 5; i++) percent.Add(5 + i);
        for (int i = 0; i < 10; i++) percent.Add(10 + 2 * i);
        for (int i = 0; i < 5; i++) percent.Add(30 + 5 * i);
        return percent.Select(p => Math.Round(p, 1) / 100).ToArray();
    }
}

/// <summary>The result of <see cref="Faithfulness.Evaluate"/>.</summary>
public sealed class FaithfulnessMetrics
{
    internal FaithfulnessMetrics(int rowCount, int keptRowCount, double[] fractions, double[] accuracies, double[] meanTargetScores,
        double area, double chance, double? firstAtChance)
    {
        RowCount = rowCount;
        KeptRowCount = keptRowCount;
        Fractions = fractions;
        Accuracies = accuracies;
        MeanTargetScores = meanTargetScores;
        AreaUnderCurve = area;
        ChanceLevel = chance;
        FirstFractionAtChance = firstAtChance;
    }

    /// <summary>The rows given.</summary>
    public int RowCount { get; }

    /// <summary>The rows the model classified correctly before occlusion: the only rows tested.</summary>
    public int KeptRowCount { get; }

    /// <summary>The φ values, as fractions in [0, 1].</summary>
    public IReadOnlyList<double> Fractions { get; }

    /// <summary>Accuracy on the kept rows at each φ (1 at φ = 0).</summary>
    public IReadOnlyList<double> Accuracies { get; }

    /// <summary>
    /// Mean over the kept rows of the true class's score at each φ; for a single margin, the margin for label 1 and its
    /// negation for label 0, so that higher always means more confident in the true class.
    /// </summary>
    public IReadOnlyList<double> MeanTargetScores { get; }

    /// <summary>Area under accuracy versus φ, by the trapezoid rule with φ as a fraction in [0, 1] (at most 0.5 on the default grid). Lower is more faithful.</summary>
    public double AreaUnderCurve { get; }

    /// <summary>Chance accuracy: the majority class's share of the kept rows.</summary>
    public double ChanceLevel { get; }

    /// <summary>The first φ at which accuracy is at or below <see cref="ChanceLevel"/>; null if it never is.</summary>
    public double? FirstFractionAtChance { get; }
}
