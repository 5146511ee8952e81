using System.Globalization;
using System.Text;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>One row of a slice, as listed in a <see cref="DominoSliceSummary"/>.</summary>
/// <param name="Row">The row's position in the data (0-based).</param>
/// <param name="Probability">Its probability of belonging to the slice.</param>
/// <param name="Label">Its label's class name (empty when the label is missing).</param>
/// <param name="Prediction">The model's most probable class.</param>
/// <param name="Correct">Whether the model's most probable class is the label.</param>
public sealed record DominoSliceExample(int Row, double Probability, string Label, string Prediction, bool Correct);

/// <summary>Statistics of one slice. Members are the rows whose slice probability is at least 0.5 (the reference's describe mask).</summary>
/// <param name="Slice">The slice index (0 has the largest gap between predicted and true class probabilities).</param>
/// <param name="Component">The mixture component behind the slice.</param>
/// <param name="Gap">max_c (p̂_s(c) − p_s(c)) of the component: the error signal the slice was chosen by.</param>
/// <param name="Size">Members: rows with probability at least 0.5.</param>
/// <param name="ExpectedSize">The sum of the slice probabilities over all rows.</param>
/// <param name="AccuracyInside">The model's accuracy on members (NaN without members).</param>
/// <param name="AccuracyOutside">The model's accuracy on the other rows (NaN when every row is a member).</param>
/// <param name="DominantLabel">The most frequent label among members.</param>
/// <param name="DominantLabelShare">Its share of the members.</param>
/// <param name="DominantPrediction">The most frequent predicted class among members.</param>
/// <param name="DominantPredictionShare">Its share of the members.</param>
/// <param name="TopExamples">The most probable rows, most probable first (ties: lower row first).</param>
public sealed record DominoSliceSummary(int Slice, int Component, double Gap, int Size, double ExpectedSize,
    double AccuracyInside, double AccuracyOutside, string DominantLabel, double DominantLabelShare,
    string DominantPrediction, double DominantPredictionShare, IReadOnlyList<DominoSliceExample> TopExamples);

/// <summary>The slices found by Domino on some data, with the model's accuracy inside and outside each.</summary>
public sealed class DominoReport
{
    private DominoReport(int rows, double accuracy, IReadOnlyList<DominoSliceSummary> slices)
    {
        Rows = rows;
        OverallAccuracy = accuracy;
        Slices = slices;
    }

    /// <summary>Rows reported on.</summary>
    public int Rows { get; }

    /// <summary>The model's accuracy on all rows with a label.</summary>
    public double OverallAccuracy { get; }

    /// <summary>The slices in slice order.</summary>
    public IReadOnlyList<DominoSliceSummary> Slices { get; }

    /// <summary>A plain-text table of the slices and their top examples.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        var inv = CultureInfo.InvariantCulture;
        sb.AppendLine(string.Create(inv, $"{Rows} rows, model accuracy {OverallAccuracy:P1}"));
        sb.AppendLine("slice  size  expected  gap    acc. inside  acc. outside  dominant label          dominant prediction");
        foreach (var s in Slices)
        {
            sb.AppendLine(string.Create(inv, $"{s.Slice,5}  {s.Size,4}  {s.ExpectedSize,8:F1}  {s.Gap,5:F2}  {s.AccuracyInside,11:P1}  {s.AccuracyOutside,12:P1}  ")
                + string.Create(inv, $"{Trim(s.DominantLabel)} ({s.DominantLabelShare:P0})").PadRight(24) + string.Create(inv, $"{Trim(s.DominantPrediction)} ({s.DominantPredictionShare:P0})"));
        }
        return sb.ToString();
    }

    private static string Trim(string s) => s.Length > 16 ? s[..16] : s;

    internal static DominoReport Create(double[] sliceProbabilities, DominoRows rows, DominoModelParameters model, string[] classNames, int topExamples)
    {
        int n = rows.Count, c = model.Classes, m = model.SliceComponents.Count;
        var label = new int[n];
        var predicted = new int[n];
        int labelled = 0, correctTotal = 0;
        for (int i = 0; i < n; i++)
        {
            label[i] = ArgMaxOrMissing(rows.Labels.AsSpan(i * c, c));
            predicted[i] = ArgMaxOrMissing(rows.Predictions.AsSpan(i * c, c));
            if (label[i] >= 0)
            {
                labelled++;
                if (label[i] == predicted[i])
                    correctTotal++;
            }
        }
        string Name(int cls) => cls < 0 ? "" : classNames[cls];

        var slices = new List<DominoSliceSummary>();
        for (int j = 0; j < m; j++)
        {
            int size = 0, inCorrect = 0, inLabelled = 0, outCorrect = 0, outLabelled = 0;
            double expected = 0;
            var labelCounts = new int[c];
            var predictionCounts = new int[c];
            for (int i = 0; i < n; i++)
            {
                double p = sliceProbabilities[(long)i * m + j];
                expected += p;
                bool member = p >= 0.5;
                if (member)
                {
                    size++;
                    if (label[i] >= 0)
                        labelCounts[label[i]]++;
                    if (predicted[i] >= 0)
                        predictionCounts[predicted[i]]++;
                }
                if (label[i] < 0)
                    continue;
                if (member)
                {
                    inLabelled++;
                    inCorrect += label[i] == predicted[i] ? 1 : 0;
                }
                else
                {
                    outLabelled++;
                    outCorrect += label[i] == predicted[i] ? 1 : 0;
                }
            }
            int domLabel = ArgMax(labelCounts), domPrediction = ArgMax(predictionCounts);
            var top = Enumerable.Range(0, n)
                .OrderByDescending(i => sliceProbabilities[(long)i * m + j]).ThenBy(i => i).Take(topExamples)
                .Select(i => new DominoSliceExample(i, sliceProbabilities[(long)i * m + j], Name(label[i]), Name(predicted[i]), label[i] >= 0 && label[i] == predicted[i]))
                .ToArray();
            int component = model.SliceComponents[j];
            slices.Add(new DominoSliceSummary(j, component, model.GetGap(component), size, expected,
                inLabelled == 0 ? double.NaN : (double)inCorrect / inLabelled,
                outLabelled == 0 ? double.NaN : (double)outCorrect / outLabelled,
                size == 0 ? "" : Name(domLabel), size == 0 ? double.NaN : (double)labelCounts[domLabel] / size,
                size == 0 ? "" : Name(domPrediction), size == 0 ? double.NaN : (double)predictionCounts[domPrediction] / size,
                Array.AsReadOnly(top)));
        }
        return new DominoReport(n, labelled == 0 ? double.NaN : (double)correctTotal / labelled, slices.AsReadOnly());
    }

    private static int ArgMax(int[] counts)
    {
        int best = 0;
        for (int i = 1; i < counts.Length; i++)
            if (counts[i] > counts[best])
                best = i;
        return best;
    }

    // The class of a label or prediction distribution; −1 when it holds no mass (a missing label).
    private static int ArgMaxOrMissing(ReadOnlySpan<double> v)
    {
        int best = -1;
        double max = 0;
        for (int i = 0; i < v.Length; i++)
        {
            if (v[i] > max)
            {
                max = v[i];
                best = i;
            }
        }
        return best;
    }
}
