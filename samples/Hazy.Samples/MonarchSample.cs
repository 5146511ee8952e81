using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Mlp;
using Microsoft.ML.Hazy.SamplesSupport;
using Microsoft.ML.Hazy.Training;
using Spectre.Console;
using static TorchSharp.torch;

namespace Hazy.Samples;

/// <summary>
/// Monarch matrices in an MLP on Fashion-MNIST: a dense MLP, the same MLP with Monarch hidden layers, the dense
/// model projected on Monarch matrices and fine-tuned (dense-to-sparse), and reverse sparsification (Monarch for
/// half of the epochs, then densified exactly and trained on dense). Writes <c>metrics.json</c>.
/// </summary>
internal static class MonarchSample
{
    private static readonly int[] Hidden = [512, 256];
    private const int Blocks = 4;
    private const int Epochs = 4;

    public static int Run(SampleContext context)
    {
        var total = Stopwatch.StartNew();
        var outputDirectory = context.OutputDirectory;
        Directory.CreateDirectory(outputDirectory);
        int rows = context.Integer("rows", 12_000);
        AnsiConsole.Write(new Rule("[bold]Monarch matrices[/]: dense vs Monarch MLPs on Fashion-MNIST").LeftJustified());

        var mlContext = new MLContext(seed: 1);
        var source = FashionMnistData.LoadDefault(mlContext, maxTrainRows: rows);
        AnsiConsole.MarkupLine(Invariant($"Data: {Markup.Escape(source.Directory)} ({(source.IsSubset ? "subset" : "full")}), first {rows:N0} training images at most; MLP [[{string.Join(", ", Hidden)}]], nblocks {Blocks}, {Epochs} epochs."));

        MlpTrainer.Options Options(int monarchBlocks = 0, double densifyAfter = 0) => new()
        {
            HiddenLayers = Hidden,
            NumberOfEpochs = Epochs,
            BatchSize = 128,
            LearningRate = 2e-3,
            DropoutRate = 0.1,
            MonarchBlocks = monarchBlocks,
            DensifyAfterFraction = densifyAfter,
            CancellationToken = context.CancellationToken,
        };

        var results = new List<VariantMetrics>();
        var dense = Train("dense", () => mlContext.MulticlassClassification.Trainers.HazyMlp(Options()).Fit(source.Train), mlContext, source, results);
        using (Train("monarch", () => mlContext.MulticlassClassification.Trainers.HazyMlp(Options(Blocks)).Fit(source.Train), mlContext, source, results)) { }
        using (Train("dense-to-sparse (projected + 1 epoch)", () => mlContext.Hazy().MulticlassClassification
                   .MonarchFineTune(dense, new MonarchFineTuneTrainer.Options { MonarchBlocks = Blocks, NumberOfEpochs = 1, LearningRate = 5e-4, CancellationToken = context.CancellationToken })
                   .Fit(source.Train), mlContext, source, results, extraSeconds: results[0].TrainSeconds)) { }
        using (Train("reverse-sparsified (monarch 50%, then dense)", () => mlContext.MulticlassClassification.Trainers.HazyMlp(Options(Blocks, 0.5)).Fit(source.Train), mlContext, source, results)) { }
        dense.Dispose();

        var table = new Table().Title("Test set").AddColumn("Model")
            .AddColumn(new TableColumn("Accuracy").RightAligned()).AddColumn(new TableColumn("Parameters").RightAligned())
            .AddColumn(new TableColumn("Train s").RightAligned()).AddColumn(new TableColumn("Torch rows/s").RightAligned())
            .AddColumn(new TableColumn("ML.NET rows/s").RightAligned());
        foreach (var m in results)
        {
            table.AddRow(Markup.Escape(m.Model), Invariant($"{m.Accuracy:F4}"), Invariant($"{m.Parameters:N0}"), Invariant($"{m.TrainSeconds:F1}"),
                Invariant($"{m.TorchRowsPerSecond:N0}"), Invariant($"{m.MlNetRowsPerSecond:N0}"));
        }
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("[grey]Train seconds of dense-to-sparse include the dense model's training. Scoring: TorchSharp batch 1000 and the saved ML.NET chain (ONNX Runtime, row by row). The machine is shared: compare within one run.[/]");

        var metricsPath = Path.Combine(outputDirectory, "metrics.json");
        var report = new
        {
            Dataset = source.Directory,
            source.IsSubset,
            MaxTrainRows = rows,
            HiddenLayers = Hidden,
            MonarchBlocks = Blocks,
            Epochs,
            Models = results,
            TotalSeconds = Math.Round(total.Elapsed.TotalSeconds, 1),
        };
        File.WriteAllText(metricsPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }) + Environment.NewLine);
        AnsiConsole.MarkupLine($"Wrote [blue]{Markup.Escape(metricsPath)}[/]. Done in {total.Elapsed.TotalSeconds:F0} s.");
        return 0;
    }

    private static HazyPredictionTransformer Train(string name, Func<HazyPredictionTransformer> fit, MLContext ml, FashionMnistSource source,
        List<VariantMetrics> results, double extraSeconds = 0)
    {
        AnsiConsole.MarkupLine($"Training [bold]{Markup.Escape(name)}[/]...");
        var clock = Stopwatch.StartNew();
        var model = fit();
        double seconds = clock.Elapsed.TotalSeconds + extraSeconds;
        var accuracy = ml.MulticlassClassification.Evaluate(model.Transform(source.Test)).MicroAccuracy;
        long parameters = model.Network.parameters().Sum(p => p.numel());
        var (torchRate, mlnetRate) = Throughput(model, ml, source.Test);
        results.Add(new VariantMetrics(name, Math.Round(accuracy, 4), parameters, Math.Round(seconds, 1), Math.Round(torchRate), Math.Round(mlnetRate),
            model.TrainingHistory.Select(e => Math.Round(e.TrainLoss, 4)).ToArray()));
        AnsiConsole.MarkupLine(Invariant($"  accuracy {accuracy:F4}, {parameters:N0} parameters, {seconds:F1} s"));
        return model;
    }

    private static (double Torch, double MlNet) Throughput(HazyPredictionTransformer model, MLContext ml, IDataView test)
    {
        var features = ml.Data.CreateEnumerable<Quickstart.FashionImage>(test, reuseRowObject: false).Select(i => i.Features).ToArray();
        var flat = features.SelectMany(f => f).ToArray();
        using var x = tensor(flat).reshape(features.Length, flat.Length / features.Length);
        model.Network.eval();
        var clock = Stopwatch.StartNew();
        using (no_grad())
        {
            for (int start = 0; start < features.Length; start += 1000)
            {
                using var batch = x.narrow(0, start, Math.Min(1000, features.Length - start));
                using var y = model.Network.forward(batch);
            }
        }
        double torchRate = features.Length / clock.Elapsed.TotalSeconds;

        clock.Restart();
        var scored = model.Transform(test);
        using (var cursor = scored.GetRowCursor(scored.Schema.Where(c => c.Name == "Score")))
        {
            var getter = cursor.GetGetter<Microsoft.ML.Data.VBuffer<float>>(scored.Schema["Score"]);
            var buffer = default(Microsoft.ML.Data.VBuffer<float>);
            while (cursor.MoveNext())
                getter(ref buffer);
        }
        double mlnetRate = features.Length / clock.Elapsed.TotalSeconds;
        return (torchRate, mlnetRate);
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private sealed record VariantMetrics(string Model, double Accuracy, long Parameters, double TrainSeconds, double TorchRowsPerSecond, double MlNetRowsPerSecond, double[] TrainLossPerEpoch);
}
