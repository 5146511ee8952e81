using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Sequence;
using Microsoft.ML.Hazy.Sequence.S4D;
using Microsoft.ML.Hazy.Training;
using Microsoft.ML.Trainers;
using Microsoft.ML.Trainers.FastTree;
using Microsoft.ML.Trainers.LightGbm;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// S4D sequence classifiers against the stock ML.NET multiclass trainers on the same raw series: sequential
/// Fashion-MNIST (the 784 pixels of an image as one sequence) and five UCR/UEA time-series problems. Each
/// S4D model is trained with <c>mlContext.MulticlassClassification.Trainers.HazyS4D</c> and scored through
/// its ML.NET chain (ONNX); each peer (LightGBM, SDCA maximum entropy, one-versus-all FastForest) sees the
/// same values as one feature vector, zero-padded to the longest series when lengths vary. MiniRocket (random dilated
/// kernels, <c>mlContext.Transforms.MiniRocket</c>) feeding stock LbfgsMaximumEntropy reads the series as they are. Writes
/// <c>metrics.json</c>: per data set the test accuracies and train seconds.
/// </summary>
internal static class S4DSample
{
    private static readonly string[] UcrSets = ["GunPoint", "ItalyPowerDemand", "ArrowHead", "BasicMotions", "JapaneseVowels", "PickupGestureWiimoteZ"];

    /// <summary>The margin: S4D at least this many accuracy points above the best stock ML.NET trainer on every set.</summary>
    private const double MarginTarget = 0.05;

    /// <summary>The targets of the issue: S4D test accuracy per data set.</summary>
    private static readonly Dictionary<string, double> Targets = new()
    {
        ["FashionMNIST"] = 0.88,
        ["GunPoint"] = 0.90,
        ["ItalyPowerDemand"] = 0.90,
        ["BasicMotions"] = 0.90,
        ["JapaneseVowels"] = 0.90,
    };

    public static int Run(SampleContext context) => Run(context, withTransformer: false);

    /// <summary>The `attention` command: the same problems with the Transformer backbone trained beside S4D.</summary>
    public static int RunAttention(SampleContext context) => Run(context, withTransformer: true);

