using Microsoft.ML.Data;

namespace Microsoft.ML.Hazy.Training;

/// <summary>A scoring input that the model cannot read, named by column and row.</summary>
internal sealed class HazyInputException : InvalidOperationException
{
    public HazyInputException(string message) : base(message)
    {
    }
}

/// <summary>
/// Checks scoring input before ML.NET reads it. ML.NET reads a transform's input on worker threads and rethrows a
/// failure there as "Splitter/consolidator worker encountered exception while consuming source data", the cause only
/// in <see cref="Exception.InnerException"/>; a view that wrapped the scored rows to unwrap it would hide the scoring
/// chain from tools that walk it (<c>ConvertToOnnx</c>). So the rows are checked when the model is applied, on the
/// caller's thread, reading only the checked column.
/// </summary>
internal static class ScoringInputGuard
{
    /// <summary>
    /// Throws <see cref="HazyInputException"/> for the first row of <paramref name="column"/> with more than
    /// <paramref name="maximumValues"/> values (<paramref name="channels"/> per time step).
    /// </summary>
    public static void CheckRowLengths(IDataView input, string column, int channels, int maximumValues)
    {
        var features = input.Schema[column];
        using var cursor = input.GetRowCursor(new[] { features });
        var getter = cursor.GetGetter<VBuffer<float>>(features);
        var value = default(VBuffer<float>);
        long row = 0;
        while (cursor.MoveNext())
        {
            getter(ref value);
            if (value.Length > maximumValues)
            {
                channels = Math.Max(1, channels);
                throw new HazyInputException(
                    $"Column '{column}' row {row} has {value.Length} values ({value.Length / channels} time steps of {channels} channel(s)); this model accepts " +
                    $"at most {maximumValues} values ({maximumValues / channels} steps) per row. Train with a larger MaximumLength " +
                    "(SequenceTrainer.Options.MaximumLength, or the maximumLength parameter of HazyS4D) to score longer rows.");
            }
            row++;
        }
    }
}
