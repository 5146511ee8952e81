using System.Diagnostics;
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Cnn;
using Microsoft.ML.Hazy.Contrastive;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Robustness;
using Microsoft.ML.Hazy.SamplesSupport;
using Spectre.Console;

namespace Hazy.Samples;

/// <summary>
/// "Perfectly Balanced"'s worst-group use on Fashion-MNIST: a CNN learns the three coarse classes from a training set where
/// one fine class of each coarse class is rare; the test set is balanced, and each fine class is a group. ERM is compared with
/// group DRO on the true fine groups (an oracle that needs annotation) and on pseudo-groups from clustering each coarse class's
/// embeddings (GEORGE) of a cross-entropy encoder and of Thanos (spread ‖ autoencoder).
/// </summary>
internal static class WorstGroupSample
{
    // Rare in training: Shirt (tops), Sandal (footwear), Dress (other).
    private static readonly int[] RareFine = [6, 5, 3];

    private sealed class Row
    {
        [VectorType(28 * 28)]
        public float[] Features = [];
        public string CoarseName = "";
        public string FineName = "";
    }

    private sealed class GroupName
    {
        public string FineName = "";
    }

    public static int Run(SampleContext context)
    {
        var output = context.OutputDirectory;
        Directory.CreateDirectory(output);
        int trainRows = context.Integer("rows", 12000);
        int testRows = context.Integer("test-rows", 5000);
        int epochs = context.Integer("epochs", 5);
        double rareShare = context.Integer("rare-percent", 5) / 100.0;
        if (context.Integer("threads") is int threads)
            TorchSharp.torch.set_num_threads(threads);
        var ml = new MLContext(seed: 1);
        var (trainView, testView) = FashionMnistData.LoadDefault(ml, trainRows, testRows);
        var rare = new HashSet<string>(RareFine.Select(i => FashionMnist.ClassNames[i]));
        var all = Read(trainView);
        // Keep every row of a common fine class and the first rareShare of each rare class's rows.
        var keepRare = rare.ToDictionary(r => r, r => (int)Math.Round(all.Count(x => x.FineName == r) * rareShare));
        var seen = rare.ToDictionary(r => r, _ => 0);
        var train = all.Where(x => !rare.Contains(x.FineName) || seen[x.FineName]++ < keepRare[x.FineName]).ToArray();
        var test = Read(testView);
        var trainData = Keyed(ml, train);
        var testData = Keyed(ml, test);
        AnsiConsole.MarkupLine($"Fashion-MNIST coarse classes {string.Join(", ", ContrastiveSample.CoarseNames)}; {train.Length} training images " +
            $"({string.Join(", ", rare.Select(r => $"{r} {keepRare[r]}"))} rare), {test.Length} balanced test images; groups = the 10 fine classes; CNN, {epochs} epoch(s).");

        var results = new List<Dictionary<string, object>>();
        void Report(string name, ITransformer model, double seconds, double? purity = null, int? groups = null)
        {
            var metrics = ml.Hazy().EvaluateGroups(model.Transform(testData), groupColumnName: "Group");
            AnsiConsole.MarkupLine($"{Markup.Escape(name)}: worst group {metrics.WorstGroupAccuracy:F3} ({Markup.Escape(metrics.WorstGroup)}), " +
                $"mean group {metrics.MeanGroupAccuracy:F3}, accuracy {metrics.Accuracy:F3}, {seconds:F0} s");
            results.Add(new Dictionary<string, object>
            {
                ["method"] = name,
                ["worstGroupAccuracy"] = Math.Round(metrics.WorstGroupAccuracy, 4),
                ["worstGroup"] = metrics.WorstGroup,
                ["meanGroupAccuracy"] = Math.Round(metrics.MeanGroupAccuracy, 4),
                ["accuracy"] = Math.Round(metrics.Accuracy, 4),
                ["pseudoGroups"] = groups?.ToString() ?? "",
                ["pseudoGroupPurity"] = purity is double p ? Math.Round(p, 4) : "",
                ["seconds"] = Math.Round(seconds, 1),
            });
        }

        CnnTrainer.Options Cnn(GroupDroOptions? dro) => new()
        {
            Height = 28, Width = 28, Filters = [32, 64], NumberOfEpochs = epochs, BatchSize = 128, LearningRate = 2e-3, Seed = 1,
            Penalty = dro, CancellationToken = context.CancellationToken,
        };
        (ITransformer Model, double Seconds) Train(IDataView data, GroupDroOptions? dro)
        {
            var watch = Stopwatch.StartNew();
            var model = ml.MulticlassClassification.Trainers.HazyCnn(Cnn(dro)).Fit(data);
            return (model, watch.Elapsed.TotalSeconds);
        }

        var erm = Train(trainData, null);
        Report("ERM", erm.Model, erm.Seconds);
        var oracle = Train(trainData, new GroupDroOptions { GroupColumnName = "Group" });
        Report("group DRO, true groups (oracle)", oracle.Model, oracle.Seconds);

        ContrastiveTrainer.Options Encoder(ContrastiveTrainer.Options o)
        {
            o.Encoder = ContrastiveEncoder.Cnn;
            o.Height = 28;
            o.Width = 28;
            o.Filters = [32, 64];
            o.EmbeddingSize = 64;
            o.NumberOfEpochs = epochs;
            o.BatchSize = 128;
            o.LearningRate = 2e-3;
            o.Seed = 1;
            o.CancellationToken = context.CancellationToken;
            return o;
        }
        var encoders = new (string Name, Func<IEstimator<ITransformer>> Estimator)[]
        {
            ("GEORGE: CE embeddings", () => ml.Hazy().Contrastive(Encoder(ContrastiveTrainer.Options.CrossEntropy()))),
            ("Thanos embeddings", () => ml.Hazy().Thanos(Encoder(ContrastiveTrainer.Options.Spread()), Encoder(ContrastiveTrainer.Options.Autoencoder()))),
        };
        foreach (var (name, estimator) in encoders)
        {
            var watch = Stopwatch.StartNew();
            var encoder = estimator().Fit(trainData);
            var embedded = encoder.Transform(trainData);
            var groups = ml.Hazy().Slicing.ProposeGroups(embedded, "Embedding", outputColumnName: "PseudoGroup", seed: 1);
            double purity = Purity(groups.Groups, train.Select(r => r.FineName).ToArray());
            AnsiConsole.MarkupLine($"{Markup.Escape(name)}: {groups.GroupNames.Count} pseudo-groups (per coarse class {string.Join("/", groups.ClustersPerClass)}), purity {purity:F3}");
            var dro = Train(groups.Data, new GroupDroOptions { GroupColumnName = "PseudoGroup" });
            Report($"group DRO, pseudo-groups from {name}", dro.Model, watch.Elapsed.TotalSeconds, purity, groups.GroupNames.Count);
            (encoder as IDisposable)?.Dispose();
            (dro.Model as IDisposable)?.Dispose();
        }
        (erm.Model as IDisposable)?.Dispose();
        (oracle.Model as IDisposable)?.Dispose();

        var table = new Table().AddColumns("method", "worst-group acc", "worst group", "mean group acc", "accuracy", "pseudo-groups", "purity", "s");
        foreach (var r in results)
            table.AddRow(Markup.Escape((string)r["method"]), $"{r["worstGroupAccuracy"]:F3}", Markup.Escape((string)r["worstGroup"]), $"{r["meanGroupAccuracy"]:F3}",
                $"{r["accuracy"]:F3}", $"{r["pseudoGroups"]}", $"{r["pseudoGroupPurity"]}", $"{r["seconds"]:F0}");
        AnsiConsole.Write(table);
        var json = new Dictionary<string, object>
        {
            ["protocol"] = "Fashion-MNIST, coarse labels tops/footwear/other; training keeps rare-percent of Shirt, Sandal and Dress; balanced test; " +
                "groups = fine classes; worst-group accuracy = min over fine classes of coarse accuracy. Pseudo-groups: per-coarse-class k-means on " +
                "the encoder's embedding, k by silhouette (1..5). Purity = share of training rows whose pseudo-group's majority fine class is their own.",
            ["trainRows"] = train.Length,
            ["testRows"] = test.Length,
            ["epochs"] = epochs,
            ["rarePercent"] = rareShare * 100,
            ["results"] = results,
        };
        var path = Path.Combine(output, "metrics.json");
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true }) + Environment.NewLine);
        AnsiConsole.MarkupLine($"Wrote {Markup.Escape(path)}");
        return 0;
    }

    private static Row[] Read(IDataView data)
    {
        var features = data.GetColumn<float[]>("Features").ToArray();
        var labels = data.GetColumn<uint>("Label").ToArray();
        return features.Select((f, i) => new Row
        {
            Features = f,
            FineName = FashionMnist.ClassNames[(int)labels[i] - 1],
            CoarseName = ContrastiveSample.CoarseNames[ContrastiveSample.Coarse[(int)labels[i] - 1]],
        }).ToArray();
    }

    private static IDataView Keyed(MLContext ml, Row[] rows)
    {
        var view = ml.Data.LoadFromEnumerable(rows);
        var coarse = ml.Data.LoadFromEnumerable(ContrastiveSample.CoarseNames.Select(n => new Row { CoarseName = n, Features = new float[28 * 28] }));
        var fine = ml.Data.LoadFromEnumerable(FashionMnist.ClassNames.Select(n => new GroupName { FineName = n }));
        return ml.Transforms.Conversion.MapValueToKey("Label", nameof(Row.CoarseName), keyData: ml.Transforms.SelectColumns(nameof(Row.CoarseName)).Fit(coarse).Transform(coarse))
            .Append(ml.Transforms.Conversion.MapValueToKey("Group", nameof(Row.FineName), keyData: fine))
            .Fit(view).Transform(view);
    }

    /// <summary>Share of rows whose group's most common fine class is their own.</summary>
    private static double Purity(IReadOnlyList<int> groups, string[] fine)
    {
        var majority = groups.Select((g, i) => (g, f: fine[i])).GroupBy(x => x.g)
            .ToDictionary(g => g.Key, g => g.GroupBy(x => x.f).OrderByDescending(x => x.Count()).First().Key);
        return groups.Select((g, i) => majority[g] == fine[i] ? 1.0 : 0.0).Average();
    }
}
