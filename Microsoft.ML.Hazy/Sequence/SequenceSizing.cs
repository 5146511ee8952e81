using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Hazy.Sequence;

/// <summary>
/// Sizes the options a sequence trainer leaves at 0 (<see cref="SequenceTrainer.Options.ModelDimension"/>,
/// <see cref="SequenceTrainer.Options.NumberOfLayers"/>, <c>BatchSize</c>, <c>NumberOfEpochs</c>) to the training data.
/// </summary>
/// <remarks>
/// The cost of a step grows with the batch, the length and the width (S4D's projections are H × 2H per time step, its
/// FFTs 2L points per feature), and a model learns from the number of steps, not of epochs. So a few hundred rows get
/// small batches of 16 (enough steps per epoch) and a 3 × 64 backbone, as the UCR recipe
/// (<see cref="SequenceTrainer.Options.Presets.UcrClassification"/>) that reached the stock trainers' accuracy on those sets;
/// sequences longer than 512 steps halve the width; from 10,000 rows on the reference's 4 × 128 and batches of 32.
/// Epochs left at 0 become the fewest that take <see cref="DefaultSteps"/> optimizer steps (at least one), and then a tenth
/// of a set of at least <see cref="Training.HazyTrainerOptions.MinimumRowsForValidationSplit"/> rows is held out to keep the best epoch.
/// </remarks>
internal static class SequenceSizing
{
    /// <summary>The optimizer steps of a run whose epochs are sized to the data.</summary>
    public const int DefaultSteps = 300;

    /// <summary>The share of the rows held out when the epochs are sized to the data and the set is large enough.</summary>
    public const double DefaultValidationFraction = 0.1;

    /// <summary>Whether any option waits to be sized to the data.</summary>
    public static bool IsNeeded(SequenceTrainer.Options o) => o.ModelDimension == 0 || o.NumberOfLayers == 0 || o.BatchSize == 0 || o.NumberOfEpochs == 0;

    /// <summary>Width, depth and batch for <paramref name="rows"/> rows of up to <paramref name="steps"/> time steps.</summary>
    public static (int ModelDimension, int NumberOfLayers, int BatchSize) For(long rows, long steps)
    {
        bool large = rows >= 10_000;
        int width = large ? 128 : 64;
        if (steps > 512)
            width /= 2;
        return (width, large ? 4 : 3, rows < 2_000 ? 16 : 32);
    }

    /// <summary>A copy of <paramref name="options"/> with the zeros replaced by sizes for <paramref name="data"/>; the options themselves when none is 0.</summary>
    public static SequenceTrainer.Options Resolve(SequenceTrainer.Options options, IDataView data, IChannel? channel)
    {
        if (!IsNeeded(options))
            return options;
        var (rows, steps) = Measure(data, options.FeatureColumnName, options.Channels);
        var (width, layers, batch) = For(rows, steps);
        var copy = options.Copy();
        if (copy.ModelDimension == 0)
            copy.ModelDimension = width;
        if (copy.NumberOfLayers == 0)
            copy.NumberOfLayers = layers;
        if (copy.BatchSize == 0)
            copy.BatchSize = batch;
        if (copy.NumberOfEpochs == 0)
        {
            copy.NumberOfEpochs = 1;
            copy.MinimumSteps = Math.Max(copy.MinimumSteps, DefaultSteps);
            // From MinimumRowsForValidationSplit rows on, a tenth of them picks the best epoch.
            if (copy.ValidationFraction == 0 && copy.ValidationSet is null)
                copy.ValidationFraction = DefaultValidationFraction;
        }
        channel?.Info(MessageSensitivity.None,
            $"Sized to the data ({rows} rows of up to {steps} steps): {copy.NumberOfLayers} × {copy.ModelDimension} blocks, batches of {copy.BatchSize}, " +
            $"{copy.NumberOfEpochs} epoch(s) and at least {copy.MinimumSteps} steps.");
        return copy;
    }

    /// <summary>The row count and the longest row's time steps (a known-size column's length without reading it).</summary>
    private static (long Rows, long Steps) Measure(IDataView data, string featureColumn, int channels)
    {
        var column = data.Schema.GetColumnOrNull(featureColumn)
            ?? throw new ArgumentOutOfRangeException(nameof(featureColumn), $"Column '{featureColumn}' not found in the training data; expected a vector of Single.");
        // Another type is refused, naming the column, when training starts.
        int size = column.Type is VectorDataViewType vector && vector.ItemType == NumberDataViewType.Single ? vector.Size : 1;
        long? known = data.GetRowCount();
        if (size > 0 && known is long n)
            return (n, size / Math.Max(1, channels));
        long rows = 0, longest = size;
        using var cursor = data.GetRowCursor(size > 0 ? Array.Empty<DataViewSchema.Column>() : new[] { column });
        var getter = size > 0 ? null : cursor.GetGetter<VBuffer<float>>(column);
        var buffer = default(VBuffer<float>);
        while (cursor.MoveNext())
        {
            rows++;
            if (getter is null)
                continue;
            getter(ref buffer);
            longest = Math.Max(longest, buffer.Length);
        }
        return (rows, longest / Math.Max(1, channels));
    }
}
