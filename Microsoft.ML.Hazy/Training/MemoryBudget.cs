using System.Globalization;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Training;

/// <summary>Refuses a training configuration whose batches cannot fit in memory before the first step runs.</summary>
internal static class MemoryBudget
{
    private const double GiB = 1024.0 * 1024 * 1024;

    /// <summary>
    /// Memory available to this process: MemAvailable of /proc/meminfo on Linux (libtorch allocates natively, outside
    /// the GC's budget), else the GC's <see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/>; the smaller of the two when both exist.
    /// </summary>
    public static long AvailableBytes()
    {
        long gc = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        long? meminfo = MemAvailable();
        return meminfo is long m && m > 0 ? Math.Min(m, gc > 0 ? gc : long.MaxValue) : gc;
    }

    /// <summary>
    /// Throws when one training step of a sequence trainer needs more memory than <see cref="AvailableBytes"/>.
    /// The step's rows are the smaller of <see cref="HazyTrainerOptions.BatchSize"/> and the row count; its length is
    /// the longest row's (batches are padded to their longest row).
    /// </summary>
    /// <param name="trainingBytes">The estimated bytes of a step of (rows, time steps).</param>
    /// <param name="options">The trainer's options.</param>
    /// <param name="train">The training rows.</param>
    /// <param name="channels">Values per time step.</param>
    public static void CheckSequenceStep(Func<long, long, double> trainingBytes, HazyTrainerOptions options, DataViewBatcher train, int channels)
    {
        if (options.BatchSize <= 0)
            return;
        long rows = Math.Min(options.BatchSize, train.CountRows());
        if (rows == 0)
            return;
        long steps = train.LongestRow() / channels;
        double needed = trainingBytes(rows, steps);
        long available = AvailableBytes();
        if (needed <= available)
            return;
        string length = train.FeatureSize > 0
            ? $"rows of {steps} time steps (column '{train.FeatureColumnName}')"
            : $"rows of up to {steps} time steps (the longest row of column '{train.FeatureColumnName}')";
        throw new InvalidOperationException(string.Format(CultureInfo.InvariantCulture,
            "One training step of BatchSize = {0} ({1} rows in a batch) on {2} needs about {3:F1} GiB for the activations kept for the backward pass, "
            + "more than the {4:F1} GiB of memory available; lower BatchSize, shorten the sequences, or use fewer or narrower layers.",
            options.BatchSize, rows, length, needed / GiB, available / GiB));
    }

    private static long? MemAvailable()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                    continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kib) ? kib * 1024 : null;
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return null;
    }
}
