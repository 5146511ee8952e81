using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Training;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// The quickstart: a multilayer perceptron on Fashion-MNIST in an ordinary ML.NET pipeline. It trains with
/// TorchSharp, evaluates with ML.NET's evaluator, saves with <c>mlContext.Model.Save</c>, reloads the model
/// in a fresh <see cref="MLContext"/> with plain <c>Model.Load</c> and predicts with a <see cref="PredictionEngine{TSrc, TDst}"/>.
/// Writes <c>model.zip</c> and <c>metrics.json</c> to the output folder.
/// </summary>
internal static class Quickstart
{
    private const int PixelCount = FashionMnist.ImageSize * FashionMnist.ImageSize;

    /// <summary>One image as the saved model reads it: only the features.</summary>
    public sealed class FashionInput
    {
        [VectorType(PixelCount)]
        public float[] Features { get; set; } = [];
    }

    /// <summary>An image with its true class, read from the test split.</summary>
    public sealed class FashionImage
    {
        /// <summary>The key: class index + 1.</summary>
        public uint Label { get; set; }

        [VectorType(PixelCount)]
        public float[] Features { get; set; } = [];
    }

    /// <summary>What the saved model predicts for one image.</summary>
    public sealed class FashionPrediction
    {
        /// <summary>The class name, from <c>MapKeyToValue</c> on <c>PredictedLabel</c>.</summary>
        public string PredictedClass { get; set; } = "";

        /// <summary>Class probabilities, in class-index order.</summary>
        public float[] Score { get; set; } = [];
    }

