using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>The timings of one measured operation, in milliseconds, and how many items each timed run processed.</summary>
internal sealed class Measurement
{
    public Measurement(string name, IEnumerable<double> samplesMs, int warmups, long itemsPerRun)
    {
        Name = name;
        SamplesMs = samplesMs.ToArray();
        if (SamplesMs.Length == 0)
            throw new ArgumentException("A measurement needs at least one timed sample.", nameof(samplesMs));
        Warmups = warmups;
        ItemsPerRun = itemsPerRun;
        var sorted = SamplesMs.OrderBy(x => x).ToArray();
        MedianMs = Harness.Median(sorted);
        P99Ms = Harness.Percentile(sorted, 0.99);
        MinMs = sorted[0];
        MaxMs = sorted[^1];
        MeanMs = sorted.Average();
    }

    public string Name { get; }

    /// <summary>The timed samples in the order they ran.</summary>
    public double[] SamplesMs { get; }

    public int Warmups { get; }

    /// <summary>Items (rows, sequences, steps) one timed run processed.</summary>
    public long ItemsPerRun { get; }

    public double MedianMs { get; }

    public double P99Ms { get; }

    public double MinMs { get; }

    public double MaxMs { get; }

    public double MeanMs { get; }

    /// <summary>Items per second at the median run time.</summary>
    public double ItemsPerSecond => ItemsPerRun / (MedianMs / 1000.0);

    /// <summary>Median milliseconds scaled to <paramref name="items"/> items.</summary>
    public double MsPer(long items) => MedianMs * items / ItemsPerRun;

    /// <summary>The slowest timed run over the fastest: near 1 for a quiet machine.</summary>
    public double Spread => MaxMs / MinMs;

    /// <summary>How many times faster than <paramref name="baseline"/> per item, at the medians (above 1 is faster).</summary>
    public double SpeedupOver(Measurement baseline) => (baseline.MedianMs / baseline.ItemsPerRun) / (MedianMs / ItemsPerRun);
}

/// <summary>
/// A small measuring harness: warm-up runs, then timed repetitions with <see cref="Stopwatch"/>, summarised
/// by median and p99. Plain loops rather than BenchmarkDotNet, so a whole benchmark finishes in minutes.
/// </summary>
internal static class Harness
{
    /// <summary>Runs <paramref name="action"/> <paramref name="warmups"/> times untimed, then times <paramref name="repetitions"/> runs.</summary>
    public static Measurement Measure(string name, Action action, int warmups = 1, int repetitions = 5, long itemsPerRun = 1)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(warmups);
        ArgumentOutOfRangeException.ThrowIfLessThan(repetitions, 1);
        for (int i = 0; i < warmups; i++)
            action();
        SettleGarbageCollector();
        var samples = new double[repetitions];
        for (int i = 0; i < repetitions; i++)
        {
            long start = Stopwatch.GetTimestamp();
            action();
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return new Measurement(name, samples, warmups, itemsPerRun);
    }

    /// <summary>
    /// Times each of <paramref name="count"/> short calls on its own (after <paramref name="warmups"/> untimed
    /// calls), for latency percentiles. The call receives its index, to cycle through inputs.
    /// </summary>
    public static Measurement MeasureLatency(string name, Action<int> call, int warmups, int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(warmups);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        for (int i = 0; i < warmups; i++)
            call(i);
        SettleGarbageCollector();
        var samples = new double[count];
        for (int i = 0; i < count; i++)
        {
            long start = Stopwatch.GetTimestamp();
            call(warmups + i);
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }
        return new Measurement(name, samples, warmups, 1);
    }

    /// <summary>The median of sorted values.</summary>
    public static double Median(IReadOnlyList<double> sorted)
    {
        int n = sorted.Count;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>The nearest-rank percentile of sorted values (<paramref name="p"/> in (0, 1]).</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double p)
    {
        int rank = (int)Math.Ceiling(p * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }

    /// <summary>
    /// The standard throughput table: method | items/s | ms per <paramref name="per"/> items | ratio vs the baseline
    /// (baseline time per item over the method's, so above 1 is faster).
    /// </summary>
    public static ResultTable ThroughputTable(IEnumerable<Measurement> results, Measurement baseline, string baselineName,
        string itemName = "rows", long per = 10_000)
    {
        var table = new ResultTable("method", $"{itemName}/s", $"ms per {FormatCount(per)}", $"ratio vs {baselineName}");
        foreach (var m in results)
            table.AddRow(m.Name, FormatCount((long)Math.Round(m.ItemsPerSecond)), m.MsPer(per).ToString("F1", CultureInfo.InvariantCulture), FormatRatio(m.SpeedupOver(baseline)));
        return table;
    }

    /// <summary>
    /// Prints a warning for each measurement whose slowest run took more than <paramref name="maxSpread"/> times its
    /// fastest: its median is then less trustworthy (another process, a GC, or too few repetitions).
    /// </summary>
    public static void WarnIfNoisy(TextWriter writer, IEnumerable<Measurement> results, double maxSpread = 1.5)
    {
        foreach (var m in results.Where(m => m.Spread > maxSpread))
            writer.WriteLine($"noisy: '{m.Name}' runs took {m.MinMs:F1} to {m.MaxMs:F1} ms ({m.Spread:F1}x apart).");
    }

    /// <summary>A ratio as "12.3x" (two decimals below 10).</summary>
    public static string FormatRatio(double ratio) =>
        ratio.ToString(ratio < 10 ? "F2" : ratio < 100 ? "F1" : "F0", CultureInfo.InvariantCulture) + "x";

    /// <summary>An integer with thousands separators: 12,345.</summary>
    public static string FormatCount(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>The machine and runtime the numbers are measured on; call it before measuring, as it records the load.</summary>
    /// <summary>Prints and records a note when other processes were busy as the run began (load above half the cores).</summary>
    public static void NoteIfBusy(MachineInfo machine, List<string> notes)
    {
        if (machine.LoadAverageAtStart <= Environment.ProcessorCount / 2.0)
            return;
        var note = $"Other processes were busy when the run began (load average {machine.LoadAverageAtStart:F2} on {Environment.ProcessorCount} logical cores); expect noisy numbers.";
        notes.Add(note);
        Console.WriteLine(note);
    }

    public static MachineInfo Machine() => new(
        Environment.ProcessorCount,
        RuntimeInformation.OSDescription,
        RuntimeInformation.OSArchitecture.ToString(),
        RuntimeInformation.FrameworkDescription,
#if DEBUG
        "Debug",
#else
        "Release",
#endif
        TorchSharp.torch.get_num_threads(),
        LoadAverage(),
        VersionOf(typeof(TorchSharp.torch)),
        VersionOf(typeof(MLContext)),
        VersionOf(typeof(Microsoft.ML.OnnxRuntime.InferenceSession)));

    /// <summary>Writes <paramref name="report"/> as indented JSON to <paramref name="path"/>, creating its folder.</summary>
    public static void WriteJson(string path, BenchmarkReport report)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, JsonSerializer.Serialize(report, JsonOptions), new UTF8Encoding(false));
        Console.WriteLine($"Wrote {full}");
    }