    private static int Run(SampleContext context, bool withTransformer)
    {
        var total = Stopwatch.StartNew();
        var outputDirectory = context.OutputDirectory;
        Directory.CreateDirectory(outputDirectory);
        var selected = context.Text("datasets") is { } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : ["FashionMNIST", .. UcrSets];
        int? fashionRows = context.Integer("fashion-rows");
        // Attention costs O(L²) per layer: at L = 784 a full Fashion-MNIST epoch would take most of an hour on two cores.
        if (withTransformer)
            fashionRows ??= 10_000;
        // One libtorch thread per core by default (an epoch of sequential Fashion-MNIST: 260 s with two threads on an idle
        // 2-core machine, 470 s with one). On a machine that other work shares, pass --threads 1: the intra-op threads of
        // the FFTs then wait on each other at every call, and training ran 3–20× slower with two threads than with one.
        TorchSharp.torch.set_num_threads(context.Integer("threads", Environment.ProcessorCount));
        int fashionEpochs = context.Integer("fashion-epochs", 3);
        bool? normalizeSeries = context.Text("normalize-series") is { } z ? bool.Parse(z) : null;
        AnsiConsole.Write(new Rule("[bold]S4D[/] sequence classifiers against stock ML.NET trainers").LeftJustified());
        AnsiConsole.MarkupLine(Invariant($"libtorch threads: {TorchSharp.torch.get_num_threads()}, logical cores: {Environment.ProcessorCount}"));

        var results = new List<DataSetResult>();
        foreach (var name in selected)
        {
            context.CancellationToken.ThrowIfCancellationRequested();
            var problem = name.Equals("FashionMNIST", StringComparison.OrdinalIgnoreCase)
                ? LoadFashion(fashionRows, fashionEpochs)
                : LoadUcr(name);
            if (problem is null)
                continue;
            if (normalizeSeries is bool on)
                problem.Options.NormalizeSeries = on;
            results.Add(RunProblem(problem, withTransformer, context.CancellationToken));
        }

        var summary = Summarize(results, total.Elapsed.TotalSeconds);
        var metricsPath = Path.Combine(outputDirectory, "metrics.json");
        File.WriteAllText(metricsPath, JsonSerializer.Serialize(new S4DMetrics(results, summary), JsonOptions) + Environment.NewLine);

        var table = new Table().Title("Test accuracy").AddColumn("Data set");
        if (withTransformer)
            table.AddColumn(new TableColumn("Transformer").RightAligned()).AddColumn(new TableColumn("Transformer train s").RightAligned());
        table.AddColumn(new TableColumn("S4D").RightAligned())
            .AddColumn(new TableColumn("S4D train s").RightAligned()).AddColumn("Best stock trainer").AddColumn(new TableColumn("Accuracy").RightAligned())
            .AddColumn(new TableColumn("Train s").RightAligned()).AddColumn(new TableColumn("MiniRocket").RightAligned()).AddColumn(new TableColumn("MiniRocket s").RightAligned())
            .AddColumn(new TableColumn("S4D − best stock (≥ +0.05)").RightAligned()).AddColumn("Target");
        foreach (var r in results)
        {
            var cells = new List<string> { Markup.Escape(r.Name) };
            if (withTransformer)
                cells.AddRange(new[] { Invariant($"{r.Transformer?.Accuracy:F4}"), Invariant($"{r.Transformer?.TrainSeconds:F1}") });
            table.AddRow(cells.Concat(new[] { Invariant($"{r.S4D.Accuracy:F4}"), Invariant($"{r.S4D.TrainSeconds:F1}"),
                Markup.Escape(r.BestPeer.Trainer), Invariant($"{r.BestPeer.Accuracy:F4}"), Invariant($"{r.BestPeer.TrainSeconds:F1}"),
                r.MiniRocket is { } mr ? Invariant($"{mr.Accuracy:F4}") : "–", r.MiniRocket is { } mrs ? Invariant($"{mrs.TrainSeconds:F1}") : "–",
                r.MeetsMargin ? Invariant($"[green]{r.S4D.Accuracy - r.BestPeer.Accuracy:+0.0000;-0.0000} met[/]") : Invariant($"[red]{r.S4D.Accuracy - r.BestPeer.Accuracy:+0.0000;-0.0000} missed[/]"),
                r.Target is double t ? (r.MeetsTarget == true ? Invariant($"[green]≥ {t:F2} met[/]") : Invariant($"[red]≥ {t:F2} missed[/]")) : "" }).ToArray());
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Invariant($"S4D ≥ best stock + 5 points on {summary.MarginMet} of {results.Count} sets; S4D ≥ MiniRocket on {summary.AtLeastAsGoodAsMiniRocket} of {summary.MiniRocketSets}."));
        AnsiConsole.MarkupLine(Invariant($"S4D at least as good as the best stock trainer on {summary.UcrAtLeastAsGoodAsPeer} of {summary.UcrDataSets} UCR sets; ")
            + Invariant($"accuracy targets met on {summary.TargetsMet} of {summary.TargetsSet}."));
        AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(metricsPath)}[/].");
        AnsiConsole.MarkupLine(Invariant($"Done in {total.Elapsed.TotalSeconds:F1} s."));
        return 0;
    }

    private static DataSetResult RunProblem(Problem problem, bool withTransformer, CancellationToken cancellation)
    {
        AnsiConsole.Write(new Rule(Markup.Escape(problem.Name)).LeftJustified());
        AnsiConsole.MarkupLine(Invariant($"{problem.Classes} classes, {problem.TrainRows:N0} train / {problem.TestRows:N0} test series of {problem.LengthText} steps × {problem.Channels} channel(s)")
            + (problem.Note is null ? "" : $" [grey]({Markup.Escape(problem.Note)})[/]"));

        var ml = new MLContext(seed: 1);
        var options = problem.Options;
        options.Channels = problem.Channels;
        options.CancellationToken = cancellation;
        var progress = new TrainingProgressDisplay();
        options.Progress = progress;
        var clock = Stopwatch.StartNew();
        using var model = progress.Run(
            Invariant($"S4D {options.NumberOfLayers}×{options.ModelDimension}, N = {options.S4D.StateSize}, {options.NumberOfEpochs} epochs, ≥ {options.MinimumSteps} steps"),
            () => ml.MulticlassClassification.Trainers.HazyS4D(options).Fit(problem.SequenceTrain));
        double trainSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();
        var metrics = ml.MulticlassClassification.Evaluate(model.Transform(problem.SequenceTest));
        double scoreSeconds = clock.Elapsed.TotalSeconds;
        AnsiConsole.MarkupLine(Invariant($"  S4D: test accuracy [bold]{metrics.MicroAccuracy:F4}[/], trained in {trainSeconds:F1} s, scored {problem.TestRows:N0} series through ML.NET in {scoreSeconds:F1} s"));
        var s4d = new S4DResult(metrics.MicroAccuracy, Math.Round(trainSeconds, 2), Math.Round(scoreSeconds, 2), new S4DConfig(
            options.ModelDimension, options.NumberOfLayers, options.S4D.StateSize, options.S4D.Initialization.ToString(), options.Bidirectional,
            options.Normalization.ToString(), options.PreNorm, options.DropoutRate, options.NumberOfEpochs, model.TrainingHistory.Count,
            options.BatchSize, options.LearningRate, options.WeightDecay, options.S4D.SsmLearningRate, model.Seed, options.NormalizeSeries, options.Pooling.ToString()));

        S4DResult? transformer = null;
        if (withTransformer)
        {
            var attention = TransformerOptions(options);
            var tmContext = new MLContext(seed: 1);
            clock.Restart();
            using var tm = progress.Run(
                Invariant($"Transformer {attention.NumberOfLayers}×{attention.ModelDimension}, {attention.Transformer.NumberOfHeads} heads, {attention.NumberOfEpochs} epochs, ≥ {attention.MinimumSteps} steps"),
                () => tmContext.MulticlassClassification.Trainers.HazySequence(attention).Fit(problem.SequenceTrain));
            double tmSeconds = clock.Elapsed.TotalSeconds;
            clock.Restart();
            var tmMetrics = tmContext.MulticlassClassification.Evaluate(tm.Transform(problem.SequenceTest));
            AnsiConsole.MarkupLine(Invariant($"  Transformer: test accuracy [bold]{tmMetrics.MicroAccuracy:F4}[/], trained in {tmSeconds:F1} s"));
            transformer = new S4DResult(tmMetrics.MicroAccuracy, Math.Round(tmSeconds, 2), Math.Round(clock.Elapsed.TotalSeconds, 2), new S4DConfig(
                attention.ModelDimension, attention.NumberOfLayers, 0, "Transformer", attention.Bidirectional, attention.Normalization.ToString(), attention.PreNorm,
                attention.DropoutRate, attention.NumberOfEpochs, tm.TrainingHistory.Count, attention.BatchSize, attention.LearningRate, attention.WeightDecay, 0, tm.Seed,
                attention.NormalizeSeries, attention.Pooling.ToString()));
        }

        var peers = new List<PeerResult>();
        foreach (var (trainerName, create) in Peers(problem))
        {
            cancellation.ThrowIfCancellationRequested();
            var peerContext = new MLContext(seed: 1);
            clock.Restart();
            var estimator = problem.VectorLabelIsText
                ? peerContext.Transforms.Conversion.MapValueToKey("Label", nameof(PaddedRow.Class)).Append(create(peerContext))
                : create(peerContext);
            var fitted = estimator.Fit(problem.VectorTrain);
            double peerSeconds = clock.Elapsed.TotalSeconds;
            var peerMetrics = peerContext.MulticlassClassification.Evaluate(fitted.Transform(problem.VectorTest));
            AnsiConsole.MarkupLine(Invariant($"  {trainerName}: test accuracy {peerMetrics.MicroAccuracy:F4}, trained in {peerSeconds:F1} s"));
            peers.Add(new PeerResult(trainerName, peerMetrics.MicroAccuracy, Math.Round(peerSeconds, 2)));
        }
        var best = peers.OrderByDescending(p => p.Accuracy).ThenBy(p => p.TrainSeconds).First();
        PeerResult? miniRocket = null;
        // MiniRocket costs about 10,000 features × L steps per series: on 60,000 images of 784 steps that is hours on two cores.
        if (problem.TrainRows <= 10_000)
        {
            cancellation.ThrowIfCancellationRequested();
            var mrContext = new MLContext(seed: 1);
            clock.Restart();
            var fitted = mrContext.Transforms.MiniRocket(channels: problem.Channels, seed: 1)
                .AppendCacheCheckpoint(mrContext)
                .Append(mrContext.Transforms.NormalizeMeanVariance("Features"))
                .Append(mrContext.MulticlassClassification.Trainers.LbfgsMaximumEntropy())
                .Fit(problem.SequenceTrain);
            double mrSeconds = clock.Elapsed.TotalSeconds;
            var mrMetrics = mrContext.MulticlassClassification.Evaluate(fitted.Transform(problem.SequenceTest));
            AnsiConsole.MarkupLine(Invariant($"  MiniRocket + LbfgsMaximumEntropy: test accuracy {mrMetrics.MicroAccuracy:F4}, trained in {mrSeconds:F1} s"));
            miniRocket = new PeerResult("MiniRocket + LbfgsMaximumEntropy", mrMetrics.MicroAccuracy, Math.Round(mrSeconds, 2));
        }
        double? target = Targets.TryGetValue(problem.Name, out var t) ? t : null;
        return new DataSetResult(problem.Name, problem.Classes, problem.TrainRows, problem.TestRows, problem.LengthText, problem.Channels, problem.VariableLength,
            problem.Note, s4d, peers, best, s4d.Accuracy >= best.Accuracy, target, target is double goal ? s4d.Accuracy >= goal : null, transformer,
            miniRocket, s4d.Accuracy >= best.Accuracy + MarginTarget - 1e-9);
    }

    /// <summary>The S4D settings of a problem with the Transformer backbone: pre-norm, four heads and a lower learning rate.</summary>
    private static SequenceTrainer.Options TransformerOptions(SequenceTrainer.Options s4d) => new()
    {
        Channels = s4d.Channels,
        MaximumLength = s4d.MaximumLength,
        Backbone = SequenceBackbone.Transformer,
        Transformer = new Microsoft.ML.Hazy.Sequence.Attention.TransformerOptions { NumberOfHeads = 4, FeedForwardMultiplier = 2 },
        ModelDimension = s4d.ModelDimension,
        NumberOfLayers = s4d.NumberOfLayers,
        Bidirectional = s4d.Bidirectional,
        PreNorm = true,
        DropoutRate = s4d.DropoutRate,
        NumberOfEpochs = s4d.NumberOfEpochs,
        MinimumSteps = s4d.MinimumSteps,
        BatchSize = s4d.BatchSize,
        LearningRate = 2e-3,
        WeightDecay = s4d.WeightDecay,
        WarmupFraction = Math.Max(0.1, s4d.WarmupFraction),
        NormalizeSeries = s4d.NormalizeSeries,
        CancellationToken = s4d.CancellationToken,
        Progress = s4d.Progress,
    };

    /// <summary>The stock ML.NET multiclass trainers tried on the raw series as one feature vector.</summary>
    private static IEnumerable<(string Name, Func<MLContext, IEstimator<ITransformer>> Create)> Peers(Problem problem)
    {
        yield return ("LightGbm", ml => ml.MulticlassClassification.Trainers.LightGbm(new LightGbmMulticlassTrainer.Options
        {
            NumberOfIterations = 100,
            MinimumExampleCountPerLeaf = Math.Min(20, Math.Max(2, problem.TrainRows / (4 * problem.Classes))),
            Seed = 1,
        }));
        yield return ("SdcaMaximumEntropy", ml => ml.Transforms.NormalizeMeanVariance("Features")
            .Append(ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(new SdcaMaximumEntropyMulticlassTrainer.Options
            {
                MaximumNumberOfIterations = problem.TrainRows > 10_000 ? 10 : 100,
            })));
        // One FastForest per class: ten forests on 60,000 × 784 would take longer than the rest of the run.
        if (problem.TrainRows <= 10_000)
        {
            yield return ("FastForest (one-versus-all)", ml => ml.MulticlassClassification.Trainers.OneVersusAll(
                ml.BinaryClassification.Trainers.FastForest(new FastForestBinaryTrainer.Options { NumberOfTrees = 100, MinimumExampleCountPerLeaf = 2 })));
        }
    }

    private static Problem? LoadFashion(int? maxTrainRows, int epochs)
    {
        var ml = new MLContext(seed: 1);
        var source = FashionMnistData.LoadDefault(ml, maxTrainRows);
        long train = source.Train.GetRowCount() ?? source.Train.GetColumn<uint>("Label").LongCount();
        long test = source.Test.GetRowCount() ?? source.Test.GetColumn<uint>("Label").LongCount();
        string? note = source.IsSubset ? "the repository's subset: install dataset-fashion-mnist for the full set" : maxTrainRows is int n ? Invariant($"first {n:N0} training images") : null;
        // The FFT convolutions cost about 4·H transforms of 2L points per image and layer, so width and epochs (3 by default)
        // are what the 20-minute budget of the whole command allows on two idle cores. Pre-norm BatchNorm, batches of 32 and a
        // higher learning rate (Δ and A included) learned fastest in one pass on 12,000 images.
        var options = SequenceTrainer.Options.Presets.SequentialImage(numberOfEpochs: epochs);
        return new Problem("FashionMNIST", 10, (int)train, (int)test, "784", 1, false, note, source.Train, source.Test, source.Train, source.Test, options);
    }

    private static Problem? LoadUcr(string name)
    {
        var folder = UcrData.FindSharedDataDirectory();
        if (folder is null)
        {
            AnsiConsole.MarkupLine($"[yellow]Skipping {Markup.Escape(name)}: the shared UCR data (../shared/data/ucr or $HAZY_DATA_DIR/ucr) is absent.[/]");
            return null;
        }
        var (train, test) = UcrTimeSeries.LoadPair(folder, name);
        var ml = new MLContext(seed: 1);
        int longest = Math.Max(train.Length, test.Length);
        var lengthText = train.IsEqualLength && test.IsEqualLength && train.Length == test.Length
            ? Invariant($"{train.Length}")
            : Invariant($"{Math.Min(train.Lengths.Min(), test.Lengths.Min())}–{longest}");
        var options = SequenceTrainer.Options.Presets.UcrClassification(train.ChannelCount);
        options.MaximumLength = longest;
        return new Problem(name, train.ClassLabels.Count, train.Count, test.Count, lengthText, train.ChannelCount, !train.IsEqualLength,
            train.IsEqualLength ? null : "variable length: S4D reads the series as they are, the stock trainers see them zero-padded to the longest",
            train.ToDataView(ml), test.ToDataView(ml), Padded(ml, train, longest), Padded(ml, test, longest), options);
    }

    /// <summary>
    /// The cases as fixed-size vectors for the stock trainers, zero-padded to <paramref name="length"/> steps, with the
    /// class as text (each peer's pipeline maps it to a key, fitted on the training set).
    /// </summary>
    private static IDataView Padded(MLContext ml, UcrDataSet set, int length)
    {
        int width = length * set.ChannelCount;
        var rows = Enumerable.Range(0, set.Count).Select(i =>
        {
            var features = new float[width];
            set.Series[i].Span.CopyTo(features);
            return new PaddedRow { Class = set.Labels[i], Features = features };
        }).ToList();
        var schema = SchemaDefinition.Create(typeof(PaddedRow));
        schema["Features"].ColumnType = new VectorDataViewType(NumberDataViewType.Single, width);
        return ml.Data.LoadFromEnumerable(rows, schema);
    }

    private static Summary Summarize(List<DataSetResult> results, double seconds)
    {
        var ucr = results.Where(r => UcrSets.Contains(r.Name)).ToList();
        var withTarget = results.Where(r => r.Target is not null).ToList();
        var withMiniRocket = results.Where(r => r.MiniRocket is not null).ToList();
        return new Summary(ucr.Count, ucr.Count(r => r.S4DAtLeastAsGoodAsBestPeer), withTarget.Count, withTarget.Count(r => r.MeetsTarget == true),
            Math.Round(seconds, 1), TorchSharp.torch.get_num_threads(), Environment.ProcessorCount,
            results.Count(r => r.MeetsMargin), withMiniRocket.Count, withMiniRocket.Count(r => r.S4D.Accuracy >= r.MiniRocket!.Accuracy));
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed class PaddedRow
    {
        public string Class = "";
        public float[] Features = [];
    }

    private sealed record Problem(string Name, int Classes, int TrainRows, int TestRows, string LengthText, int Channels, bool VariableLength, string? Note,
        IDataView SequenceTrain, IDataView SequenceTest, IDataView VectorTrain, IDataView VectorTest, SequenceTrainer.Options Options)
    {
        /// <summary>Whether the peers' data holds the class as text (UCR) rather than a key (Fashion-MNIST).</summary>
        public bool VectorLabelIsText => VectorTrain.Schema.GetColumnOrNull(nameof(PaddedRow.Class)) is not null;
    }

    private sealed record S4DConfig(int ModelDimension, int Layers, int StateSize, string Initialization, bool Bidirectional, string Normalization,
        bool PreNorm, double Dropout, int Epochs, int EpochsRun, int BatchSize, double LearningRate, double WeightDecay, double SsmLearningRate, int Seed,
        bool NormalizeSeries, string Pooling);

    private sealed record S4DResult(double Accuracy, double TrainSeconds, double ScoreSeconds, S4DConfig Config);

    private sealed record PeerResult(string Trainer, double Accuracy, double TrainSeconds);

    private sealed record DataSetResult(string Name, int Classes, int TrainRows, int TestRows, string Length, int Channels, bool VariableLength, string? Note,
        [property: JsonPropertyName("s4d")] S4DResult S4D, List<PeerResult> Peers, PeerResult BestPeer,
        [property: JsonPropertyName("s4dAtLeastAsGoodAsBestPeer")] bool S4DAtLeastAsGoodAsBestPeer, double? Target, bool? MeetsTarget,
        S4DResult? Transformer = null, PeerResult? MiniRocket = null, bool MeetsMargin = false);

    private sealed record Summary(int UcrDataSets, int UcrAtLeastAsGoodAsPeer, int TargetsSet, int TargetsMet, double TotalSeconds, int TorchThreads, int LogicalCores,
        int MarginMet, int MiniRocketSets, int AtLeastAsGoodAsMiniRocket);

    private sealed record S4DMetrics(List<DataSetResult> DataSets, Summary Summary);
}
