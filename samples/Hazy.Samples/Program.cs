using Hazy.Samples;
using Spectre.Console;

// The samples' command line: `Hazy.Samples [command] [--option value ...]`. The first argument that is
// not an option picks the command (quickstart by default); each command declares the options it takes.
SampleCommand[] commands =
[
    new("quickstart", "Train an MLP on Fashion-MNIST, evaluate it, save it, reload it in a fresh MLContext and predict.",
        ["output"], Quickstart.Run),
    new("domino", "Domino slice discovery: 60 slice settings on Fashion-MNIST embeddings (ResNet18 by default) against three baselines, then the slices of a classifier's errors.",
        ["output", "encoder", "predictions", "embedding-cache", "setting-model"], DominoSample.Run),
    new("monarch", "Fashion-MNIST MLP: dense vs Monarch vs dense-to-sparse vs reverse-sparsified (accuracy, parameters, time, throughput).",
        ["output", "rows"], MonarchSample.Run),
    new("s4d", "S4D sequence classifiers vs stock ML.NET trainers on sequential Fashion-MNIST and five UCR series sets; writes metrics.json.",
        ["output", "datasets", "fashion-rows", "fashion-epochs", "threads"], S4DSample.Run),
    new("attention", "The Transformer (FlashAttention) backbone beside S4D and stock ML.NET trainers on the s4d command's data sets; writes metrics.json.",
        ["output", "datasets", "fashion-rows", "fashion-epochs", "threads"], S4DSample.RunAttention),
    new("explain", "Attribution methods on a Fashion-MNIST CNN: faithfulness, plausibility, sanity checks and speed per method; writes metrics.json and maps.png.",
        ["output", "images", "epochs", "threads"], ExplainSample.Run),
];

// Redirected output (CI logs, files) has no window width; Spectre would wrap at 80 columns.
if (Console.IsOutputRedirected)
    AnsiConsole.Profile.Width = 120;

const int UsageError = 2;
const int Cancelled = 130;

if (!CommandLine.TryParse(args, out var parsed, out var parseError))
    return Usage(parseError, UsageError);
if (parsed.Help)
    return Usage(null, 0);

var commandName = parsed.Command ?? commands[0].Name;
var command = commands.FirstOrDefault(c => string.Equals(c.Name, commandName, StringComparison.OrdinalIgnoreCase));
if (command is null)
    return Usage($"Unknown command '{commandName}'.", UsageError);
var unknown = parsed.Options.Keys.Where(k => !command.Options.Contains(k)).ToArray();
if (unknown.Length > 0)
    return Usage($"The command '{command.Name}' does not take the option(s) {string.Join(", ", unknown.Select(k => "--" + k))}.", UsageError);

// The first Ctrl+C cancels training between optimizer steps; a second one ends the process.
using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    if (cancellation.IsCancellationRequested)
        return;
    e.Cancel = true;
    cancellation.Cancel();
};

try
{
    return command.Run(new SampleContext(command.Name, parsed.Options, cancellation.Token));
}
catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
{
    AnsiConsole.MarkupLine("[yellow]Cancelled.[/]");
    return Cancelled;
}

int Usage(string? error, int exitCode)
{
    var writer = exitCode == 0 ? Console.Out : Console.Error;
    if (error is not null)
        writer.WriteLine($"error: {error}");
    writer.WriteLine("Usage: dotnet run --project samples/Hazy.Samples -c Release -- [command] [options]");
    writer.WriteLine();
    writer.WriteLine("Commands:");
    foreach (var c in commands)
        writer.WriteLine($"  {c.Name,-12}{(c == commands[0] ? "(default) " : "")}{c.Summary}");
    writer.WriteLine();
    writer.WriteLine("Options:");
    writer.WriteLine("  --output DIR  Folder that receives the command's model and metrics (default: artifacts/<command>).");
    writer.WriteLine("  --rows N      monarch: training images used at most (default 12000).");
    writer.WriteLine("  s4d only: --datasets A,B (default FashionMNIST and the five UCR sets), --fashion-rows N (first N training images),");
    writer.WriteLine("            --fashion-epochs N (default 3), --threads N (libtorch intra-op threads; default one per core, 1 on a shared machine).");
    writer.WriteLine("  explain only: --images N (correctly classified test images attributed, default 500), --epochs N (CNN epochs, default 3),");
    writer.WriteLine("            --threads N (libtorch intra-op threads, default 1).");
    writer.WriteLine("  domino only: --encoder resnet18|mlp|cnn-pool|cnn (default resnet18), --predictions per-setting|trained|synthetic");
    writer.WriteLine("            (default per-setting), --setting-model cnn|linear (the per-setting model, default cnn),");
    writer.WriteLine("            --embedding-cache DIR (keeps ResNet18 features between runs).");
    writer.WriteLine("  -h, --help    Show this message.");
    return exitCode;
}
