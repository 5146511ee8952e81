using System.Globalization;

namespace Hazy.Samples;

/// <summary>A sample the dispatcher can run: its name, a one-line summary, the options it takes and its body.</summary>
internal sealed record SampleCommand(string Name, string Summary, IReadOnlyList<SampleOption> Options, Func<SampleContext, int> Run)
{
    /// <summary>The option named <paramref name="name"/>, or null when the command does not take it.</summary>
    public SampleOption? Find(string name) => Options.FirstOrDefault(o => string.Equals(o.Name, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>
/// An option a command takes: its name, the value it expects and a line of help. The dispatcher checks every value
/// before the command runs, so a typo fails in milliseconds rather than after minutes of training.
/// </summary>
internal sealed record SampleOption(string Name, string Expected, Func<string, bool> Accepts, string Help)
{
    public static SampleOption Text(string name, string help) => new(name, "a value", _ => true, help);

    public static SampleOption PositiveInteger(string name, string help) =>
        new(name, "a positive integer", v => int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0, help);

    public static SampleOption OneOf(string name, string[] choices, string help) =>
        new(name, "one of " + string.Join(", ", choices), v => choices.Contains(v, StringComparer.OrdinalIgnoreCase), help);

    /// <summary>The one-line error for a value this option does not accept, or null when it accepts it.</summary>
    public string? Check(string value) => Accepts(value) ? null : $"--{Name}: expected {Expected}, got \"{value}\".";
}

/// <summary>What a command receives: its options (already checked) and the token that Ctrl+C cancels.</summary>
internal sealed record SampleContext(string CommandName, IReadOnlyDictionary<string, string> Options, CancellationToken CancellationToken)
{
    /// <summary>The <c>--output</c> folder as a full path, by default <c>artifacts/&lt;command&gt;</c> under the current directory.</summary>
    public string OutputDirectory => Path.GetFullPath(Text("output") ?? Path.Combine("artifacts", CommandName));

    /// <summary>The option's value, or null when it was not given.</summary>
    public string? Text(string name) => Options.TryGetValue(name, out var value) ? value : null;

    /// <summary>The option's value in lower case (for options with a fixed set of values), or <paramref name="defaultValue"/>.</summary>
    public string Choice(string name, string defaultValue) => Text(name)?.ToLowerInvariant() ?? defaultValue;

    /// <summary>The integer option's value, or null when it was not given.</summary>
    public int? Integer(string name) => Text(name) is { } value ? int.Parse(value, CultureInfo.InvariantCulture) : null;

    /// <summary>The integer option's value, or <paramref name="defaultValue"/>.</summary>
    public int Integer(string name, int defaultValue) => Integer(name) ?? defaultValue;
}

/// <summary>The parsed command line: at most one command, <c>--name value</c> or <c>--name=value</c> options, and <c>--help</c>.</summary>
internal sealed record CommandLine(string? Command, IReadOnlyDictionary<string, string> Options, bool Help)
{
    public static bool TryParse(string[] args, out CommandLine result, out string? error)
    {
        string? command = null;
        var options = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        bool help = false;
        result = new CommandLine(null, options, false);
        error = null;
        for (int i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help" or "-?")
            {
                help = true;
            }
            else if (arg.StartsWith("--", StringComparison.Ordinal) && arg.Length > 2)
            {
                var name = arg[2..];
                string value;
                int equals = name.IndexOf('=', StringComparison.Ordinal);
                if (equals >= 0)
                {
                    value = name[(equals + 1)..];
                    name = name[..equals];
                }
                else if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    value = args[++i];
                }
                else
                {
                    error = $"The option --{name} needs a value.";
                    return false;
                }
                if (value.Length == 0)
                {
                    error = $"The option --{name} needs a non-empty value.";
                    return false;
                }
                if (!options.TryAdd(name, value))
                {
                    error = $"The option --{name} is given twice.";
                    return false;
                }
            }
            else if (arg.StartsWith('-'))
            {
                error = $"Unknown option '{arg}'.";
                return false;
            }
            else if (command is null)
            {
                command = arg;
            }
            else
            {
                error = $"Unexpected argument '{arg}': only one command may be given (the command is '{command}').";
                return false;
            }
        }
        result = new CommandLine(command, options, help);
        return true;
    }
}
