namespace Hazy.Samples;

/// <summary>A sample the dispatcher can run: its name, a one-line summary, the options it takes and its body.</summary>
internal sealed record SampleCommand(string Name, string Summary, IReadOnlyCollection<string> Options, Func<SampleContext, int> Run);

/// <summary>What a command receives: its options and the token that Ctrl+C cancels.</summary>
internal sealed record SampleContext(string CommandName, IReadOnlyDictionary<string, string> Options, CancellationToken CancellationToken)
{
    /// <summary>The <c>--output</c> folder as a full path, by default <c>artifacts/&lt;command&gt;</c> under the current directory.</summary>
    public string OutputDirectory => Path.GetFullPath(Options.TryGetValue("output", out var dir) ? dir : Path.Combine("artifacts", CommandName));
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
