using Hazy.Samples;
using Spectre.Console;

// The samples' command line: `Hazy.Samples [command] [--option value ...]`. The first argument that is
// not an option picks the command (quickstart by default); each command declares the options it takes.
var output = SampleOption.Text("output", "--output DIR  Folder that receives the command's model and metrics (default: artifacts/<command>).");
var datasets = SampleOption.Text("datasets", "--datasets A,B  Data sets to run (default FashionMNIST and the five UCR sets).");
var fashionRows = SampleOption.PositiveInteger("fashion-rows", "--fashion-rows N  First N Fashion-MNIST training images.");
var fashionEpochs = SampleOption.PositiveInteger("fashion-epochs", "--fashion-epochs N  Epochs on Fashion-MNIST (default 3).");
var s4dThreads = SampleOption.PositiveInteger("threads", "--threads N  libtorch intra-op threads (default one per core; 1 on a shared machine).");
SampleCommand[] commands =
[
    new("quickstart", "Train an MLP on Fashion-MNIST, evaluate it, save it, reload it in a fresh MLContext and predict.",
        [output], Quickstart.Run),
    new("domino", "Domino slice discovery: 60 slice settings on Fashion-MNIST embeddings (ResNet18 by default) against three baselines, then the slices of a classifier's errors.",
        [output,
         SampleOption.OneOf("encoder", ["resnet18", "mlp", "cnn-pool", "cnn"], "--encoder resnet18|mlp|cnn-pool|cnn  The embedding (default resnet18)."),
         SampleOption.OneOf("predictions", ["per-setting", "trained", "synthetic"], "--predictions per-setting|trained|synthetic  The model whose errors are sliced (default per-setting)."),
         SampleOption.Text("embedding-cache", "--embedding-cache DIR  Keeps ResNet18 features between runs."),
         SampleOption.OneOf("setting-model", ["cnn", "linear"], "--setting-model cnn|linear  The per-setting model (default cnn)."),
         new SampleOption("domino-weight", "a non-negative number", v => double.TryParse(v, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var w) && w >= 0,
             "--domino-weight W  Domino's label and prediction weights γ = γ̂ in the evaluation (default 10; the reference class's default is 1).")],
        DominoSample.Run),
    new("monarch", "Fashion-MNIST MLP: dense vs Monarch vs dense-to-sparse vs reverse-sparsified (accuracy, parameters, time, throughput).",
        [output, SampleOption.PositiveInteger("rows", "--rows N  Training images used at most (default 12000).")], MonarchSample.Run),
    new("s4d", "S4D sequence classifiers vs stock ML.NET trainers and MiniRocket on sequential Fashion-MNIST and six UCR series sets; writes metrics.json.",
        [output, datasets, fashionRows, fashionEpochs, s4dThreads,
         SampleOption.OneOf("normalize-series", ["true", "false"], "--normalize-series true|false  Overrides the presets' per-series z-normalisation.")], S4DSample.Run),
    new("attention", "The Transformer (FlashAttention) backbone beside S4D and stock ML.NET trainers on the s4d command's data sets; writes metrics.json.",
        [output, datasets, fashionRows, fashionEpochs, s4dThreads], S4DSample.RunAttention),
    new("defaults", "The S4D short overload (columns and channels only) against the UCR preset on small 10-class series sets.",
        [datasets, s4dThreads, SampleOption.Text("modes", "--modes short,preset,reference  Trainers to run (default short and preset)."),
         SampleOption.PositiveInteger("test-rows", "--test-rows N  Fashion-MNIST test images scored (default 1000).")],
        DefaultsSample.Run),
    new("explain", "Attribution methods on a Fashion-MNIST CNN: faithfulness, plausibility, sanity checks and speed per method; writes metrics.json and maps.png.",
        [output,
         SampleOption.PositiveInteger("images", "--images N  Correctly classified test images attributed (default 500)."),
         SampleOption.PositiveInteger("epochs", "--epochs N  CNN epochs (default 3)."),
         SampleOption.PositiveInteger("threads", "--threads N  libtorch intra-op threads (default 1).")],
        ExplainSample.Run),
    new("masks", "Mask-guided penalties (GradMask, RRR, ActDiff) with lesion, task and full masks vs ERM on the background-shift benchmark; writes metrics.json and maps.png.",
        [output,
         SampleOption.PositiveInteger("rows", "--rows N  Training rows (default 4000)."),
         SampleOption.PositiveInteger("epochs", "--epochs N  CNN epochs (default 4)."),
         SampleOption.PositiveInteger("seeds", "--seeds N  Seeds per setting (default 3)."),
         SampleOption.Text("sizes", "--sizes A,B  Smaller training-set sizes for the gap curve (default 1000)."),
         SampleOption.Text("methods", "--methods A,B  Penalties to run: GradMask, Rrr, ActDiff (default all)."),
         SampleOption.Text("weights", "--weights GradMask=W,Rrr=W,ActDiff=W  λ per penalty (default GradMask=1e-4,Rrr=1e-3,ActDiff=1)."),
         SampleOption.PositiveInteger("threads", "--threads N  libtorch intra-op threads (default 1).")],
        MasksSample.Run),
    new("contrastive", "Perfectly Balanced on Fashion-MNIST: coarse-label encoders (CE, SupCon, SupCon+cNCE, CE+AE, Thanos, fine CE ceiling) probed with a linear classifier on fine labels; writes metrics.json.",
        [output,
         SampleOption.PositiveInteger("rows", "--rows N  Training images (default 12000)."),
         SampleOption.PositiveInteger("test-rows", "--test-rows N  Test images (default 5000)."),
         SampleOption.PositiveInteger("epochs", "--epochs N  Epochs per encoder (default 10)."),
         SampleOption.PositiveInteger("threads", "--threads N  libtorch intra-op threads.")],
        ContrastiveSample.Run),
    new("worstgroup", "Worst-group accuracy on Fashion-MNIST coarse classes with a planted marker (or rare fine classes): ERM vs group DRO on true groups and on GEORGE pseudo-groups from SupCon, CE and Thanos embeddings; writes metrics.json.",
        [output,
         SampleOption.OneOf("protocol", ["marker", "rare"], "--protocol marker|rare  A corner marker correlated with 'other' in training (default), or rare fine classes."),
         SampleOption.PositiveInteger("rows", "--rows N  Training images before the rare classes are thinned (default 12000)."),
         SampleOption.PositiveInteger("test-rows", "--test-rows N  Test images (default 5000)."),
         SampleOption.PositiveInteger("epochs", "--epochs N  Epochs per model (default 5)."),
         SampleOption.PositiveInteger("rare-percent", "--rare-percent P  Share of each rare fine class kept in training, in percent (default 5)."),
         SampleOption.PositiveInteger("threads", "--threads N  libtorch intra-op threads.")],
        WorstGroupSample.Run),
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
var unknown = parsed.Options.Keys.Where(k => command.Find(k) is null).ToArray();
if (unknown.Length > 0)
    return Usage($"The command '{command.Name}' does not take the option(s) {string.Join(", ", unknown.Select(k => "--" + k))}.", UsageError, command);
var badValue = parsed.Options.Select(o => command.Find(o.Key)!.Check(o.Value)).FirstOrDefault(e => e is not null);
if (badValue is not null)
    return Usage(badValue, UsageError, command);

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

int Usage(string? error, int exitCode, SampleCommand? only = null)
{
    var writer = exitCode == 0 ? Console.Out : Console.Error;
    if (error is not null)
        writer.WriteLine($"error: {error}");
    writer.WriteLine($"Usage: dotnet run --project samples/Hazy.Samples -c Release -- {only?.Name ?? "[command]"} [options]");
    foreach (var c in only is null ? commands : [only])
    {
        writer.WriteLine();
        writer.WriteLine($"{c.Name}{(c == commands[0] ? " (default)" : "")}: {c.Summary}");
        foreach (var option in c.Options)
            writer.WriteLine($"  {option.Help}");
    }
    writer.WriteLine();
    writer.WriteLine("  -h, --help  Show this message.");
    return exitCode;
}