    /// <summary>A JSON entry for one measurement, with its ratio against a baseline when one is given.</summary>
    public static ResultEntry Entry(Measurement m, Measurement? baseline = null, IReadOnlyDictionary<string, object?>? details = null) => new(
        m.Name, m.ItemsPerRun, m.Warmups, m.SamplesMs.Length, Round(m.MedianMs), Round(m.P99Ms), Round(m.MinMs), Round(m.MeanMs),
        Round(m.ItemsPerSecond), baseline is null ? null : Round(m.SpeedupOver(baseline)), m.SamplesMs.Select(Round).ToArray(), details);

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private static double Round(double x) => Math.Round(x, 4);

    private static void SettleGarbageCollector()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    /// <summary>The one-minute load average on Linux (other processes competing for the cores), else null.</summary>
    public static double? LoadAverage()
    {
        try
        {
            var first = File.ReadAllText("/proc/loadavg").Split(' ')[0];
            return double.Parse(first, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    private static string VersionOf(Type type)
    {
        var version = type.Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? type.Assembly.GetName().Version?.ToString() ?? "unknown";
        int plus = version.IndexOf('+', StringComparison.Ordinal);
        return plus > 0 ? version[..plus] : version;
    }
}

/// <summary>A plain-text table: the first column left-aligned, the others right-aligned.</summary>
internal sealed class ResultTable
{
    private readonly string[] _headers;
    private readonly List<string[]> _rows = new();

    public ResultTable(params string[] headers) => _headers = headers;

    public void AddRow(params string[] cells)
    {
        if (cells.Length != _headers.Length)
            throw new ArgumentException($"A row of this table has {_headers.Length} cells; got {cells.Length}.", nameof(cells));
        _rows.Add(cells);
    }

    public void Print(TextWriter writer)
    {
        var widths = _headers.Select((h, i) => _rows.Select(r => r[i].Length).Append(h.Length).Max()).ToArray();
        string Line(string[] cells) => string.Join(" | ", cells.Select((c, i) => i == 0 ? c.PadRight(widths[i]) : c.PadLeft(widths[i]))).TrimEnd();
        writer.WriteLine(Line(_headers));
        writer.WriteLine(string.Join("-+-", widths.Select(w => new string('-', w))));
        foreach (var row in _rows)
            writer.WriteLine(Line(row));
    }
}

/// <summary>The machine and runtime a benchmark ran on.</summary>
internal sealed record MachineInfo(
    int LogicalCores, string Os, string Architecture, string DotNet, string Configuration,
    int TorchThreads, double? LoadAverageAtStart, string TorchSharpVersion, string MlNetVersion, string OnnxRuntimeVersion);

/// <summary>One measurement in a JSON report.</summary>
internal sealed record ResultEntry(
    string Name, long ItemsPerRun, int Warmups, int Repetitions, double MedianMs, double P99Ms, double MinMs, double MeanMs,
    double ItemsPerSecond, double? RatioVsBaseline, double[] SamplesMs, IReadOnlyDictionary<string, object?>? Details);

/// <summary>What a benchmark writes with <c>--json</c>.</summary>
internal sealed class BenchmarkReport
{
    public required string Benchmark { get; init; }

    public DateTimeOffset TimestampUtc { get; init; } = DateTimeOffset.UtcNow;

    public required MachineInfo Machine { get; init; }

    /// <summary>The run's settings and data facts (rows, seed, data source).</summary>
    public Dictionary<string, object?> Parameters { get; init; } = new();

    /// <summary>The name of the measurement the ratios are taken against.</summary>
    public string? Baseline { get; init; }

    public List<ResultEntry> Results { get; init; } = new();

    /// <summary>Other figures a benchmark reports (latencies, accuracy, agreement checks).</summary>
    public Dictionary<string, object?> Extra { get; init; } = new();

    public List<string> Notes { get; init; } = new();
}
