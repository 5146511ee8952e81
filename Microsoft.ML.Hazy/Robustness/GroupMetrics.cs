using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Robustness;

/// <summary>The accuracy of one group of rows.</summary>
/// <param name="Name">The group's key value as text.</param>
/// <param name="Count">Rows in the group.</param>
/// <param name="Accuracy">Share of the group's rows whose predicted label equals the label.</param>
public sealed record GroupAccuracy(string Name, long Count, double Accuracy);

/// <summary>
/// A classifier's accuracy per group and its worst-group accuracy, the metric of group-robustness work (Sagawa et al.,
/// 2020; "Perfectly Balanced" §5): min over groups of the group's accuracy. Groups without rows are left out.
/// </summary>
public sealed class GroupMetrics
{
    private GroupMetrics(GroupAccuracy[] groups, double accuracy)
    {
        Groups = Array.AsReadOnly(groups);
        Accuracy = accuracy;
        var present = groups.Where(g => g.Count > 0).ToArray();
        var worst = present.OrderBy(g => g.Accuracy).First();
        WorstGroup = worst.Name;
        WorstGroupAccuracy = worst.Accuracy;
        MeanGroupAccuracy = present.Average(g => g.Accuracy);
    }

    /// <summary>Every group of the key, in key order (also those without rows, with accuracy NaN).</summary>
    public IReadOnlyList<GroupAccuracy> Groups { get; }

    /// <summary>Accuracy over all rows.</summary>
    public double Accuracy { get; }

    /// <summary>The lowest accuracy of a group with rows.</summary>
    public double WorstGroupAccuracy { get; }

    /// <summary>The group with <see cref="WorstGroupAccuracy"/> (the first in key order on a tie).</summary>
    public string WorstGroup { get; }

    /// <summary>The unweighted mean of the groups' accuracies.</summary>
    public double MeanGroupAccuracy { get; }

    internal static GroupMetrics Evaluate(IDataView scored, string groupColumn, string labelColumn, string predictedLabelColumn)
    {
        ArgumentNullException.ThrowIfNull(scored);
        var group = scored.Schema.GetColumnOrNull(groupColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(groupColumn), $"Column '{groupColumn}' (the group) not found; expected a key.");
        if (group.Type is not KeyDataViewType key || key.Count == 0 || key.Count > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(groupColumn), $"Column '{groupColumn}' (the group) has type {group.Type}; expected a key (use MapValueToKey).");
        var label = scored.Schema.GetColumnOrNull(labelColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(labelColumn), $"Column '{labelColumn}' (the label) not found.");
        var predicted = scored.Schema.GetColumnOrNull(predictedLabelColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(predictedLabelColumn), $"Column '{predictedLabelColumn}' (the predicted label) not found; score the data with the model first.");
        bool keys = label.Type is KeyDataViewType && predicted.Type is KeyDataViewType;
        bool booleans = label.Type == BooleanDataViewType.Instance && predicted.Type == BooleanDataViewType.Instance;
        if (!keys && !booleans)
            throw new ArgumentOutOfRangeException(nameof(labelColumn),
                $"Columns '{labelColumn}' ({label.Type}) and '{predictedLabelColumn}' ({predicted.Type}) must both be keys (multiclass) or both Boolean (binary).");

        int groups = (int)key.Count;
        var counts = new long[groups];
        var correct = new long[groups];
        using (var cursor = scored.GetRowCursor(new[] { group, label, predicted }))
        {
            var getGroup = cursor.GetGetter<uint>(group);
            Func<bool> same;
            if (keys)
            {
                var getLabel = cursor.GetGetter<uint>(label);
                var getPredicted = cursor.GetGetter<uint>(predicted);
                uint y = 0, p = 0;
                same = () => { getLabel(ref y); getPredicted(ref p); return y != 0 && y == p; };
            }
            else
            {
                var getLabel = cursor.GetGetter<bool>(label);
                var getPredicted = cursor.GetGetter<bool>(predicted);
                bool y = false, p = false;
                same = () => { getLabel(ref y); getPredicted(ref p); return y == p; };
            }
            uint g = 0;
            while (cursor.MoveNext())
            {
                getGroup(ref g);
                if (g == 0)
                    throw new InvalidDataException($"Row {cursor.Position}: column '{groupColumn}' (the group) is missing; every row needs a group.");
                counts[g - 1]++;
                if (same())
                    correct[g - 1]++;
            }
        }
        long total = counts.Sum();
        if (total == 0)
            throw new ArgumentException("The scored data has no rows.", nameof(scored));
        var names = LabelKeyValues.FromColumn(group).Names();
        var result = Enumerable.Range(0, groups)
            .Select(i => new GroupAccuracy(names[i], counts[i], counts[i] == 0 ? double.NaN : (double)correct[i] / counts[i])).ToArray();
        return new GroupMetrics(result, (double)correct.Sum() / total);
    }
}
