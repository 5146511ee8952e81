using Microsoft.ML.Hazy.SamplesSupport;
using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Sequence;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// What a new user gets: the S4D trainer's short overload (columns and channel count only) against the UCR preset
/// (<c>SequenceTrainer.Options.Presets.UcrClassification</c>) and the short overload's former fixed defaults (4 × 128, batches of 64, 10 epochs), on small 10-class series sets: the first 100 Fashion-MNIST images read as sequences of 784 pixels,
/// and PickupGestureWiimoteZ (50 variable-length series). Prints test accuracy and training seconds of each.
/// </summary>
internal static class DefaultsSample
{
    public static int Run(SampleContext context)
    {
        var selected = context.Text("datasets") is { } list
            ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : ["Fashion100", "PickupGestureWiimoteZ"];
        var modes = context.Text("modes") is { } m
            ? m.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : ["short", "preset"];
        TorchSharp.torch.set_num_threads(context.Integer("threads", Environment.ProcessorCount));
        var table = new Table().Title("S4D on small 10-class series sets").AddColumn("Data set").AddColumn("Trainer")
            .AddColumn(new TableColumn("Test accuracy").RightAligned()).AddColumn(new TableColumn("Train s").RightAligned())
            .AddColumn(new TableColumn("Epochs run").RightAligned());
        foreach (var name in selected)
        {
            var ml = new MLContext(seed: 1);
            ml.Log += (_, e) =>
            {
                if (e.Message.Contains("Epoch ", StringComparison.Ordinal) || e.Message.Contains("Early stopping", StringComparison.Ordinal)
                    || e.Message.Contains("budget", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("sized", StringComparison.OrdinalIgnoreCase))
                    AnsiConsole.MarkupLine("  [grey]" + Markup.Escape(e.Message) + "[/]");
            };
            var (train, test, channels, maxLength) = Load(ml, name, context.Integer("test-rows", 1000));
            foreach (var mode in modes)
            {
                context.CancellationToken.ThrowIfCancellationRequested();
                AnsiConsole.MarkupLine(Markup.Escape($"{name}: {mode}"));
                var clock = Stopwatch.StartNew();
                IEstimator<ITransformer> trainer = mode switch
                {
                    "short" => ml.MulticlassClassification.Trainers.HazyS4D(channels: channels, maximumLength: maxLength),
                    // The short overload's defaults before they were sized to the data.
                    "reference" => ml.MulticlassClassification.Trainers.HazyS4D(channels: channels, modelDimension: 128, numberOfLayers: 4, numberOfEpochs: 10,
                        batchSize: 64, maximumLength: maxLength),
                    "preset" => ml.MulticlassClassification.Trainers.HazyS4D(SequenceTrainer.Options.Presets.UcrClassification(channels, maxLength)),
                    _ => throw new ArgumentException($"Unknown mode '{mode}'."),
                };
                var model = trainer.Fit(train);
                double seconds = clock.Elapsed.TotalSeconds;
                var metrics = ml.MulticlassClassification.Evaluate(model.Transform(test));
                int epochs = (model as Microsoft.ML.Hazy.Training.HazyPredictionTransformer)?.TrainingHistory.Count ?? 0;
                AnsiConsole.MarkupLine(Invariant($"  accuracy {metrics.MicroAccuracy:F4}, trained in {seconds:F1} s, {epochs} epochs"));
                table.AddRow(name, mode, Invariant($"{metrics.MicroAccuracy:F4}"), Invariant($"{seconds:F1}"), Invariant($"{epochs}"));
                (model as IDisposable)?.Dispose();
            }
        }
        AnsiConsole.Write(table);
        return 0;
    }

    private static (IDataView Train, IDataView Test, int Channels, int MaxLength) Load(MLContext ml, string name, int testRows)
    {
        if (name.StartsWith("Fashion", StringComparison.OrdinalIgnoreCase))
        {
            int rows = int.Parse(name["Fashion".Length..], CultureInfo.InvariantCulture);
            var (train, test) = FashionMnistData.LoadDefault(ml, rows, testRows);
            return (train, test, 1, 784);
        }
        var folder = UcrData.FindSharedDataDirectory() ?? throw new DirectoryNotFoundException("The shared UCR data is absent.");
        var (ucrTrain, ucrTest) = UcrTimeSeries.LoadPair(folder, name);
        return (ucrTrain.ToDataView(ml), ucrTest.ToDataView(ml), ucrTrain.ChannelCount, Math.Max(ucrTrain.Length, ucrTest.Length));
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