    public static int Run(SampleContext context)
    {
        var total = Stopwatch.StartNew();
        var outputDirectory = context.OutputDirectory;
        Directory.CreateDirectory(outputDirectory);
        AnsiConsole.Write(new Rule("[bold]Hazy.ML quickstart[/]: an MLP on Fashion-MNIST").LeftJustified());

        // 1. Data: Debian's full Fashion-MNIST when installed, else the subset shipped in samples/data.
        var mlContext = new MLContext(seed: 1);
        var source = FashionMnistData.LoadDefault(mlContext);
        string dataSource = source.IsSubset ? "subset" : source.Directory == FashionMnistData.DebianDirectory ? "debian" : "full";
        var split = mlContext.Data.TrainTestSplit(source.Train, testFraction: 0.1, seed: 1);
        var train = split.TrainSet;
        long trainRows = CountRows(train), validationRows = CountRows(split.TestSet), testRows = CountRows(source.Test);
        AnsiConsole.MarkupLine(dataSource switch
        {
            "debian" => "Data: the full Fashion-MNIST, from Debian's dataset-fashion-mnist package",
            "subset" => "Data: the Fashion-MNIST subset shipped with the repository (install dataset-fashion-mnist for the full set)",
            _ => "Data: the full Fashion-MNIST",
        });
        AnsiConsole.MarkupLine($"      [grey]{Markup.Escape(source.Directory)}[/]");
        AnsiConsole.MarkupLine(Invariant($"      {trainRows:N0} train, {validationRows:N0} validation (10% of train), {testRows:N0} test images"));

        // 2. The pipeline: the data already has a key Label (with class names) and a 784-float Features vector.
        var progress = new TrainingProgressDisplay();
        var options = new MlpTrainer.Options
        {
            HiddenLayers = [256, 128],
            DropoutRate = 0.1,
            NumberOfEpochs = 8,
            BatchSize = 128,
            LearningRate = 2e-3,
            WeightDecay = 1e-4,
            Optimizer = HazyOptimizer.AdamW,
            Schedule = LearningRateSchedule.Cosine,
            WarmupFraction = 0.02,
            ValidationSet = split.TestSet,
            Progress = progress,
            CancellationToken = context.CancellationToken,
        };
        var pipeline = mlContext.MulticlassClassification.Trainers.HazyMlp(options)
            .Append(mlContext.Transforms.Conversion.MapKeyToValue("PredictedClass", "PredictedLabel"));

        // 3. Train, with a progress bar fed by Options.Progress.
        var trainClock = Stopwatch.StartNew();
        using var model = progress.Run(
            Invariant($"Training MLP [{string.Join(", ", options.HiddenLayers)}] for {options.NumberOfEpochs} epochs"),
            () => pipeline.Fit(train));
        double trainSeconds = trainClock.Elapsed.TotalSeconds;
        var mlp = model.OfType<HazyPredictionTransformer>().Single();
        AnsiConsole.MarkupLine(Invariant($"Trained {mlp.TrainingHistory.Count} epochs in {trainSeconds:F1} s (seed {mlp.Seed})."));

        // 4. Evaluate on the test split with ML.NET's evaluator.
        var metrics = mlContext.MulticlassClassification.Evaluate(model.Transform(source.Test));
        var table = new Table().Title("Test metrics").AddColumn("Metric").AddColumn(new TableColumn("Value").RightAligned());
        table.AddRow("Accuracy (micro)", Invariant($"{metrics.MicroAccuracy:F4}"));
        table.AddRow("Macro accuracy", Invariant($"{metrics.MacroAccuracy:F4}"));
        table.AddRow("Log-loss", Invariant($"{metrics.LogLoss:F4}"));
        table.AddRow("Log-loss reduction", Invariant($"{metrics.LogLossReduction:F4}"));
        AnsiConsole.Write(table);

        var perClass = new Table().Title("Per class").AddColumn("Class")
            .AddColumn(new TableColumn("Precision").RightAligned()).AddColumn(new TableColumn("Recall").RightAligned());
        for (int c = 0; c < FashionMnist.ClassNames.Count; c++)
        {
            perClass.AddRow(Markup.Escape(FashionMnist.ClassNames[c]),
                Invariant($"{metrics.ConfusionMatrix.PerClassPrecision[c]:F3}"), Invariant($"{metrics.ConfusionMatrix.PerClassRecall[c]:F3}"));
        }
        AnsiConsole.Write(perClass);

        // 5. Save, then reload in a fresh MLContext with plain Model.Load: scoring needs no Hazy call.
        var modelPath = Path.Combine(outputDirectory, "model.zip");
        mlContext.Model.SaveAtomically(model, source.Train.Schema, modelPath);
        AnsiConsole.MarkupLine(Invariant($"Saved [blue]{Markup.Escape(modelPath)}[/] ({new FileInfo(modelPath).Length / 1024.0:F0} KiB)."));

        var servingContext = new MLContext();
        var loaded = servingContext.Model.Load(modelPath, out _);
        try
        {
            using var engine = servingContext.Model.CreatePredictionEngine<FashionInput, FashionPrediction>(loaded);
            var firstImages = mlContext.Data.CreateEnumerable<FashionImage>(mlContext.Data.TakeRows(source.Test, 5), reuseRowObject: false);
            var predictions = new Table().Title("Reloaded model, first 5 test images").AddColumn("#")
                .AddColumn("True class").AddColumn("Predicted").AddColumn(new TableColumn("Probability").RightAligned()).AddColumn("");
            int index = 0;
            foreach (var image in firstImages)
            {
                var prediction = engine.Predict(new FashionInput { Features = image.Features });
                var trueClass = FashionMnist.ClassNames[(int)image.Label - 1];
                bool correct = prediction.PredictedClass == trueClass;
                predictions.AddRow(Invariant($"{index++}"), Markup.Escape(trueClass), Markup.Escape(prediction.PredictedClass),
                    Invariant($"{prediction.Score.Max():F3}"), correct ? "[green]right[/]" : "[red]wrong[/]");
            }
            AnsiConsole.Write(predictions);

            // The reloaded model scores the whole test split as the in-memory one did.
            var reloaded = servingContext.MulticlassClassification.Evaluate(loaded.Transform(source.Test));
            bool identical = reloaded.MicroAccuracy == metrics.MicroAccuracy && reloaded.LogLoss == metrics.LogLoss;
            AnsiConsole.MarkupLine(Invariant($"Reloaded model: test accuracy {reloaded.MicroAccuracy:F4}, log-loss {reloaded.LogLoss:F4} ")
                + (identical ? "[green](identical to the in-memory model)[/]" : Invariant($"[red](in-memory model: {metrics.MicroAccuracy:F4}, {metrics.LogLoss:F4})[/]")));

            // 6. metrics.json
            var report = new QuickstartMetrics(
                metrics.MicroAccuracy, metrics.MacroAccuracy, metrics.LogLoss, metrics.LogLossReduction, reloaded.MicroAccuracy,
                Math.Round(trainSeconds, 2), Math.Round(total.Elapsed.TotalSeconds, 2),
                dataSource, source.Directory, trainRows, validationRows, testRows,
                options.NumberOfEpochs, mlp.TrainingHistory.Count, options.BatchSize, options.LearningRate, options.WeightDecay,
                options.HiddenLayers, options.DropoutRate, options.Optimizer.ToString(), options.Schedule.ToString(), mlp.Seed,
                mlp.TrainingHistory.Select(e => new EpochMetrics(e.Epoch, e.TrainLoss, e.ValidationLoss, e.ValidationMetric, Math.Round(e.Seconds, 2))).ToArray());
            var metricsPath = Path.Combine(outputDirectory, "metrics.json");
            File.WriteAllText(metricsPath, JsonSerializer.Serialize(report, JsonOptions) + Environment.NewLine);
            AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(metricsPath)}[/].");
            AnsiConsole.MarkupLine(Invariant($"Done in {total.Elapsed.TotalSeconds:F1} s."));

            if (!identical)
            {
                AnsiConsole.MarkupLine("[red]The reloaded model does not score like the in-memory model.[/]");
                return 1;
            }
            return 0;
        }
        finally
        {
            (loaded as IDisposable)?.Dispose();
        }
    }

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>Counts the rows with a cursor.</summary>
    private static long CountRows(IDataView data)
    {
        long count = 0;
        using var cursor = data.GetRowCursor(Array.Empty<DataViewSchema.Column>());
        while (cursor.MoveNext())
            count++;
        return count;
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed record EpochMetrics(int Epoch, double TrainLoss, double? ValidationLoss, double? ValidationAccuracy, double Seconds);

    private sealed record QuickstartMetrics(
        double Accuracy, double MacroAccuracy, double LogLoss, double LogLossReduction, double ReloadedAccuracy,
        double TrainSeconds, double TotalSeconds,
        string DataSource, string DataDirectory, long TrainRows, long ValidationRows, long TestRows,
        int Epochs, int EpochsRun, int BatchSize, double LearningRate, double WeightDecay,
        int[] HiddenLayers, double DropoutRate, string Optimizer, string Schedule, int Seed,
        EpochMetrics[] History);
}
