using System.Globalization;

namespace Microsoft.ML.Hazy.PerformanceTests;

/// <summary>A command-line mistake: the dispatcher prints it with the usage and exits with code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The options after the command name, as <c>--name value</c> pairs. A benchmark reads the options it knows,
/// then calls <see cref="EnsureAllUsed"/> so a misspelt option is an error rather than silently ignored.
/// </summary>
internal sealed class BenchmarkArgs
{
    private readonly Dictionary<string, string> _values;
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    private BenchmarkArgs(Dictionary<string, string> values) => _values = values;

    public static BenchmarkArgs Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new UsageException($"Unexpected argument '{arg}'; options have the form --name value.");
            var name = arg[2..];
            if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"Option --{name} needs a value.");
            if (!values.TryAdd(name, args[++i]))
                throw new UsageException($"Option --{name} is given twice.");
        }
        return new BenchmarkArgs(values);
    }

    public string? String(string name)
    {
        _used.Add(name);
        return _values.TryGetValue(name, out var v) ? v : null;
    }

    public int Int(string name, int defaultValue, int min = 1)
    {
        var text = String(name);
        if (text is null)
            return defaultValue;
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < min)
            throw new UsageException($"Option --{name} must be an integer of at least {min}; got '{text}'.");
        return value;
    }

    /// <summary>A comma-separated list of integers, each at least <paramref name="min"/>.</summary>
    public int[] Ints(string name, int[] defaultValue, int min = 1)
    {
        var text = String(name);
        if (text is null)
            return defaultValue;
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < min)
                throw new UsageException($"Option --{name} must be a comma-separated list of integers of at least {min}; got '{text}'.");
        if (values.Length == 0)
            throw new UsageException($"Option --{name} needs at least one value.");
        return values;
    }

    public void EnsureAllUsed()
    {
        var unknown = _values.Keys.Where(k => !_used.Contains(k)).ToArray();
        if (unknown.Length > 0)
            throw new UsageException($"Unknown option(s): {string.Join(", ", unknown.Select(k => "--" + k))}.");
    }
}
