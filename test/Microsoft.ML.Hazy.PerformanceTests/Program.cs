using System.Globalization;
using Microsoft.ML.Hazy.PerformanceTests;

CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

var commands = new (string Name, string Options, string Description, Func<BenchmarkArgs, int> Run)[]
{
    ("scoring", "[--json FILE] [--rows N]", ScoringBenchmark.Description, ScoringBenchmark.Run),
    ("domino", "[--json FILE]", DominoBenchmark.Description, DominoBenchmark.Run),
    ("attention", "[--json FILE] [--min-length N] [--max-length N] [--head-dims 64,128] [--sparse-length N (0: none)]", AttentionBenchmark.Description, AttentionBenchmark.Run),
    ("monarch", "[--json FILE] [--repetitions N]", MonarchBenchmark.Description, MonarchBenchmark.Run),
    ("explain", "[--json FILE] [--repetitions N] [--threads N]", ExplainBenchmark.Description, ExplainBenchmark.Run),
    ("s4d", "[--json FILE] [--parts blocks,memory,onnx,scoring] [--max-length N] [--threads N]", S4DBenchmark.Description, S4DBenchmark.Run),
    ("masks", "[--json FILE] [--repetitions N] [--threads N]", MasksBenchmark.Description, MasksBenchmark.Run),
    ("contrastive", "[--json FILE] [--repetitions N] [--threads N]", ContrastiveBenchmark.Description, ContrastiveBenchmark.Run),
};

if (args.Length == 1 && args[0] is "-h" or "--help" or "help")
{
    PrintUsage(Console.Out);
    return 0;
}

var command = args.Length == 0 ? default : commands.FirstOrDefault(c => c.Name == args[0]);
if (command.Run is null)
{
    if (args.Length > 0)
        Console.Error.WriteLine($"Unknown command '{args[0]}'.");
    PrintUsage(Console.Error);
    return 2;
}

try
{
    var options = BenchmarkArgs.Parse(args[1..]);
#if DEBUG
    Console.WriteLine("Warning: this is a Debug build; run with -c Release for meaningful numbers.");
#endif
    return command.Run(options);
}
catch (UsageException e)
{
    Console.Error.WriteLine(e.Message);
    PrintUsage(Console.Error);
    return 2;
}

void PrintUsage(TextWriter writer)
{
    writer.WriteLine("Usage: dotnet run --project test/Microsoft.ML.Hazy.PerformanceTests -c Release -- <command> [options]");
    writer.WriteLine();
    writer.WriteLine("Commands:");
    foreach (var c in commands)
    {
        writer.WriteLine($"  {c.Name} {c.Options}");
        writer.WriteLine($"      {c.Description}");
    }
    writer.WriteLine();
    writer.WriteLine("  --json FILE  also write the numbers and machine info as JSON to FILE");
}
