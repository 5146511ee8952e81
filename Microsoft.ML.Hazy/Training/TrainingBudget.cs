using Microsoft.ML.Runtime;

namespace Microsoft.ML.Hazy.Training;

/// <summary>
/// Turns <see cref="HazyTrainerOptions.MinimumSteps"/> and <see cref="HazyTrainerOptions.MaximumSteps"/> into a whole
/// number of epochs for the data at hand, so a run's length is budgeted in optimizer steps rather than in epochs alone.
/// </summary>
internal static class TrainingBudget
{
    /// <summary>The optimizer steps of one epoch over <paramref name="rows"/> rows (the last batch may be short).</summary>
    public static long StepsPerEpoch(long rows, int batchSize)
    {
        long batch = Math.Max(1, Math.Min(batchSize, rows));
        return Math.Max(1, (rows + batch - 1) / batch);
    }

    /// <summary>
    /// <paramref name="numberOfEpochs"/>, raised to the fewest epochs that take <paramref name="minimumSteps"/> steps, then
    /// lowered to the most whole epochs within <paramref name="maximumSteps"/> (at least one); 0 leaves either bound off.
    /// </summary>
    public static int Epochs(int numberOfEpochs, int minimumSteps, int maximumSteps, long rows, int batchSize)
    {
        long perEpoch = StepsPerEpoch(rows, batchSize);
        long epochs = numberOfEpochs;
        if (minimumSteps > 0)
            epochs = Math.Max(epochs, (minimumSteps + perEpoch - 1) / perEpoch);
        if (maximumSteps > 0)
            epochs = Math.Min(epochs, Math.Max(1, maximumSteps / perEpoch));
        return (int)Math.Min(epochs, int.MaxValue);
    }

    /// <summary>Throws for a step bound or validation fraction out of range.</summary>
    public static void Check(HazyTrainerOptions options)
    {
        if (options.MinimumSteps < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MinimumSteps, "MinimumSteps must be 0 (no minimum) or positive.");
        if (options.MaximumSteps < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MaximumSteps, "MaximumSteps must be 0 (no limit) or positive.");
        if (!(options.ValidationFraction >= 0 && options.ValidationFraction < 1))
            throw new ArgumentOutOfRangeException(nameof(options), options.ValidationFraction, "ValidationFraction must be within [0, 1).");
        if (options.MinimumRowsForValidationSplit < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.MinimumRowsForValidationSplit, "MinimumRowsForValidationSplit must not be negative.");
    }

    /// <summary>
    /// The options to train with on <paramref name="rows"/> rows: a copy whose <see cref="HazyTrainerOptions.NumberOfEpochs"/>
    /// meets the step bounds, or <paramref name="options"/> itself when no bound changes it.
    /// </summary>
    public static HazyTrainerOptions Apply(HazyTrainerOptions options, long rows, IChannel channel)
    {
        Check(options);
        if (options.MinimumSteps == 0 && options.MaximumSteps == 0 || rows == 0 || options.BatchSize <= 0 || options.NumberOfEpochs <= 0)
            return options;
        int epochs = Epochs(options.NumberOfEpochs, options.MinimumSteps, options.MaximumSteps, rows, options.BatchSize);
        if (epochs == options.NumberOfEpochs)
            return options;
        long perEpoch = StepsPerEpoch(rows, options.BatchSize);
        channel.Info(MessageSensitivity.None,
            $"Step budget: {rows} rows in batches of {Math.Min(options.BatchSize, rows)} make {perEpoch} step(s) an epoch; training {epochs} epochs " +
            $"({epochs * perEpoch} steps) instead of {options.NumberOfEpochs} to meet MinimumSteps = {options.MinimumSteps}, MaximumSteps = {options.MaximumSteps}.");
        var copy = options.ShallowCopy();
        copy.NumberOfEpochs = epochs;
        return copy;
    }
}
