namespace Microsoft.ML.Hazy.Slicing.Evaluation;

/// <summary>How well one predicted slice (or its complement) recovers a ground-truth slice.</summary>
/// <param name="PredictedSlice">The predicted slice (column) matched.</param>
/// <param name="Complement">Whether the match is the complement 1 − p of that column.</param>
/// <param name="AveragePrecision">Average precision of the scores against the true slice.</param>
/// <param name="PrecisionAt10">The share of true-slice rows among the 10 highest scores.</param>
/// <param name="PrecisionAt25">The share of true-slice rows among the 25 highest scores.</param>
/// <param name="Precision">Precision of the hard prediction score ≥ 0.5.</param>
/// <param name="Recall">Recall of the hard prediction score ≥ 0.5.</param>
/// <param name="F1">F1 of the hard prediction score ≥ 0.5.</param>
public sealed record SliceMatch(int PredictedSlice, bool Complement, double AveragePrecision, double PrecisionAt10, double PrecisionAt25,
    double Precision, double Recall, double F1);

/// <summary>
/// The metrics of the Domino evaluation framework: a ground-truth slice is matched to the predicted slice, or the
/// complement of one, with the highest average precision, and that match's precision at 10 and 25 is reported.
/// </summary>
public static class SliceDiscoveryMetrics
{
    /// <summary>
    /// Average precision Σ_n (R_n − R_{n−1}) P_n over the distinct score thresholds, highest first (tied scores form one
    /// threshold, as in scikit-learn). NaN when the truth has no positive row.
    /// </summary>
    /// <param name="truth">Membership of each row in the true slice.</param>
    /// <param name="scores">The predicted score of each row.</param>
    public static double AveragePrecision(IReadOnlyList<bool> truth, IReadOnlyList<double> scores)
    {
        Check(truth, scores);
        int positives = truth.Count(t => t);
        if (positives == 0)
            return double.NaN;
        var order = Enumerable.Range(0, scores.Count).OrderByDescending(i => scores[i]).ToArray();
        double ap = 0, previousRecall = 0;
        int tp = 0, seen = 0;
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end < order.Length && scores[order[end]] == scores[order[start]])
            {
                if (truth[order[end]])
                    tp++;
                end++;
            }
            seen = end;
            double recall = (double)tp / positives;
            ap += (recall - previousRecall) * tp / seen;
            previousRecall = recall;
            start = end;
        }
        return ap;
    }

    /// <summary>
    /// The share of true-slice rows among the <paramref name="k"/> highest scores, ties broken by row order (ordinal
    /// ranks), so exactly min(k, n) rows are taken.
    /// </summary>
    /// <param name="truth">Membership of each row in the true slice.</param>
    /// <param name="scores">The predicted score of each row.</param>
    /// <param name="k">How many of the highest-scoring rows are examined.</param>
    public static double PrecisionAtK(IReadOnlyList<bool> truth, IReadOnlyList<double> scores, int k)
    {
        Check(truth, scores);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        var top = Enumerable.Range(0, scores.Count).OrderByDescending(i => scores[i]).ThenBy(i => i).Take(k).ToArray();
        return top.Length == 0 ? 0 : (double)top.Count(i => truth[i]) / top.Length;
    }

    /// <summary>
    /// Matches a true slice to the predicted slices and their complements (1 − p): the candidate with the highest average
    /// precision wins (ties: the lower slice, the slice before its complement).
    /// </summary>
    /// <param name="truth">Membership of each row in the true slice.</param>
    /// <param name="predicted">Per row, the score of each predicted slice.</param>
    public static SliceMatch Match(IReadOnlyList<bool> truth, IReadOnlyList<IReadOnlyList<double>> predicted)
    {
        ArgumentNullException.ThrowIfNull(truth);
        ArgumentNullException.ThrowIfNull(predicted);
        if (predicted.Count != truth.Count)
            throw new ArgumentException($"The prediction has {predicted.Count} rows; the truth has {truth.Count}.", nameof(predicted));
        int slices = predicted.Count == 0 ? 0 : predicted[0].Count;
        if (slices == 0)
            throw new ArgumentException("The prediction has no slices.", nameof(predicted));
        SliceMatch? best = null;
        for (int j = 0; j < slices; j++)
        {
            foreach (bool complement in new[] { false, true })
            {
                var scores = predicted.Select(row => complement ? 1 - row[j] : row[j]).ToArray();
                var ap = AveragePrecision(truth, scores);
                if (best is not null && !(ap > best.AveragePrecision))
                    continue;
                int tp = 0, predictedPositive = 0, positives = 0;
                for (int i = 0; i < scores.Length; i++)
                {
                    bool hard = scores[i] >= 0.5;
                    predictedPositive += hard ? 1 : 0;
                    positives += truth[i] ? 1 : 0;
                    tp += hard && truth[i] ? 1 : 0;
                }
                double precision = predictedPositive == 0 ? 0 : (double)tp / predictedPositive;
                double recall = positives == 0 ? 0 : (double)tp / positives;
                double f1 = precision + recall == 0 ? 0 : 2 * precision * recall / (precision + recall);
                best = new SliceMatch(j, complement, ap, PrecisionAtK(truth, scores, 10), PrecisionAtK(truth, scores, 25), precision, recall, f1);
            }
        }
        return best!;
    }

    private static void Check(IReadOnlyList<bool> truth, IReadOnlyList<double> scores)
    {
        ArgumentNullException.ThrowIfNull(truth);
        ArgumentNullException.ThrowIfNull(scores);
        if (truth.Count != scores.Count)
            throw new ArgumentException($"There are {scores.Count} scores for {truth.Count} rows.", nameof(scores));
    }
}
